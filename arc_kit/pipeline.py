"""`arc-kit run`: fallback submission first, then test-time training, inference and voting under a watchdog, with resume."""

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from . import __version__
from .budget import Budget, StageResult, fmt_seconds, run_child
from .config import config_hash, save_config, to_dict
from .errors import ArcKitError
from .files import atomic_write_json, read_json
from .run_config import RunConfig
from .predictions import EMPTY_VIEWS_FILE
from .stages import (CONFIG_FILE, MANIFEST_FILE, PLAN_FILE, PREDICTIONS_FILE, REPORT_FILE, SCORE_FILE,
                     STATE_FILE, SUBMISSION_FILE, TASKS_FILE, TTT_DIR, save_tasks, setup_logging)

# What a fresh start removes from an existing run directory (nothing else is touched).
RUN_FILES = (CONFIG_FILE, TASKS_FILE, MANIFEST_FILE, STATE_FILE, PLAN_FILE, PREDICTIONS_FILE, EMPTY_VIEWS_FILE,
             SUBMISSION_FILE, SCORE_FILE, REPORT_FILE, "stage_train.json", "stage_infer.json")

# Exit statuses of `arc-kit run` (a bad config, task source or run directory is an ArcKitError: 2).
EXIT_OK = 0             # every stage finished (a planned deadline and views trimmed by the plan are normal)
EXIT_STAGE_FAILED = 4   # a valid submission.json was written, but a stage raised, produced NaN or was killed
EXIT_NO_SUBMISSION = 1  # the final submission.json is unreadable or invalid (never expected)


# ---------------------------------------------------------------- provenance hashes

