"""Model, data and training configuration (TRMConfig for TRM or HRM, DataConfig, TrainConfig, PretrainConfig)."""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

from arc_kit.base.config import from_dict
from arc_kit.base.errors import ConfigValueError
from arc_kit.data import GRID_SIDE

FORWARD_DTYPES = ("float32", "bfloat16", "float16")
ARCH_KINDS = ("trm", "hrm")  # TRMConfig.kind: the recursive model (model/build.py builds it)
GRID_CELLS = GRID_SIDE * GRID_SIDE  # coordinate positions: cell (r, c) is P + GRID_SIDE * r + c


@dataclass
class TRMConfig:
    """Architecture, in the reference's `arch:` names. Defaults are the published ARC TRM.

    `kind` picks the model: "trm" (the default, and what every config and checkpoint without the field means)
    or "hrm", the Hierarchical Reasoning Model (model/hrm.py): an H-level stack of `H_layers` blocks besides
    the L-level stack of `L_layers`, every other field meaning what it means for TRM."""

    kind: str = "trm"  # trm | hrm
    H_layers: int = 0  # hrm only: blocks of the H-level stack (0: as many as L_layers); must stay 0 for trm
    hidden_size: int = 512
    num_heads: int = 8
    L_layers: int = 2
    H_cycles: int = 3
    L_cycles: int = 4
    expansion: float = 4.0
    vocab_size: int = 12  # PAD 0, EOS 1, colours 2..11
    seq_len: int = 900  # canvas tokens: 900 for reference checkpoints, smaller squares for kit models
    puzzle_emb_ndim: int = 512  # 0: no puzzle embedding
    puzzle_emb_len: int = 16  # prefix slots; 0 means ceil(puzzle_emb_ndim / hidden_size)
    num_puzzle_identifiers: int = 1  # rows of the puzzle-embedding table
    pos_encodings: str = "rope"  # rope | learned | none
    positions: str = "canvas"  # canvas: token t at position P + t (row stride = the canvas side; the
    # reference's); coords: cell (r, c) at P + 30 r + c whatever the crop
    # (RoPE table of P + 900), so one model serves every crop size
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    halt_max_steps: int = 16
    halt_exploration_prob: float = 0.1
    no_ACT_continue: bool | None = None  # True: halt on sigmoid(q_halt) alone; False: halt on q_halt > q_continue
    # and learn q_continue from the bootstrapped target. None: the kind's reference (trm True, hrm False)
    forward_dtype: str = "float32"  # float32 | bfloat16 (parameters stay fp32 either way)
    mlp_t: bool = False  # mix along the sequence with an MLP instead of attention
    crops: bool = False  # trained on per-task crops in length buckets (arc_kit.crops): inference encodes each
    # task on its crop too. Needs positions coords and seq_len 900 (the largest bucket)
    crop_margin: int = 0  # cells added to each side of every task's crop (model.canvas_margin of the run)

    def describe(self) -> str:
        """One line for logs and reports: the kind, its stacks and recurrence, the supervision steps."""
        if self.kind == "hrm":
            stacks = f"H-level {self.H_layers or self.L_layers} + L-level {self.L_layers} blocks"
        else:
            stacks = f"{self.L_layers} blocks"
        return (
            f"{self.kind.upper()}, hidden {self.hidden_size}, {self.num_heads} heads, {stacks}, H_cycles "
            f"{self.H_cycles} x L_cycles {self.L_cycles}, {self.halt_max_steps} supervision step(s), "
            f"positions {self.positions}{', crops' if self.crops else ''}"
        )

    def __post_init__(self):
        def bad(key, msg):
            raise ConfigValueError(key, msg)

        if self.kind not in ARCH_KINDS:
            bad("kind", f"expected one of {', '.join(ARCH_KINDS)}, got {self.kind!r}")
        if self.no_ACT_continue is None:
            self.no_ACT_continue = self.kind == "trm"
        if self.H_layers < 0:
            bad("H_layers", f"must be >= 0, got {self.H_layers}")
        if self.kind == "trm" and self.H_layers:
            bad("H_layers", "only HRM has an H-level stack (kind: hrm); TRM has one shared network of L_layers")
        if self.forward_dtype not in FORWARD_DTYPES:
            bad("forward_dtype", f"expected one of {', '.join(FORWARD_DTYPES)}, got {self.forward_dtype!r}")
        if self.pos_encodings not in ("rope", "learned", "none"):
            bad("pos_encodings", f"expected rope, learned or none, got {self.pos_encodings!r}")
        if self.positions not in ("canvas", "coords"):
            bad("positions", f"expected canvas or coords, got {self.positions!r}")
        why = crop_problem(self) if self.positions == "coords" else None
        if why:
            bad("positions", f"coords cannot be used with {why}")
        if self.positions == "coords" and self.seq_len > GRID_CELLS:
            bad("positions", f"coords covers at most {GRID_CELLS} cells, seq_len is {self.seq_len}")
        if self.crops and self.positions != "coords":
            bad("crops", "per-task crops need positions coords (cell (r, c) at P + 30 r + c)")
        if self.crops and self.seq_len != GRID_CELLS:
            bad("crops", f"seq_len must be {GRID_CELLS} (the largest crop bucket) with crops, got {self.seq_len}")
        if not 0 <= self.crop_margin < GRID_SIDE:
            bad("crop_margin", f"expected 0..{GRID_SIDE - 1} cells, got {self.crop_margin}")
        for name in (
            "hidden_size",
            "num_heads",
            "L_layers",
            "H_cycles",
            "L_cycles",
            "vocab_size",
            "seq_len",
            "halt_max_steps",
            "num_puzzle_identifiers",
        ):
            if getattr(self, name) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("puzzle_emb_ndim", "puzzle_emb_len"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        if not self.expansion > 0:
            bad("expansion", f"must be > 0, got {self.expansion}")
        if not 0 <= self.halt_exploration_prob <= 1:
            bad("halt_exploration_prob", f"must be in [0, 1], got {self.halt_exploration_prob}")
        if self.hidden_size % self.num_heads:
            bad("hidden_size", f"{self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.puzzle_emb_ndim > self.prefix_len * self.hidden_size:
            bad(
                "puzzle_emb_ndim",
                f"{self.puzzle_emb_ndim} does not fit in {self.prefix_len} prefix slots of {self.hidden_size}",
            )

    @property
    def H_stack_layers(self) -> int:
        """Blocks of HRM's H-level stack."""
        return self.H_layers or self.L_layers

    @property
    def prefix_len(self) -> int:  # P
        return self.puzzle_emb_len or -(self.puzzle_emb_ndim // -self.hidden_size)

    @classmethod
    def from_reference(cls, arch: dict, **extra) -> "TRMConfig":
        """From a reference `all_config.yaml` `arch:` section (plus seq_len/vocab/table rows, which the
        reference takes from the dataset). The kind comes from `name` (`recursive_reasoning.hrm@...` is HRM,
        anything else TRM); HRM's prefix is always ceil(puzzle_emb_ndim / hidden_size) slots and it always
        learns q_continue. Unknown non-architecture keys (loss, batch_size; H_layers for TRM) are dropped."""
        kind = reference_kind(arch)
        known = {f.name for f in dataclasses.fields(cls)} - {"kind"}
        if kind == "trm":
            known.discard("H_layers")
        kw = {k: v for k, v in arch.items() if k in known}
        kw["kind"] = kind
        if kind == "hrm":  # fields the reference HRM does not have: its fixed behaviour
            kw.update(puzzle_emb_len=0, no_ACT_continue=False)
        kw.update(extra)
        return from_dict(cls, kw)


def reference_kind(arch: dict) -> str:
    """The model kind, hrm or trm, of a reference `arch:` section, from its `name` (`...hrm@Hierarchical...`)."""
    name = str(arch.get("name") or "")
    return "hrm" if "hrm@" in name or "HierarchicalReasoning" in name else "trm"


def crop_problem(config: TRMConfig) -> str | None:
    """Why `config` cannot run on per-task crops (coordinate positions on the 30x30 grid), or None when it can.
    The one statement of the rule: TRMConfig's own checks, the run config, `arc-kit train` and `crop_config`
    all ask here. A 30x30-canvas model with RoPE (or no positions) -- the reference's -- can: its positions
    P + t on a 30-wide canvas are coordinates already."""
    if config.pos_encodings == "learned":
        return "learned position embeddings (positions beyond the trained crops were never trained)"
    if config.mlp_t:
        return "mlp_t (its sequence length is fixed)"
    if config.positions == "canvas" and config.seq_len != GRID_CELLS:
        return f"a {config.seq_len}-token canvas (its positions are not 30-wide coordinates)"
    return None


def crop_config(config: TRMConfig, margin: int = 0, key: str = "model.canvas") -> TRMConfig:
    """`config` made to run on crops, or ArcKitError naming the config `key` that asked for crops
    (`model.canvas` of a run, `data.canvas` of `arc-kit train`). A crop-trained model is returned as it is; any
    other that passes `crop_problem` gets coordinate positions (a canvas model's outputs change: it was trained
    attending over every PAD cell)."""
    if config.crops:
        return config
    why = crop_problem(config)
    if why:
        raise ConfigValueError(key, f"crop cannot be used with {why}")
    return dataclasses.replace(config, positions="coords", seq_len=GRID_CELLS, crops=True, crop_margin=margin)


@dataclass
class TrainConfig:
    global_batch_size: int = 768  # sequences per supervision step, over all processes
    epochs: float = 100000  # reference epochs (every task once, one random version each)
    max_steps: int = 0  # > 0: stop after this many steps (and schedule over them) instead of epochs
    optimizer: str = "adam_atan2"  # adam_atan2 (reference) | adamw
    lr: float = 1e-4
    lr_min_ratio: float = 1.0  # cosine floor as a fraction of lr; 1.0 = warm-up then constant
    lr_warmup_steps: int = 2000
    weight_decay: float = 0.1  # decoupled
    beta1: float = 0.9
    beta2: float = 0.95
    puzzle_emb_lr: float = 1e-2  # sign-SGD on the puzzle-embedding rows in the batch
    puzzle_emb_weight_decay: float = 0.1
    ema: bool = True  # keep an EMA of the parameters; checkpoints hold the EMA weights
    ema_rate: float = 0.999
    freeze_network: bool = False  # train the puzzle embeddings only (test-time training of new puzzles)
    loss_type: str = "stablemax_cross_entropy"  # | softmax_cross_entropy
    precision: str = "auto"  # auto: bfloat16 autocast on CUDA GPUs that support it | float32 | bfloat16
    device: str = "auto"  # auto | cpu | cuda (an accelerate Accelerator, when given, decides instead)
    seed: int = 0  # batch order, translations, halting exploration
    compile: str = "off"  # off | default: torch.compile the training forward + loss (mode "default");
    # the first step pays the compile time (tens of seconds), counted in the run
    log_every: int = 1  # steps between lines of the JSON-lines metrics log; also how often the host
    # waits for the device (metrics read, NaN check, multi-process stop vote)
    checkpoint_every: int = 0  # steps between checkpoints during train() (0: only when asked)
    progress: bool = True  # tqdm bar on stderr
    # Draw the tasks whose examples the model already reproduces exactly less often (arc_kit/model/focus.py):
    # a task's weight falls from 1 to `focus_floor` as its recent exact-match rate goes from 0 to 1, updated
    # every `focus_every` steps (at the next metrics sync point: log_every).
    focus: bool = False
    focus_floor: float = 0.25
    focus_every: int = 20

    def __post_init__(self):
        def bad(key, msg):
            raise ConfigValueError(key, msg)

        if not 0 < self.focus_floor <= 1:
            bad("focus_floor", f"must lie in (0, 1], got {self.focus_floor}")
        for name in ("global_batch_size", "log_every", "focus_every"):
            if getattr(self, name) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "lr_warmup_steps", "checkpoint_every"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        for name, positive in (
            ("lr", True),
            ("epochs", True),
            ("puzzle_emb_lr", False),
            ("weight_decay", False),
            ("puzzle_emb_weight_decay", False),
            ("lr_min_ratio", False),
        ):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0 or (positive and v == 0):
                bad(name, f"must be a finite number {'> 0' if positive else '>= 0'}, got {v}")
        for name in ("beta1", "beta2", "ema_rate"):
            if not 0 <= getattr(self, name) < 1:
                bad(name, f"must be in [0, 1), got {getattr(self, name)}")
        choices = {
            "optimizer": ("adam_atan2", "adamw"),
            "loss_type": ("stablemax_cross_entropy", "softmax_cross_entropy"),
            "precision": ("auto", "float32", "bfloat16"),
            "compile": ("off", "default"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                bad(name, f"expected {' or '.join(allowed)}, got {getattr(self, name)!r}")


@dataclass
class DataConfig:
    RENAMED: ClassVar[dict[str, str]] = {
        "num_augmentations": "data.augmentations",
        "crops": "data.canvas: crop",
        "crop_margin": "data.canvas_margin",
    }

    # Task sets whose demonstration AND test pairs (with known outputs) are training examples,
    # e.g. arc-agi-1/training. Bundled names or paths, as data.load_tasks takes them.
    sources: list[str] = field(default_factory=list)
    # Task sets whose demonstration pairs only are trained on (the tasks to be solved);
    # `arc-kit train --tasks SOURCE` appends here.
    demo_sources: list[str] = field(default_factory=list)
    augmentations: int = 1000  # augmented versions per task besides the identity (reference --num-aug;
    # fewer when a task has fewer distinct ones)
    augmentation: str = "reference"  # shipped config in configs/augmentation/ (or a YAML path)
    seed: int = 42  # seed of the augmentation draws (not of the training run)
    # Square canvas side: 30 = reference (900 tokens); smaller for task-sized models. "crop": every task on its own
    # crop (arc_kit.crops: the answer-blind (h+1) x (w+1) rule, sequences in length buckets); the model needs
    # coordinate positions (model.positions: coords), or gets them when it is a 30x30 RoPE model.
    canvas: int | str = 30
    # > 0: train only on tasks whose grids all fit max_size x max_size (the pairs trained on: demonstrations, plus
    # test pairs for `sources`); 0 = every task (one that does not fit the canvas is an error)
    max_size: int = 0
    translate: bool = True  # random translation of each example on the canvas (same offset for input and output)
    canvas_margin: int = 0  # extra rows and columns around each crop (canvas crop only)

    def __post_init__(self):
        if isinstance(self.canvas, str) and self.canvas != "crop":
            raise ConfigValueError("canvas", f"expected 2..{GRID_SIDE} or 'crop', got {self.canvas!r}")
        if isinstance(self.canvas, int) and not 2 <= self.canvas <= GRID_SIDE:
            raise ConfigValueError("canvas", f"expected 2..{GRID_SIDE} or 'crop', got {self.canvas}")
        if not 0 <= self.canvas_margin < GRID_SIDE:
            raise ConfigValueError("canvas_margin", f"expected 0..{GRID_SIDE - 1} cells, got {self.canvas_margin}")

    @property
    def crops(self) -> bool:
        """Every task on its own crop (`canvas: crop`)."""
        return self.canvas == "crop"


@dataclass
class PretrainConfig:
    """The YAML schema of `arc-kit train`: model:, data: and train: sections."""

    model: TRMConfig = field(default_factory=TRMConfig)  # seq_len and num_puzzle_identifiers come from the data
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
