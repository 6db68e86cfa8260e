"""Checks before `arc-kit run` does anything: every config key, preset and path, and the task selection."""

from pathlib import Path

from arc_kit.errors import ArcKitError
from arc_kit.run.config import RunConfig


def check_run_inputs(cfg: RunConfig, where: str = "config") -> None:
    """Everything `arc-kit run` reads besides the tasks, checked before anything runs or any directory is made:
    the training and architecture keys with their ranges, every preset name and every path. Errors name the key."""
    import math

    from arc_kit.augment import AugmentConfig
    from arc_kit.config import from_dict, load_config
    from arc_kit.model.trm import TRMConfig
    from arc_kit.model.train import TrainConfig
    from arc_kit.vote import load_vote_config

    def bad(key, msg):
        raise ArcKitError(f"{where}: config key '{key}': {msg}")
    try:
        train = from_dict(TrainConfig, dict(cfg.ttt.train), prefix="ttt.train.")
    except ArcKitError as e:
        raise ArcKitError(f"{where}: {e}") from None
    for key, there in (("precision", "runtime.precision"), ("device", "runtime.device"), ("max_steps", "ttt.max_steps"),
                       ("seed", "ttt.seed")):
        if key in cfg.ttt.train:
            bad(f"ttt.train.{key}", f"is set by the run: set {there} instead")
    for key in ("global_batch_size", "log_every"):
        if getattr(train, key) < 1:
            bad(f"ttt.train.{key}", f"must be >= 1, got {getattr(train, key)}")
    for key, positive in (("lr", True), ("puzzle_emb_lr", False), ("weight_decay", False),
                          ("puzzle_emb_weight_decay", False), ("lr_min_ratio", False)):
        v = getattr(train, key)
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            bad(f"ttt.train.{key}", f"must be a finite number {'> 0' if positive else '>= 0'}, got {v}")
    if train.lr_warmup_steps < 0:
        bad("ttt.train.lr_warmup_steps", f"must be >= 0, got {train.lr_warmup_steps}")
    for key in ("beta1", "beta2", "ema_rate"):
        if not 0 <= getattr(train, key) < 1:
            bad(f"ttt.train.{key}", f"must be in [0, 1), got {getattr(train, key)}")
    if train.optimizer not in ("adam_atan2", "adamw"):
        bad("ttt.train.optimizer", f"expected adam_atan2 or adamw, got {train.optimizer!r}")
    if train.loss_type not in ("stablemax_cross_entropy", "softmax_cross_entropy"):
        bad("ttt.train.loss_type", f"expected stablemax_cross_entropy or softmax_cross_entropy, got {train.loss_type!r}")
    if cfg.model.checkpoint:
        ck = Path(cfg.model.checkpoint)
        if not (ck / "config.yaml").is_file():
            raise ArcKitError(f"{ck}: not an arc-kit checkpoint directory (no config.yaml)")
        if set(cfg.model.arch) - {"halt_max_steps"}:
            bad("model.arch", "a checkpoint brings its architecture: only halt_max_steps may be set")
    else:
        for key in ("hidden_size", "num_heads", "L_layers", "H_cycles", "L_cycles", "halt_max_steps", "expansion"):
            v = cfg.model.arch.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not v > 0:
                bad(f"model.arch.{key}", f"must be > 0, got {v}")
        try:
            from_dict(TRMConfig, dict(cfg.model.arch), prefix="model.arch.")
        except ArcKitError as e:
            raise ArcKitError(f"{where}: model.arch: {str(e).removeprefix('model config: ')}") from None
    if "halt_max_steps" in cfg.model.arch and not (isinstance(cfg.model.arch["halt_max_steps"], int)
                                                   and cfg.model.arch["halt_max_steps"] >= 1):
        bad("model.arch.halt_max_steps", f"must be an integer >= 1, got {cfg.model.arch['halt_max_steps']!r}")
    if cfg.ttt.augment:
        try:
            load_config(AugmentConfig, cfg.ttt.augment, subdir="augmentation")
        except ArcKitError as e:
            raise ArcKitError(f"{where}: config key 'ttt.augment': {e}") from None
    try:
        load_vote_config(cfg.voting)
    except ArcKitError as e:
        raise ArcKitError(f"{where}: config key 'voting': {e}") from None
    from arc_kit.data import BUNDLED
    for i, src in enumerate(cfg.ttt.extra_sources):
        if src not in BUNDLED and not Path(src).exists():
            bad(f"ttt.extra_sources[{i}]", f"{src}: no such file or directory, and not a bundled set")
    if cfg.tasks.solutions and not Path(cfg.tasks.solutions).is_file():
        bad("tasks.solutions", f"{cfg.tasks.solutions}: no such file")


def load_run_tasks(cfg: RunConfig):
    """The run's tasks, leniently (a broken task gets fallback attempts); an empty selection is an error."""
    from arc_kit.data import load_tasks, parse_ids
    t = cfg.tasks
    ids = t.ids
    if ids is not None and len(ids) == 1 and ids[0].startswith("@"):
        ids = parse_ids(ids[0])
    task_set = load_tasks(t.source, solutions=t.solutions, ids=ids, max_size=t.max_size, limit=t.limit, lenient=True)
    if not task_set.tasks and not task_set.invalid:
        sel = ", ".join(f"{k}={v}" for k, v in (("ids", t.ids), ("max_size", t.max_size), ("limit", t.limit))
                        if v is not None)
        raise ArcKitError(f"{t.source}: the selection ({sel or 'all tasks'}) leaves no task to run")
    return task_set
