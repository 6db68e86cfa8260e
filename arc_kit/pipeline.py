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
from .stages import (CONFIG_FILE, MANIFEST_FILE, PLAN_FILE, PREDICTIONS_FILE, REPORT_FILE, SCORE_FILE,
                     STATE_FILE, SUBMISSION_FILE, TASKS_FILE, TTT_DIR, save_tasks, setup_logging)

# What a fresh start removes from an existing run directory (nothing else is touched).
RUN_FILES = (CONFIG_FILE, TASKS_FILE, MANIFEST_FILE, STATE_FILE, PLAN_FILE, PREDICTIONS_FILE, SUBMISSION_FILE,
             SCORE_FILE, REPORT_FILE, "stage_train.json", "stage_infer.json")


# ---------------------------------------------------------------- provenance hashes

def tasks_hash(task_set) -> str:
    """Hash of what the model sees: demonstrations and test inputs (not the solutions) plus invalid ids."""
    blob = {tid: [[[p.input, p.output] for p in t.train], [p.input for p in t.test]] for tid, t in task_set.tasks.items()}
    data = json.dumps([blob, sorted(task_set.invalid)], sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def checkpoint_hash(path: str | Path | None) -> str | None:
    """sha256 over a checkpoint directory's files (names and bytes), or None without a checkpoint."""
    if not path:
        return None
    p = Path(path)
    if not p.exists():
        raise ArcKitError(f"{p}: checkpoint directory not found")
    files = sorted(f for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file() and not f.name.startswith("."))
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


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
        self.state = {"stages": {}}
        self.timings: list[StageResult] = []
        self._pred_size = -1
        self.vote_config = None
        self.score = None

    # ---- submission ------------------------------------------------------------------------------
    def update_submission(self, force: bool = False) -> dict:
        """Vote predictions.jsonl (when it changed) into submission.json; with no predictions the fallback."""
        from .predictions import iter_predictions
        from .submission import FillReport, build_submission, fallback_submission, validate_submission, write_submission
        from .vote import vote
        pred = self.out / PREDICTIONS_FILE
        size = pred.stat().st_size if pred.is_file() else 0
        if size == self._pred_size and not force:
            return {}
        fill = FillReport()
        try:
            problems: list[str] = []
            votes = vote(iter_predictions(pred, problems=problems), self.task_set, self.vote_config) if size else {}
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
        self.state["stages"][stage] = dict(detail, status=res.status, seconds=res.seconds, message=res.message,
                                           returncode=res.returncode)
        self.save_state()
        self.timings.append(res)
        self.log.info(f"{stage}: {res.status} in {fmt_seconds(res.seconds)}" + (f" ({res.message})" if res.message else ""))
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


def check_stage_configs(cfg: RunConfig) -> None:
    """Fail now, naming the key, on a bad `ttt.train` or `model.arch` key (the stages would fail much later)."""
    from .config import from_dict
    from .model import TRMConfig
    from .train import TrainConfig
    from_dict(TrainConfig, dict(cfg.ttt.train), prefix="ttt.train.")
    if not cfg.model.checkpoint:
        from_dict(TRMConfig, dict(cfg.model.arch), prefix="model.arch.")
    elif set(cfg.model.arch) - {"halt_max_steps"}:
        logging.getLogger("arc_kit.run").info("model.arch: a checkpoint brings its architecture; only "
                                              "halt_max_steps is taken from the config")


def run(cfg: RunConfig, out: Path, *, fresh: bool = False, config_label: str = "") -> int:
    """The whole `arc-kit run`. Returns 0 when a valid submission.json was written."""
    from .data import load_tasks, parse_ids
    from .vote import load_vote_config
    budget = Budget(cfg.budget.total_minutes, cfg.budget.safety_margin_minutes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = setup_logging(out, "run")
    log.info(f"arc-kit {__version__} run '{cfg.name}' -> {out} (budget {fmt_seconds(60 * cfg.budget.total_minutes)}, "
             f"stages end by {time.strftime('%H:%M:%S', time.localtime(budget.deadline))})")
    ids = cfg.tasks.ids
    if ids is not None and len(ids) == 1 and ids[0].startswith("@"):
        ids = parse_ids(ids[0])
    task_set = load_tasks(cfg.tasks.source, solutions=cfg.tasks.solutions, ids=ids, max_size=cfg.tasks.max_size,
                          limit=cfg.tasks.limit, lenient=True)
    n_inputs = sum(len(t.test) for t in task_set.tasks.values())
    log.info(f"tasks: {len(task_set.tasks)} from {task_set.source} ({n_inputs} test inputs)"
             + (f", {len(task_set.invalid)} invalid (fallback attempts)" if task_set.invalid else ""))
    for p in task_set.problems:
        log.info(f"tasks: problem: {p}")
    vote_config = load_vote_config(cfg.voting)
    check_stage_configs(cfg)
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
        manifest["created"] = read_json(out / MANIFEST_FILE, "run manifest").get("created", manifest["created"])
        log.info(f"resuming the run in {out} (same config, tasks and checkpoint)")
    save_config(cfg, out / CONFIG_FILE)
    save_tasks(out / TASKS_FILE, task_set)
    atomic_write_json(out / MANIFEST_FILE, manifest, indent=1)

    r = Run(cfg, out, task_set, budget, log, config_label)
    r.vote_config = vote_config
    t0 = time.time()
    r.update_submission(force=True)  # valid from the first moments: fallback, or the resumed predictions' vote
    r.timings.append(StageResult("fallback", "done", time.time() - t0))
    log.info(f"submission: {out / SUBMISSION_FILE} written ({'votes of the resumed predictions' if r._pred_size > 0 else 'fallback attempts'})")
    try:
        r.run_train(resuming, prev)
        r.run_infer()
    except KeyboardInterrupt:
        log.info("interrupted: voting what has been predicted so far")
    except Exception as e:  # a supervisor bug costs the remaining stages, never the submission
        log.error(f"run: internal error ({type(e).__name__}: {e}); voting what has been predicted so far")
    t0 = time.time()
    r.update_submission(force=True)
    r.timings.append(StageResult("vote", "done", time.time() - t0))
    from .run_report import finish
    return finish(r)
