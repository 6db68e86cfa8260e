"""RunConfig: the dataclass tree behind `arc-kit run` (tasks, model, TTT, inference, voting, budget, output)."""

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from arc_kit.base.config import from_dict, load_config, to_dict
from arc_kit.base.errors import ArcKitError
from arc_kit.data import GRID_SIDE
from arc_kit.model.config import GRID_CELLS, TrainConfig, TRMConfig, crop_config


@dataclass
class TasksConfig:
    # file, directory or bundled name. `--tasks` starts a fresh selection: it clears solutions/ids/max_size/limit
    # unless they are given again as overrides. The selection picks what the model works on; the submission
    # always covers every task of the source (the others get fallback attempts).
    source: str = "arc-agi-1/evaluation"
    solutions: str | None = None  # Kaggle solutions file, for scoring only (picked up beside the challenges when None)
    ids: list[str] | None = None  # keep only these task ids (None: all; ["@file.txt"] reads them from a file)
    max_size: int | None = None  # keep tasks whose visible grids (demonstrations, test inputs) fit NxN
    limit: int | None = None  # keep the first N tasks


@dataclass
class ModelConfig:
    checkpoint: str | None = None  # model dir to start from (`--checkpoint`); None trains from scratch
    # The architecture of a model built from scratch (reference names: hidden_size, H_cycles, ...; defaults:
    # the published ARC model). The run sets seq_len (canvas) and num_puzzle_identifiers (puzzles) itself.
    # A checkpoint brings its own architecture: this section is then not used.
    arch: TRMConfig = field(default_factory=TRMConfig)
    # Supervision steps per sequence in training and inference, for a checkpoint's model or a new one
    # (None: arch.halt_max_steps, or the checkpoint's own).
    halt_max_steps: int | None = None
    # Canvas side in cells for a model built by this run: 30 is the reference (900 tokens); "task" pads
    # every batch only to the canvas the selected tasks need (largest visible grid side + 1 for the EOS
    # border + canvas_margin, at most 30), with translation inside it. "crop": every task on its own crop
    # (largest visible grid + 1 per side + canvas_margin) in length buckets, one model for every size; needs
    # arch.positions coords. A checkpoint with canvas positions brings its own canvas, a crop-trained one its
    # crops; one with coordinate positions (e.g. the starter) runs on this setting. "crop" with a 30x30-canvas
    # checkpoint (the reference's) runs it on crops, which changes its outputs.
    canvas: int | str = 30
    # Extra cells on a "task" canvas. The run never sees test outputs, so an answer larger than every
    # visible grid cannot be produced on a canvas sized without a margin (2 of the 29 dev-bench outputs).
    canvas_margin: int = 0


@dataclass
class TTTConfig:
    RENAMED: ClassVar[dict[str, str]] = {"augment": "ttt.augmentation", "seed": "runtime.seed"}

    enabled: bool = True
    augmentations: int = (
        16  # augmented versions per task besides the identity (reference --num-aug); one puzzle row each
    )
    augmentation: str = ""  # augmentation preset (configs/augmentation/NAME.yaml); "" = kit defaults
    translate: bool = True  # random translation of each training pair on the canvas
    max_steps: int = 0  # 0: the budget ends training; > 0: also stop after this many steps, even with time left
    embeddings_only_steps: int = 0  # phase 1: train only the puzzle embeddings (network frozen)
    freeze_network: bool = False  # phase 2 trains the embeddings only as well (network never changes)
    # How the rows of puzzles new to the model start: "mean" (a checkpoint's whole-table mean; zeros from
    # scratch), "zero", or "normal" (N(0, 1/hidden_size), the token embeddings' scale; seeded by runtime.seed).
    row_init: str = "mean"
    min_epochs: float = 2.0  # trim `augmentations` when the planned steps cannot show each example this often
    extra_sources: list[str] = field(default_factory=list)  # more task sources mixed into training (demos+tests)
    extra_augmentations: int = 0  # augmented versions per extra-source task besides the identity
    checkpoint_minutes: float = 2.0  # save the latest checkpoint this often (resume and watchdog kills)
    # The trainer's settings (lr, global_batch_size, ...). device, precision, seed, max_steps and progress come
    # from runtime.device, runtime.precision, runtime.seed, ttt.max_steps and output.progress: leave them unset here.
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class InferenceConfig:
    RENAMED: ClassVar[dict[str, str]] = {"seed": "runtime.seed"}

    enabled: bool = True
    views: int = 8  # views per test input: the task's first M trained puzzles, identity first
    batch_size: int = 256
    task_time_cap_seconds: float = 0.0  # per-task compute cap (0: none); a huge task cannot starve the rest
    # Supervision steps per view at inference (None: the model's halt_max_steps). Analyses of published
    # checkpoints find 2-4 steps as good as 16; fewer steps buy more views in the same time.
    steps: int | None = None
    early_halt: bool = False  # stop each view at its first q_halt > 0 (and drop it from the batch)
    # Score every candidate under every view (consistency.jsonl; one more inference pass per view). Also on
    # whenever `voting` is a consistency strategy.
    consistency: bool = False
    # Training fractions at which the model is saved and every view is run (snapshot pooling); 1.0 = the final
    # model. The plan reserves inference time for each.
    snapshots: list[float] = field(default_factory=lambda: [1.0])
    # off | default: torch.compile the inference step (TRM.compile_inference). The first batch of each shape
    # pays the compile time (tens of seconds on a CPU) out of the inference budget.
    compile: str = "off"


