"""Reference import: a reference trainer checkpoint (torch.save of a TRM or HRM) -> a kit checkpoint directory."""

from collections.abc import Sequence
from pathlib import Path

import torch

from arc_kit.base.config import read_yaml
from arc_kit.base.errors import ArcKitError
from arc_kit.identifiers import numbered_rows
from arc_kit.model.build import instantiate
from arc_kit.model.checkpoint import TABLE_KEY, Checkpoint, _write_checkpoint, read_checkpoint_info
from arc_kit.model.config import reference_kind
from arc_kit.model.trm import TRMConfig

REFERENCE_PREFIXES = ("_orig_mod.model.inner.", "model.inner.")

_REFERENCE_DEFAULTS = {
    "puzzle_emb_ndim": 0,
    "puzzle_emb_len": 16,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "forward_dtype": "bfloat16",
    "mlp_t": False,
    "no_ACT_continue": True,
}
_REFERENCE_REQUIRED = (
    "hidden_size",
    "num_heads",
    "L_layers",
    "H_cycles",
    "L_cycles",
    "expansion",
    "pos_encodings",
    "halt_max_steps",
    "halt_exploration_prob",
)


def _shape(t) -> list[int]:
    return list(t.shape)


def import_reference(
    step_file: str | Path,
    config_file: str | Path,
    out_dir: str | Path,
    identifiers: Sequence[str] | None = None,
    identifiers_source: str = "",
    seq_len: int | None = None,
) -> Checkpoint:
    """Convert a checkpoint written by the reference trainer (torch.save of the compiled loss head's state
    dict) plus its all_config.yaml into a kit checkpoint directory. Without `identifiers` rows are named
    `row{i}`. The table is memory-mapped from the input and streamed to the output, never copied whole."""
    step_file, config_file, out_dir = Path(step_file), Path(config_file), Path(out_dir)
    doc = read_yaml(config_file)
    arch = doc.get("arch")
    if not isinstance(arch, dict):
        raise ArcKitError(f"{config_file}: no 'arch:' section (expected the reference all_config.yaml)")
    lacking = [k for k in _REFERENCE_REQUIRED if k not in arch]
    if lacking:
        raise ArcKitError(f"{config_file}: arch section lacks {', '.join(lacking)}")
    if not step_file.is_file():
        raise ArcKitError(f"{step_file}: checkpoint file not found")
    mapped = True
    try:
        try:
            raw = torch.load(step_file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            raw = torch.load(step_file, map_location="cpu", weights_only=True)  # legacy (non-zip) torch.save format
            mapped = False
    except Exception as e:
        raise ArcKitError(
            f"{step_file}: not a PyTorch checkpoint that loads safely "
            f"({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        ) from None
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ArcKitError(f"{step_file}: not a state dict (expected a mapping of names to tensors)")
    sd = {}
    for k, v in raw.items():
        p = next((p for p in REFERENCE_PREFIXES if str(k).startswith(p)), None)
        if p is None:
            raise ArcKitError(
                f"{step_file}: key '{k}' is not under '{REFERENCE_PREFIXES[0]}': "
                "not a TRM or HRM checkpoint written by the reference trainer"
            )
        if not k.startswith(p + "rotary_emb."):  # RoPE tables are recomputed (some forks save them)
            sd[k[len(p) :]] = v
    for key in ("embed_tokens.embedding_weight", "H_init"):
        if key not in sd:
            raise ArcKitError(f"{step_file}: missing key '{REFERENCE_PREFIXES[0]}{key}'")

    # seq_len, vocab_size and table rows come from the dataset in the reference, so read them off the tensors
    kw = {**_REFERENCE_DEFAULTS, **{k: v for k, v in arch.items() if v is not None}}
    table = sd.get(TABLE_KEY)
    if reference_kind(arch) == "hrm":
        kw["puzzle_emb_len"] = 0  # HRM's prefix: always ceil(puzzle_emb_ndim / hidden_size) slots
    P = int(kw["puzzle_emb_len"]) or -(int(kw["puzzle_emb_ndim"]) // -int(kw["hidden_size"]))
    if seq_len is None:  # readable from learned positions or the sequence MLP; RoPE checkpoints: the ARC 900
        pos, mix = sd.get("embed_pos.embedding_weight"), sd.get("L_level.layers.0.mlp_t.gate_up_proj.weight")
        seq_len = (
            pos.shape[0] - P
            if pos is not None and pos.ndim == 2
            else mix.shape[1] - P
            if mix is not None and mix.ndim == 2
            else 900
        )
    cfg = TRMConfig.from_reference(
        kw,
        seq_len=seq_len,
        vocab_size=sd["embed_tokens.embedding_weight"].shape[0],
        num_puzzle_identifiers=max(1, table.shape[0]) if table is not None and table.ndim == 2 else 1,
    )
    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        expected = {k: _shape(v) for k, v in instantiate(cfg).state_dict().items()}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise ArcKitError(
            f"{step_file}: does not match {config_file.name}: missing keys {missing or 'none'}, "
            f"unexpected keys {unexpected or 'none'}"
        )
    for k, shape in expected.items():
        if _shape(sd[k]) != shape:
            raise ArcKitError(f"{step_file}: '{k}' has shape {_shape(sd[k])} but {config_file.name} implies {shape}")

    rows = table.shape[0] if table is not None else 0
    if identifiers is None:
        names = numbered_rows(rows)
    else:
        names = [str(n) for n in identifiers]
        if len(names) != rows:
            raise ArcKitError(
                f"{identifiers_source or 'identifiers'}: {len(names)} identifiers but the puzzle table "
                f"of {step_file} has {rows} rows"
            )
    state = {k: v for k, v in sd.items() if k != TABLE_KEY}
    extra = {
        "source": {
            "checkpoint": str(step_file),
            "config": str(config_file),
            "identifiers": identifiers_source or ("numbered rows" if identifiers is None else "given"),
        },
        "reference_config": doc,
    }
    _write_checkpoint(out_dir, cfg, state, table, names, extra, {"optimizer": None, "ema": None}, release_table=mapped)
    return read_checkpoint_info(out_dir)
