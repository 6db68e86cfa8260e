"""The training stage's setup: the run's canvas, the model (new or a checkpoint's) and the training data."""

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from arc_kit.augment import AugmentConfig
from arc_kit.base.config import load_config
from arc_kit.crops import BUCKETS, bucket_length, task_crop
from arc_kit.data import GRID_SIDE, Task, visible_side
from arc_kit.run.config import RunConfig
from arc_kit.run.directory import TTT_DIR
from arc_kit.run.plan import Plan

if TYPE_CHECKING:
    import torch

    from arc_kit.model.trm import TRM


def ttt_canvas(cfg: RunConfig, tasks: list[Task]) -> int:
    """The canvas side of a model trained by this run: fixed, or the smallest that fits every selected task's
    visible grids plus the EOS border and `model.canvas_margin` (answer-blind: test outputs never count);
    30 (the coordinate grid) with crops."""
    if cfg.model.canvas == "crop":
        return GRID_SIDE
    if cfg.model.canvas == "task":
        side = max((visible_side(t) for t in tasks), default=1)
        return min(GRID_SIDE, side + 1 + cfg.model.canvas_margin)
    return int(cfg.model.canvas)


def _fit(cfg: RunConfig) -> dict:
    """The run's settings every model of this run is built with (model.build.fit_config's arguments)."""
    crops = cfg.model.canvas == "crop"
    return {"crop_margin": cfg.model.canvas_margin if crops else None, "halt_max_steps": cfg.model.halt_max_steps}


def scratch_model(cfg: RunConfig, canvas: int, rows: int):
    """A new TRM of `model.arch` on the canvas with `rows` puzzle rows; the same weights in every process."""
    from arc_kit.model.build import build_model

    return build_model(
        cfg.model.arch,
        seq_len=canvas * canvas,
        rows=rows,
        seed=cfg.runtime.seed,
        row_init=cfg.ttt.row_init,
        **_fit(cfg),
    )


def checkpoint_model_for(cfg: RunConfig, names: list[str], log: logging.Logger, canvas: int | None = None):
    """The checkpoint's network with a puzzle table of exactly `names` (row 0 `<blank>`): a name the checkpoint
    already has starts from its stored row, a new one as `ttt.row_init` says (the mean of the whole stored table,
    streamed, by default). `canvas`: the run's canvas, for a model with coordinate positions (any canvas)."""
    from arc_kit.model.checkpoint import load_model

    checkpoint = cfg.model.checkpoint
    if not checkpoint:
        raise ValueError("checkpoint_model_for: the run config has no model.checkpoint")
    how = cfg.ttt.row_init
    seq_len = canvas * canvas if canvas is not None else None
    model, n_new = load_model(checkpoint, names, seq_len=seq_len, seed=cfg.runtime.seed, row_init=how, **_fit(cfg))
    start = {"mean": "the mean of its stored table", "zero": "zeros", "normal": "N(0, 1/hidden_size)"}
    log.info(
        f"train: {len(names) - 1} puzzles to train: {len(names) - 1 - n_new} start from the checkpoint's "
        f"rows, {n_new} from {start[how]}"
    )
    return model


def run_canvas_for(model, cfg: RunConfig, targets: list[Task]) -> int:
    """A checkpoint's canvas for this run. Canvas-stride positions tie a model to the canvas it was trained on,
    and a crop-trained model keeps its crops; coordinate positions (cell (r, c) at 30 r + c, e.g. the starter
    model) run on the run's own canvas."""
    if model.config.positions == "coords" and not model.config.crops:
        return ttt_canvas(cfg, targets)
    return math.isqrt(model.config.seq_len)


def probe_side(model, tasks: list[Task]) -> int:
    """The square side the speed probe measures: the canvas, or with crops the side of the tasks' mean bucket
    length (the sequences training and inference will run, on average)."""
    if not model.config.crops:
        return math.isqrt(model.config.seq_len)
    lengths = [bucket_length(h * w) for h, w in (task_crop(t, model.config.crop_margin) for t in tasks)]
    mean = sum(lengths) / len(lengths) if lengths else BUCKETS[-1]
    return min(GRID_SIDE, math.ceil(math.sqrt(mean)))


@dataclass
class StageEnv:
    """What every phase of the training stage shares: the run directory, config, process and hardware."""

    out: Path
    cfg: RunConfig
    log: logging.Logger
    accelerator: object | None
    world: int
    is_main: bool
    device: "torch.device"
    autocast: "torch.dtype | None"
    threads: int

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / TTT_DIR / "model"


def probe_model(env: StageEnv, targets: list[Task]) -> tuple["TRM", int]:
    """The model the throughput probe measures, and the canvas: a checkpoint's own (only its row 0 loaded; the
    rows this run trains are set up when building), or a new model on the run's canvas."""
    cfg = env.cfg
    if cfg.model.checkpoint:
        from arc_kit.model.checkpoint import load_model, read_checkpoint_info

        stored = read_checkpoint_info(cfg.model.checkpoint)
        side = run_canvas_for(stored, cfg, targets)
        model, _ = load_model(cfg.model.checkpoint, stored.puzzle_names[:1], seq_len=side * side, **_fit(cfg))
        return model.to(env.device), math.isqrt(model.config.seq_len)
    canvas = ttt_canvas(cfg, targets)
    return scratch_model(cfg, canvas, 1).to(env.device), canvas


def build_training(
    env: StageEnv, plan: Plan, canvas: int, targets: list[Task], extras: list[Task], crops: tuple[bool, int]
):
    """The training data (identity + the planned augmentations per target task, one puzzle row each; with
    `crops` = (True, margin) each task on its crop) and the model whose table holds exactly those puzzles.
    Returns (model, data)."""
    from arc_kit.model.dataset import TrainData

    cfg, ttt = env.cfg, env.cfg.ttt
    aug = ttt.augmentation
    aug_cfg = load_config(AugmentConfig, aug, subdir="augmentation") if aug else AugmentConfig()
    n_aug = plan.ttt_augmentations
    data = TrainData.from_tasks(
        targets + extras,
        [n_aug] * len(targets) + [ttt.extra_augmentations] * len(extras),
        aug_cfg,
        seed=cfg.runtime.seed,
        canvas=canvas,
        translate=ttt.translate,
        use_test_pairs=[False] * len(targets) + [True] * len(extras),
        crops=crops[0],
        crop_margin=crops[1],
    )
    # The table holds exactly the puzzles trained in this run (identity first, then the sampled augmentations,
    # task by task): inference reads them from OUT/ttt/model. A checkpoint's other rows for these tasks were
    # trained with another network and are never loaded.
    if cfg.model.checkpoint:
        model = checkpoint_model_for(cfg, data.puzzle_names, env.log, canvas)
    else:
        model = scratch_model(cfg, canvas, len(data.puzzle_names))
    return model.to(env.device), data
