"""Checks before `arc-kit run` does anything: every config key, preset and path, and the task selection."""

import dataclasses
import math
from pathlib import Path

from arc_kit.augment import AugmentConfig
from arc_kit.base.config import load_config
from arc_kit.base.errors import ArcKitError
from arc_kit.data import BUNDLED, load_tasks, parse_ids
from arc_kit.model.config import TRMConfig, crop_config
from arc_kit.model.starter import resolve_checkpoint
from arc_kit.model.verify import verify_checkpoint
from arc_kit.run.config import RunConfig
from arc_kit.vote import load_vote_config


def check_run_inputs(cfg: RunConfig, where: str = "config") -> list[str]:
    """What the config's dataclasses cannot check themselves (they check every key, type and range as they are
    built): preset names and paths, before anything runs or any directory is made. Errors name the key.
    With a checkpoint, `cfg.model.arch` becomes the architecture that runs (adopt_checkpoint_arch). Returns
    notices for the run log (one line each)."""

    def bad(key, msg):
        raise ArcKitError(f"{where}: config key '{key}': {msg}")

    notices: list[str] = []
    if cfg.model.checkpoint:
        # `starter` (no such path here) is the shipped starter model: the stages get the resolved directory
        ck = resolve_checkpoint(cfg.model.checkpoint)
        cfg.model.checkpoint = str(ck)
        info = verify_checkpoint(ck)  # config, weights headers and sizes, table shape, manifest: before OUT is made
        notices += adopt_checkpoint_arch(cfg, info.config) + canvas_notice(cfg, info.config)
        if cfg.model.canvas == "crop":  # a checkpoint that cannot run on crops is refused now, not in the stage
            try:
                crop_config(info.config, cfg.model.canvas_margin)
            except ArcKitError as e:
                raise ArcKitError(f"{where}: {e}") from None
    elif cfg.model.halt_max_steps:  # the saved config states the steps the new model runs
        cfg.model.arch = dataclasses.replace(cfg.model.arch, halt_max_steps=cfg.model.halt_max_steps)
    if cfg.ttt.augmentation:
        try:
            load_config(AugmentConfig, cfg.ttt.augmentation, subdir="augmentation")
        except ArcKitError as e:
            raise ArcKitError(f"{where}: config key 'ttt.augmentation': {e}") from None
    try:
        load_vote_config(cfg.voting)
    except ArcKitError as e:
        raise ArcKitError(f"{where}: config key 'voting': {e}") from None
    for i, src in enumerate(cfg.ttt.extra_sources):
        if src not in BUNDLED and not Path(src).exists():
            bad(f"ttt.extra_sources[{i}]", f"{src}: no such file or directory, and not a bundled set")
    if cfg.tasks.solutions and not Path(cfg.tasks.solutions).is_file():
        bad("tasks.solutions", f"{cfg.tasks.solutions}: no such file")
    return notices


# Set by the run itself for any model (canvas, puzzle rows, crops), never a difference worth a notice
_RUN_SET = ("seq_len", "num_puzzle_identifiers", "crops", "crop_margin")


def adopt_checkpoint_arch(cfg: RunConfig, stored: TRMConfig) -> list[str]:
    """A checkpoint brings its own architecture: make `cfg.model.arch` the one that runs (the checkpoint's, with
    `model.halt_max_steps` when set), so the run's saved config.yaml and report state it. Values the config set
    in model.arch (those that differ from the defaults) that the checkpoint overrides get a one-line notice."""
    defaults, given = TRMConfig(), cfg.model.arch
    ran = dataclasses.replace(stored, halt_max_steps=cfg.model.halt_max_steps or stored.halt_max_steps)
    ignored = [
        f.name
        for f in dataclasses.fields(TRMConfig)
        if f.name not in _RUN_SET
        and getattr(given, f.name) != getattr(defaults, f.name)
        and getattr(given, f.name) != getattr(ran, f.name)
    ]
    cfg.model.arch = ran
    if not ignored:
        return []
    said = ", ".join(f"{k}={getattr(given, k)}" for k in ignored)
    used = ", ".join(f"{k}={getattr(ran, k)}" for k in ignored)
    hint = "; model.halt_max_steps sets the supervision steps of any model" if "halt_max_steps" in ignored else ""
    return [f"model.arch: {said} not used: the checkpoint brings its own architecture ({used}){hint}"]


def canvas_notice(cfg: RunConfig, stored: TRMConfig) -> list[str]:
    """A checkpoint whose canvas is fixed overrides `model.canvas` (ttt_setup.run_canvas_for applies the same
    rule): a crop-trained one keeps its crops, one with canvas positions the canvas it was trained on, unless
    the run asks for crops. Coordinate positions run on the run's own canvas: nothing to say."""
    canvas, margin = cfg.model.canvas, cfg.model.canvas_margin
    if stored.crops and canvas != "crop":
        runs = f"per-task crops (margin {stored.crop_margin})"
        return [f"model.canvas: {canvas} not used: the checkpoint was trained on crops, so the run uses {runs}"]
    if stored.crops and margin != stored.crop_margin:
        kept = stored.crop_margin
        return [f"model.canvas_margin: {margin} not used: the checkpoint's crops keep their margin, {kept}"]
    side = math.isqrt(stored.seq_len)
    if stored.positions != "coords" and canvas not in ("crop", side):
        return [f"model.canvas: {canvas} not used: the checkpoint's positions fix its canvas at {side}x{side}"]
    return []


def load_run_tasks(cfg: RunConfig):
    """The run's tasks, leniently (a broken task gets fallback attempts); an empty selection is an error."""
    t = cfg.tasks
    ids = t.ids
    if ids is not None and len(ids) == 1 and ids[0].startswith("@"):
        ids = parse_ids(ids[0])
    task_set = load_tasks(t.source, solutions=t.solutions, ids=ids, max_size=t.max_size, limit=t.limit, lenient=True)
    if not task_set.tasks and not task_set.invalid:
        sel = ", ".join(
            f"{k}={v}" for k, v in (("ids", t.ids), ("max_size", t.max_size), ("limit", t.limit)) if v is not None
        )
        raise ArcKitError(f"{t.source}: the selection ({sel or 'all tasks'}) leaves no task to run")
    return task_set