@dataclass
class BudgetConfig:
    total_minutes: float = 10.0  # hard wall-clock limit of this invocation
    safety_margin_minutes: float = 0.5  # kept free at the end (final vote, report, scheduler jitter)
    train_share: float = 0.8  # most of the time left that training may take
    min_infer_share: float = 0.1  # inference always keeps at least this share
    stage_grace_seconds: float = 10.0  # a stage past its deadline gets SIGTERM, then SIGKILL after this
    revote_seconds: float = 30.0  # re-vote submission.json this often while predictions arrive
    startup_seconds: float = 15.0  # expected child start-up (imports, model build): planning reserve


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch threads per process; 0 = cores free / processes
    num_processes: int = 1  # data-parallel processes (GPUs) for training and inference
    precision: str = "float32"  # float32 | bfloat16: autocast for training and inference alike, on GPUs that
    # support bfloat16 (elsewhere float32)
    # The run's one seed: the model's initial weights and new puzzle rows, training's batch order, translations
    # and augmentation draws, and (as seed + 1) the views sampled when they are not taken from training.
    seed: int = 0


@dataclass
class OutputConfig:
    dir: str = "runs/{name}"  # `--out`; {name} is the config's name
    progress: bool = True  # progress bars on stderr
    keep_checkpoint: bool = True  # keep the test-time-trained model in OUT/ttt/model once the run has finished
    # (false: removed at the end; an interrupted run keeps it to resume)