def tasks_hash(task_set) -> str:
    """Hash of what the model sees: demonstrations and test inputs (not the solutions) plus invalid ids."""
    blob = {tid: [[[p.input, p.output] for p in t.train], [p.input for p in t.test]] for tid, t in task_set.tasks.items()}
    data = json.dumps([blob, sorted(task_set.invalid)], sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def checkpoint_hash(path: str | Path | None) -> str | None:
    """The checkpoint's fingerprint (checkpoint.fingerprint: bounded cost, never the whole table), or None."""
    if not path:
        return None
    from .checkpoint import fingerprint
    return fingerprint(path)


def resume_key(cfg: RunConfig) -> str:
    """Hash of the settings that change predictions; budget, output, voting and process count may change on resume."""
    d = to_dict(cfg)
    d["model"].pop("checkpoint", None)  # the checkpoint's content hash is compared instead of its path
    keep = {k: d[k] for k in ("model", "ttt", "inference")}
    keep["runtime"] = {k: d["runtime"][k] for k in ("seed", "precision")}
    return config_hash(keep)


# ---------------------------------------------------------------- run directory

def prepare_out(out: Path, manifest: dict, fresh: bool, log: logging.Logger) -> bool:
    """Create or reuse OUT. Returns True when resuming. Refuses a directory holding another run unless `fresh`."""
    mpath = out / MANIFEST_FILE
    old = None
    if mpath.is_file():
        try:
            old = read_json(mpath, "run manifest")
        except ArcKitError:
            old = {}
    has_run_files = any((out / f).exists() for f in (PREDICTIONS_FILE, STATE_FILE, TTT_DIR))
    if fresh:
        for f in RUN_FILES:
            (out / f).unlink(missing_ok=True)
        shutil.rmtree(out / TTT_DIR, ignore_errors=True)
        if old is not None or has_run_files:
            log.info(f"--fresh: removed the previous run's files from {out}")
        return False
    if old is None:
        if has_run_files:
            raise ArcKitError(f"{out}: holds run files but no {MANIFEST_FILE}, so it cannot be resumed safely; "
                              f"pass --fresh to start over there, or choose another --out")
        return False
    diffs = [k for k in ("resume_key", "tasks_hash", "checkpoint_hash") if old.get(k) != manifest[k]]
    if diffs:
        what = {"resume_key": "config (model/ttt/inference settings)", "tasks_hash": "tasks",
                "checkpoint_hash": "checkpoint"}
        raise ArcKitError(f"{out}: holds a run with a different {', '.join(what[d] for d in diffs)}; pass --fresh "
                          f"to discard it, or choose another --out")
    return True


class Run:
    """One invocation of `arc-kit run` (the parent/supervisor process)."""

    def __init__(self, cfg: RunConfig, out: Path, task_set, budget: Budget, log: logging.Logger, config_label: str):
        self.cfg, self.out, self.task_set, self.budget, self.log = cfg, out, task_set, budget, log
        self.config_label = config_label
        self.state = {"deadline": budget.deadline, "stages": {}}
        self.timings: list[StageResult] = []
        self._pred_size = -1
        self.vote_config = None
        self.score = None
        from .predictions import PredictionTail
        self.tail = PredictionTail(out / PREDICTIONS_FILE)  # parses only the lines added since the last vote
        self.failures: list[str] = []   # "stage status: reason" of every stage that did not finish normally
        self.manifest: dict = {}

    # ---- submission ------------------------------------------------------------------------------
    def update_submission(self, force: bool = False) -> dict:
        """Vote predictions.jsonl (when it changed) into submission.json; with no predictions the fallback."""
        from .submission import FillReport, build_submission, fallback_submission, validate_submission, write_submission
        from .vote import vote
        pred = self.out / PREDICTIONS_FILE
        size = pred.stat().st_size if pred.is_file() else 0
        if size == self._pred_size and not force:
            return {}
        fill = FillReport()
        try:
            self.tail.read()
            preds = self.tail.predictions
            votes = vote(preds, self.task_set, self.vote_config) if preds else {}
            sub = build_submission(votes, self.task_set, self.vote_config.fallback, fill)
        except Exception as e:  # a broken predictions file or a voting bug must not cost the submission
            self.log.info(f"vote: failed ({type(e).__name__}: {e}); writing the fallback submission")
            sub = fallback_submission(self.task_set)
        bad = validate_submission(sub, self.task_set)
        if bad:  # never replace a valid file with an invalid one
            self.log.info(f"vote: built an invalid submission ({bad[0]}); keeping the fallback")
            sub = fallback_submission(self.task_set)
        write_submission(self.out / SUBMISSION_FILE, sub)
        self._pred_size = size
        self.fill = fill
        return sub

    # ---- stages ----------------------------------------------------------------------------------
    def save_state(self) -> None:
        atomic_write_json(self.out / STATE_FILE, self.state, indent=1)

    def child(self, stage: str, args: list[str], deadline: float, poll=None) -> StageResult:
        cmd = [sys.executable, "-m", "arc_kit.stages", stage, str(self.out)] + args
        n = self.cfg.runtime.num_processes
        if n > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                   "-m", "arc_kit.stages", stage, str(self.out)] + args
        env = dict(os.environ)
        if self.cfg.runtime.device == "cpu" and n > 1:
            env["ACCELERATE_USE_CPU"] = "yes"
        (self.out / f"stage_{stage}.json").unlink(missing_ok=True)
        self.state["stages"][stage] = {"status": "running", "started": time.time()}
        self.save_state()
        res = run_child(stage, cmd, deadline, grace_seconds=self.cfg.budget.stage_grace_seconds, env=env,
                        poll=poll, poll_every=self.cfg.budget.revote_seconds, log=self.log.info)
        detail = {}
        rpath = self.out / f"stage_{stage}.json"
        if rpath.is_file():
            try:
                detail = read_json(rpath, "stage result")
            except ArcKitError:
                detail = {}
        if res.status == "done" and detail.get("status") == "skipped":
            res.status, res.message = "skipped", detail.get("message", "")
        if res.status == "failed" and detail.get("message"):
            res.message = detail["message"]
        started = self.state["stages"][stage]["started"]
        self.state["stages"][stage] = dict(detail, status=res.status, started=started, seconds=res.seconds,
                                           message=res.message, returncode=res.returncode)
        self.save_state()
        self.timings.append(res)
        self.log.info(f"{stage}: {res.status} in {fmt_seconds(res.seconds)}" + (f" ({res.message})" if res.message else ""))
        if res.status not in ("done", "skipped"):
            # stages stop themselves at their planned deadlines ("done"); a watchdog kill ("timeout"), an
            # exception, a NaN loss or a crash is a failure the exit status and the report say
            self.failures.append(f"{stage} {res.status}" + (f": {res.message}" if res.message else ""))
        return res

    def run_train(self, resuming: bool, prev: dict) -> None:
        cfg, out = self.cfg, self.out
        if not cfg.ttt.enabled:
            return
        prev_status = prev.get("train", {}).get("status")
        has_preds = (out / PREDICTIONS_FILE).is_file() and (out / PREDICTIONS_FILE).stat().st_size > 0
        if resuming and (prev_status in ("done", "timeout", "skipped") or has_preds):
            self.log.info(f"train: kept from the interrupted run ({prev_status or 'predictions exist'})")
            self.state["stages"]["train"] = dict(prev.get("train", {}), status=prev_status or "kept")
            self.timings.append(StageResult("train", "kept", 0.0, None, "resumed run"))
            return
        left = self.budget.left()
        hard = self.budget.deadline - left * cfg.budget.min_infer_share  # inference always keeps its share
        args = ["--until", f"{self.budget.deadline:.3f}", "--train-until", f"{hard:.3f}"]
        if resuming and (out / TTT_DIR / "model").is_dir():
            args.append("--resume")
        self.child("train", args, hard + cfg.budget.stage_grace_seconds / 2)

    def run_infer(self) -> None:
        cfg = self.cfg
        if not cfg.inference.enabled:
            return
        # the child stops itself a little before the deadline so the final vote has time; the watchdog kills at it
        soft = self.budget.deadline - min(10.0, 0.05 * max(0.0, self.budget.left()))
        self.child("infer", ["--until", f"{soft:.3f}"], self.budget.deadline, poll=self.update_submission)


