"""Checks before `arc-kit run` does anything: every config key, preset and path, and the task selection."""

from pathlib import Path

from arc_kit.augment import AugmentConfig
from arc_kit.base.config import load_config
from arc_kit.base.errors import ArcKitError
from arc_kit.data import BUNDLED, load_tasks, parse_ids
from arc_kit.model.starter import resolve_checkpoint
from arc_kit.model.verify import verify_checkpoint
from arc_kit.run.config import RunConfig
from arc_kit.vote import load_vote_config


def check_run_inputs(cfg: RunConfig, where: str = "config") -> None:
    """What the config's dataclasses cannot check themselves (they check every key, type and range as they are
    built): preset names and paths, before anything runs or any directory is made. Errors name the key."""

    def bad(key, msg):
        raise ArcKitError(f"{where}: config key '{key}': {msg}")

    if cfg.model.checkpoint:
        # `starter` (no such path here) is the shipped starter model: the stages get the resolved directory
        ck = resolve_checkpoint(cfg.model.checkpoint)
        cfg.model.checkpoint = str(ck)
        verify_checkpoint(ck)  # config, weights headers and sizes, table shape, manifest: before OUT is made
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
