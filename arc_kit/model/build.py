"""The one model builder: TRM or HRM by `kind`, a new model fitted to a run, the one initialiser of new puzzle rows.

Every command that trains (`arc-kit train`, the run's training stage) and every benchmark builds its model here, and
`checkpoint.load_model` (a checkpoint's model fitted to a run) uses the same fitting and row initialiser, so the run
settings (canvas, crops, supervision steps) and the start of new puzzle rows are applied the same way.
"""

import dataclasses
from collections.abc import Sequence

import torch

from arc_kit.base.errors import ArcKitError
from arc_kit.model.config import GRID_CELLS, TRMConfig, crop_config
from arc_kit.model.hrm import HRM
from arc_kit.model.trm import TRM

ROW_INITS = ("mean", "zero", "normal")  # how the rows of puzzles new to a model start (ttt.row_init)


def instantiate(arch: TRMConfig) -> TRM:
    """The model `arch.kind` names, built on `arch` exactly (no run settings; the global torch RNG seeds its
    weights): an HRM for kind "hrm", else a TRM. HRM subclasses TRM, so everything typed `TRM` (trainer,
    inference, checkpoints) takes either."""
    return HRM(arch) if arch.kind == "hrm" else TRM(arch)


def fit_config(
    config: TRMConfig,
    *,
    seq_len: int | None = None,
    crop_margin: int | None = None,
    halt_max_steps: int | None = None,
    crop_key: str = "model.canvas",
) -> TRMConfig:
    """`config` made for a run: on crops when `crop_margin` is given (a crop-trained model keeps its own; the
    refusal names `crop_key`), else on `seq_len` tokens when given; `halt_max_steps` supervision steps when given."""
    if crop_margin is not None:
        config = crop_config(config, crop_margin, key=crop_key)
    elif seq_len is not None:
        config = dataclasses.replace(config, seq_len=seq_len)
    if halt_max_steps is not None:
        config = dataclasses.replace(config, halt_max_steps=halt_max_steps)
    return config


def build_model(
    arch: TRMConfig,
    *,
    seq_len: int | None = None,
    rows: int = 1,
    crop_margin: int | None = None,
    halt_max_steps: int | None = None,
    seed: int = 0,
    row_init: str = "zero",
    crop_key: str = "model.canvas",
) -> TRM:
    """A new model of architecture `arch` with `rows` puzzle rows (row 0 included), fitted as `fit_config` says.
    Seeded by `seed`, so every process (and a resumed run) builds the same initial weights. `row_init`
    "normal" draws rows 1.. from N(0, 1/hidden_size); "mean" and "zero" keep the zeros a new table starts with
    (there is no trained table to take a mean of)."""
    arch = dataclasses.replace(arch, num_puzzle_identifiers=max(1, rows))
    if crop_margin is not None:  # a new crop model: the 30x30 grid, then crops
        arch = dataclasses.replace(arch, seq_len=GRID_CELLS)
    arch = fit_config(arch, seq_len=seq_len, crop_margin=crop_margin, halt_max_steps=halt_max_steps, crop_key=crop_key)
    torch.manual_seed(seed)
    model = instantiate(arch)
    if row_init == "normal" and arch.puzzle_emb_ndim > 0:
        init_rows(model, list(range(1, arch.num_puzzle_identifiers)), "normal")
    return model


def init_rows(model: TRM, rows: Sequence[int], how: str, mean: torch.Tensor | None = None) -> None:
    """The one initialiser of new puzzle rows: set the table `rows` as `how` says: "mean" (the given [ndim] row,
    or the mean of the table's other rows when None), "zero", or "normal" (N(0, 1/hidden_size), the token
    embeddings' scale, from torch's global generator: the caller seeds it)."""
    if how not in ROW_INITS:
        raise ArcKitError(f"puzzle row init: expected one of {', '.join(ROW_INITS)}, got {how!r}")
    if not rows:
        return
    table = model.puzzle_emb.weights  # [rows, ndim]
    idx = torch.tensor(list(rows), device=table.device)
    with torch.no_grad():
        if how == "normal":
            std = model.config.hidden_size**-0.5
            table[idx] = torch.randn(len(idx), table.shape[1]).mul_(std).to(table.device, table.dtype)
        elif how == "zero":
            table[idx] = 0.0
        else:
            if mean is None:
                others = torch.ones(table.shape[0], dtype=torch.bool, device=table.device)
                others[idx] = False
                mean = table[others].mean(0)
            table[idx] = mean.to(table.device, table.dtype).reshape(1, -1)


def add_puzzles(
    model: TRM, names: Sequence[str], init: "str | torch.Tensor" = "mean", puzzle_names: list[str] | None = None
) -> list[int]:
    """Grow the puzzle table for new puzzles and return their rows. New rows start as `init_rows` says (`init`
    "mean": the mean of the rows loaded now; "zero"; "normal"; or a given [ndim] row such as a whole pretrained
    table's mean, `checkpoint.table_mean`). When `puzzle_names` (the row -> name list) is given, names already in
    it keep their row and it is extended in place.
    Trainers holding `model.puzzle_emb.weights` must fetch it again: the buffer is replaced."""
    how, mean = ("mean", init) if torch.is_tensor(init) else (init, None)
    if how not in ROW_INITS:
        raise ArcKitError(f"add_puzzles: init must be one of {', '.join(ROW_INITS)} or a row tensor, got {init!r}")
    if not hasattr(model, "puzzle_emb"):
        raise ArcKitError("add_puzzles: the model has no puzzle embedding (puzzle_emb_ndim 0)")
    table = model.puzzle_emb.weights
    known = {n: i for i, n in enumerate(puzzle_names)} if puzzle_names is not None else {}
    out: list[int] = []
    new: list[str] = []
    for name in names:
        if name not in known:
            known[name] = table.shape[0] + len(new)
            new.append(name)
        out.append(known[name])
    if new:
        n0 = table.shape[0]
        model.puzzle_emb.weights = torch.cat([table, table.new_zeros(len(new), table.shape[1])]).contiguous()
        model.config = dataclasses.replace(model.config, num_puzzle_identifiers=model.puzzle_emb.weights.shape[0])
        init_rows(model, list(range(n0, n0 + len(new))), how, mean)
        if puzzle_names is not None:
            puzzle_names.extend(new)
    return out