@dataclass
class RunConfig:
    name: str = ""
    tasks: TasksConfig = field(default_factory=TasksConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ttt: TTTConfig = field(default_factory=TTTConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    voting: str = "reference"  # shipped voting config name (configs/voting/) or a YAML path
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def check_run_config(cfg: RunConfig, where: str = "config") -> RunConfig:
    """Value checks that the type system cannot express; errors name the dotted key. Pure: touches no file."""

    def bad(key, msg):
        raise ArcKitError(f"{where}: config key '{key}': {msg}")

    def finite(key, v, lo=None, hi=None, lo_open=False, hi_open=False):
        if not math.isfinite(v):
            bad(key, f"must be a finite number, got {v}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            bad(key, f"must be {'>' if lo_open else '>='} {lo}, got {v}")
        if hi is not None and (v >= hi if hi_open else v > hi):
            bad(key, f"must be {'<' if hi_open else '<='} {hi}, got {v}")

    if isinstance(cfg.model.canvas, str) and cfg.model.canvas not in ("task", "crop"):
        bad("model.canvas", f"expected 2..30, 'task' or 'crop', got {cfg.model.canvas!r}")
    if isinstance(cfg.model.canvas, int) and not 2 <= cfg.model.canvas <= GRID_SIDE:
        bad("model.canvas", f"expected 2..{GRID_SIDE}, 'task' or 'crop', got {cfg.model.canvas}")
    arch = cfg.model.arch
    if cfg.model.canvas == "crop" and not cfg.model.checkpoint:  # the model this run builds: 30x30, then crops
        try:
            crop_config(dataclasses.replace(arch, seq_len=GRID_CELLS))
        except ArcKitError as e:
            raise ArcKitError(f"{where}: {e}") from None
    if cfg.model.halt_max_steps is not None and cfg.model.halt_max_steps < 1:
        bad("model.halt_max_steps", f"must be >= 1, got {cfg.model.halt_max_steps}")
    defaults = TrainConfig()
    for key, there in (
        ("precision", "runtime.precision"),
        ("device", "runtime.device"),
        ("max_steps", "ttt.max_steps"),
        ("seed", "runtime.seed"),
    ):
        if getattr(cfg.ttt.train, key) != getattr(defaults, key):
            bad(f"ttt.train.{key}", f"is set by the run: set {there} instead")
    if not 0 <= cfg.model.canvas_margin <= 28:
        bad("model.canvas_margin", f"expected 0..28 cells, got {cfg.model.canvas_margin}")
    t = cfg.tasks
    if t.max_size is not None and not 1 <= t.max_size <= GRID_SIDE:
        bad("tasks.max_size", f"expected 1..{GRID_SIDE}, got {t.max_size}")
    if t.limit is not None and t.limit < 1:
        bad("tasks.limit", f"must be >= 1, got {t.limit}")
    if t.ids is not None and not t.ids:
        bad("tasks.ids", "an empty list selects nothing (leave it unset for every task)")
    for key in ("augmentations", "extra_augmentations", "max_steps", "embeddings_only_steps"):
        if getattr(cfg.ttt, key) < 0:
            bad(f"ttt.{key}", f"must be >= 0, got {getattr(cfg.ttt, key)}")
    finite("ttt.min_epochs", cfg.ttt.min_epochs, lo=0)
    if cfg.ttt.row_init not in ROW_INITS:
        bad("ttt.row_init", f"expected one of {', '.join(ROW_INITS)}, got {cfg.ttt.row_init!r}")
    finite("ttt.checkpoint_minutes", cfg.ttt.checkpoint_minutes, lo=0, lo_open=True)
    if cfg.inference.views < 1:
        bad("inference.views", "must be >= 1")
    if cfg.inference.compile not in ("off", "default"):
        bad("inference.compile", f"expected off or default, got {cfg.inference.compile!r}")
    if cfg.inference.steps is not None and cfg.inference.steps < 1:
        bad("inference.steps", f"must be >= 1 (or unset: the model's halt_max_steps), got {cfg.inference.steps}")
    if cfg.inference.batch_size < 1:
        bad("inference.batch_size", "must be >= 1")
    finite("inference.task_time_cap_seconds", cfg.inference.task_time_cap_seconds, lo=0)
    snaps = cfg.inference.snapshots
    if any(not (math.isfinite(f) and 0 < f <= 1) for f in snaps) or len(set(snaps)) < len(snaps) or 1.0 not in snaps:
        bad(
            "inference.snapshots",
            f"expected distinct training fractions in (0, 1], 1.0 (the final model) among them, got {snaps}",
        )
    b = cfg.budget
    finite("budget.total_minutes", b.total_minutes, lo=0, lo_open=True)
    finite("budget.safety_margin_minutes", b.safety_margin_minutes, lo=0)
    if b.safety_margin_minutes >= b.total_minutes:
        bad("budget.safety_margin_minutes", "must be below budget.total_minutes")
    finite("budget.train_share", b.train_share, lo=0, hi=1, lo_open=True, hi_open=True)
    finite("budget.min_infer_share", b.min_infer_share, lo=0, hi=1)
    for key in ("stage_grace_seconds", "startup_seconds"):
        finite(f"budget.{key}", getattr(b, key), lo=0)
    finite("budget.revote_seconds", b.revote_seconds, lo=0, lo_open=True)
    if cfg.runtime.device not in ("auto", "cpu", "cuda"):
        bad("runtime.device", f"expected auto, cpu or cuda, got {cfg.runtime.device!r}")
    if cfg.runtime.precision not in PRECISIONS:
        bad("runtime.precision", f"expected {' or '.join(PRECISIONS)}, got {cfg.runtime.precision!r}")
    if cfg.runtime.threads < 0:
        bad("runtime.threads", f"must be >= 0 (0: cores free / processes), got {cfg.runtime.threads}")
    if cfg.runtime.num_processes < 1:
        bad("runtime.num_processes", "must be >= 1")
    return cfg


# float16 is not offered: training has no loss scaler, and inference must run in the dtype training used.
PRECISIONS = ("float32", "bfloat16")
ROW_INITS = ("mean", "zero", "normal")  # ttt.row_init


def load_run_config(source: str | Path | None, overrides=()) -> RunConfig:
    """Load a run config (path or shipped name) with `key=value` overrides; name defaults to the file stem."""
    cfg = load_config(RunConfig, source, overrides)
    if not cfg.name and source is not None:
        cfg.name = Path(str(source)).name.removesuffix(".yaml").removesuffix(".yml")
    return check_run_config(cfg, str(source) if source else "config")


def run_config_from_dict(data: dict) -> RunConfig:
    return check_run_config(from_dict(RunConfig, data))


__all__ = [
    "RunConfig",
    "TasksConfig",
    "ModelConfig",
    "TTTConfig",
    "InferenceConfig",
    "BudgetConfig",
    "RuntimeConfig",
    "OutputConfig",
    "load_run_config",
    "run_config_from_dict",
    "check_run_config",
    "PRECISIONS",
    "to_dict",
]