def check_run_inputs(cfg: RunConfig, where: str = "config") -> None:
    """Everything `arc-kit run` reads besides the tasks, checked before anything runs or any directory is made:
    the training and architecture keys with their ranges, every preset name and every path. Errors name the key."""
    import math

    from .augment import AugmentConfig
    from .config import from_dict, load_config
    from .model import TRMConfig
    from .train import TrainConfig
    from .vote import load_vote_config

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
    from .data import BUNDLED
    for i, src in enumerate(cfg.ttt.extra_sources):
        if src not in BUNDLED and not Path(src).exists():
            bad(f"ttt.extra_sources[{i}]", f"{src}: no such file or directory, and not a bundled set")
    if cfg.tasks.solutions and not Path(cfg.tasks.solutions).is_file():
        bad("tasks.solutions", f"{cfg.tasks.solutions}: no such file")


def load_run_tasks(cfg: RunConfig):
    """The run's tasks, leniently (a broken task gets fallback attempts); an empty selection is an error."""
    from .data import load_tasks, parse_ids
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


def run(cfg: RunConfig, out: Path, *, fresh: bool = False, config_label: str = "") -> int:
    """The whole `arc-kit run`; returns its exit status (EXIT_OK, or EXIT_STAGE_FAILED with a valid submission).

    Order matters: every input is checked before anything is created, the fallback submission is written
    before anything slow (the checkpoint fingerprint, the stages), and the test outputs stay in this
    process: the stages get the tasks without them (stages.save_tasks)."""
    from .vote import load_vote_config
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArcKitError(f"{out}: --out exists and is not a directory")
    check_run_inputs(cfg, config_label or "config")
    task_set = load_run_tasks(cfg)
    vote_config = load_vote_config(cfg.voting)
    budget = Budget(cfg.budget.total_minutes, cfg.budget.safety_margin_minutes)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArcKitError(f"{out}: cannot create the run directory: {e.strerror or e}") from None
    log = setup_logging(out, "run")
    log.info(f"arc-kit {__version__} run '{cfg.name}' -> {out} (budget {fmt_seconds(60 * cfg.budget.total_minutes)}, "
             f"stages end by {time.strftime('%H:%M:%S', time.localtime(budget.deadline))})")
    n_inputs = sum(len(t.test) for t in task_set.tasks.values())
    log.info(f"tasks: {len(task_set.tasks)} from {task_set.source} ({n_inputs} test inputs)"
             + (f", {len(task_set.invalid)} invalid (fallback attempts)" if task_set.invalid else "")
             + (f", {len(task_set.unselected)} outside the selection (fallback attempts)" if task_set.unselected else ""))
    for p in task_set.problems:
        log.info(f"tasks: problem: {p}")

    r = Run(cfg, out, task_set, budget, log, config_label)
    r.vote_config = vote_config
    manifest_path = out / MANIFEST_FILE
    if not fresh and not manifest_path.is_file() and not any(
            (out / f).exists() for f in (PREDICTIONS_FILE, STATE_FILE, TTT_DIR)):
        # A new run: a valid submission.json before anything slow (a resumed run re-votes its predictions below).
        t0 = time.time()
        r.update_submission(force=True)
        r.timings.append(StageResult("fallback", "done", time.time() - t0))
        log.info(f"submission: {out / SUBMISSION_FILE} written (fallback attempts)")
    manifest = {"kit_version": __version__, "config_hash": config_hash(cfg), "resume_key": resume_key(cfg),
                "tasks_hash": tasks_hash(task_set), "checkpoint_hash": checkpoint_hash(cfg.model.checkpoint),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config_label": config_label}
    resuming = prepare_out(out, manifest, fresh, log)
    prev = {}
    if resuming:
        try:
            prev = read_json(out / STATE_FILE, "run state").get("stages", {}) if (out / STATE_FILE).is_file() else {}
        except ArcKitError:
            prev = {}
        manifest["created"] = read_json(manifest_path, "run manifest").get("created", manifest["created"])
        log.info(f"resuming the run in {out} (same config, tasks and checkpoint)")
    save_config(cfg, out / CONFIG_FILE)
    save_tasks(out / TASKS_FILE, task_set)   # without test outputs
    atomic_write_json(manifest_path, manifest, indent=1)
    r.manifest = manifest
    if not any(t.name == "fallback" for t in r.timings):
        t0 = time.time()
        r.update_submission(force=True)  # the fallback, or the resumed predictions' vote
        r.timings.append(StageResult("fallback", "done", time.time() - t0))
        log.info(f"submission: {out / SUBMISSION_FILE} written "
                 f"({'votes of the resumed predictions' if r.tail.predictions else 'fallback attempts'})")
    try:
        r.run_train(resuming, prev)
        r.run_infer()
    except KeyboardInterrupt:
        log.info("interrupted: voting what has been predicted so far")
        r.failures.append("run interrupted")
    except Exception as e:  # a supervisor bug costs the remaining stages, never the submission
        log.error(f"run: internal error ({type(e).__name__}: {e}); voting what has been predicted so far")
        r.failures.append(f"run internal error: {type(e).__name__}: {e}")
    t0 = time.time()
    r.update_submission(force=True)
    r.timings.append(StageResult("vote", "done", time.time() - t0))
    if not cfg.output.keep_checkpoint and (out / TTT_DIR / "model").is_dir():
        shutil.rmtree(out / TTT_DIR / "model", ignore_errors=True)   # output.keep_checkpoint: false
        log.info(f"output.keep_checkpoint is false: removed {out / TTT_DIR / 'model'}")
    from .run_report import finish
    return finish(r)
