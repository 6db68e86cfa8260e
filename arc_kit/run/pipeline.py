"""`arc-kit run`: fallback submission first, then test-time training, inference and voting under a watchdog; resume."""

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from arc_kit import __version__
from arc_kit.base.config import config_hash, save_config
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_json, read_json
from arc_kit.base.progress import fmt_seconds
from arc_kit.consistency import CONSISTENCY_FILE, read_consistency
from arc_kit.data import TaskSet
from arc_kit.predictions import PredictionTail
from arc_kit.run.checks import check_run_inputs, load_run_tasks
from arc_kit.run.config import RunConfig
from arc_kit.run.directory import (
    CONFIG_FILE,
    MANIFEST_FILE,
    PLAN_FILE,
    PREDICTIONS_FILE,
    SNAPSHOTS_DIR,
    STATE_FILE,
    SUBMISSION_FILE,
    TASKS_FILE,
    TTT_DIR,
    checkpoint_hash,
    prepare_out,
    resume_key,
    save_tasks,
    setup_logging,
    tasks_hash,
)
from arc_kit.run.lock import RunLock
from arc_kit.run.plan import Budget, read_plan
from arc_kit.run.report import RunRecord, finish
from arc_kit.run.watchdog import StageResult, watch_child
from arc_kit.submission import FillReport, build_submission, fallback_submission, validate_submission, write_submission
from arc_kit.vote import CONSISTENCY_STRATEGIES, Candidate, VoteConfig, load_vote_config, vote


class Supervisor:
    """One invocation of `arc-kit run`: the parent process that owns the submission and watches the stages."""

    def __init__(
        self,
        cfg: RunConfig,
        out: Path,
        task_set: TaskSet,
        vote_config: VoteConfig,
        budget: Budget,
        log: logging.Logger,
        config_label: str,
    ):
        self.cfg, self.out, self.task_set, self.budget, self.log = cfg, out, task_set, budget, log
        self.vote_config, self.config_label = vote_config, config_label
        self.state: dict = {"deadline": budget.deadline, "stages": {}}
        self.timings: list[StageResult] = []
        self.failures: list[str] = []  # "stage status: reason" of every stage that did not finish normally
        self.manifest: dict = {}  # run.json: provenance hashes (written once the directory is claimed)
        self.fill = FillReport()  # what the last vote had to take from the fallback
        self.votes: dict[str, list[list[Candidate]]] = {}  # the last vote behind submission.json ({}: fallback)
        self.tail = PredictionTail(out / PREDICTIONS_FILE)  # parses only the lines added since the last vote
        self._pred_size: tuple[int, int] = (-1, -1)  # sizes of predictions.jsonl and consistency.jsonl last voted

    def record(self) -> RunRecord:
        """What the reports read at the end of the run (plan.json read back)."""
        return RunRecord(
            cfg=self.cfg,
            out=self.out,
            task_set=self.task_set,
            budget=self.budget,
            log=self.log,
            manifest=self.manifest,
            stages=self.state["stages"],
            timings=self.timings,
            failures=self.failures,
            fill=self.fill,
            votes=self.votes,
            vote_config=self.vote_config,
            plan=read_plan(self.out / PLAN_FILE),
        )

    # ---- submission ------------------------------------------------------------------------------
    def update_submission(self, force: bool = False) -> dict:
        """Vote predictions.jsonl (when it changed) into submission.json; with no predictions the fallback."""
        pred, cons = self.out / PREDICTIONS_FILE, self.out / CONSISTENCY_FILE
        uses_consistency = self.vote_config.strategy in CONSISTENCY_STRATEGIES
        size = (pred.stat().st_size if pred.is_file() else 0, cons.stat().st_size if cons.is_file() else 0)
        if size == self._pred_size and not force:
            return {}
        fill = FillReport()
        votes: dict[str, list[list[Candidate]]] = {}
        try:
            self.tail.read()
            preds = self.tail.predictions
            scores = read_consistency(cons) if uses_consistency and cons.is_file() else None
            votes = vote(preds, self.task_set, self.vote_config, consistency=scores) if preds else {}
            sub = build_submission(votes, self.task_set, self.vote_config.fallback, fill)
        except Exception as e:  # a broken predictions file or a voting bug must not cost the submission
            self.log.info(f"vote: failed ({type(e).__name__}: {e}); writing the fallback submission")
            sub, votes = fallback_submission(self.task_set), {}
        bad = validate_submission(sub, self.task_set)
        if bad:  # never replace a valid file with an invalid one
            self.log.info(f"vote: built an invalid submission ({bad[0]}); keeping the fallback")
            sub, votes = fallback_submission(self.task_set), {}
        self.votes = votes
        write_submission(self.out / SUBMISSION_FILE, sub)
        self._pred_size = size
        self.fill = fill
        return sub

    # ---- stages ----------------------------------------------------------------------------------
    def save_state(self) -> None:
        atomic_write_json(self.out / STATE_FILE, self.state, indent=1)

    def child(self, stage: str, args: list[str], deadline: float, poll=None) -> StageResult:
        cmd = [sys.executable, "-m", "arc_kit.run.stages", stage, str(self.out)] + args
        n = self.cfg.runtime.num_processes
        if n > 1:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={n}",
                "-m",
                "arc_kit.run.stages",
                stage,
                str(self.out),
            ] + args
        env = dict(os.environ)
        if self.cfg.runtime.device == "cpu" and n > 1:
            env["ACCELERATE_USE_CPU"] = "yes"
        (self.out / f"stage_{stage}.json").unlink(missing_ok=True)
        self.state["stages"][stage] = {"status": "running", "started": time.time()}
        self.save_state()
        res = watch_child(
            stage,
            cmd,
            deadline,
            grace_seconds=self.cfg.budget.stage_grace_seconds,
            env=env,
            poll=poll,
            poll_every=self.cfg.budget.revote_seconds,
            log=self.log.info,
        )
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
        self.state["stages"][stage] = dict(
            detail,
            status=res.status,
            started=started,
            seconds=res.seconds,
            message=res.message,
            returncode=res.returncode,
        )
        self.save_state()
        self.timings.append(res)
        self.log.info(
            f"{stage}: {res.status} in {fmt_seconds(res.seconds)}" + (f" ({res.message})" if res.message else "")
        )
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


def supervise(cfg: RunConfig, out: Path, *, fresh: bool = False, config_label: str = "") -> int:
    """The whole `arc-kit run`; returns its exit status (EXIT_OK, or EXIT_STAGE_FAILED with a valid submission).

    Order matters: every input is checked before anything is created, the fallback submission is written
    before anything slow (the checkpoint fingerprint, the stages), and the test outputs stay in this
    process: the stages get the tasks without them (stages.save_tasks)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArcKitError(f"{out}: --out exists and is not a directory")
    notices = check_run_inputs(cfg, config_label or "config")
    task_set = load_run_tasks(cfg)
    vote_config = load_vote_config(cfg.voting)
    budget = Budget(cfg.budget.total_minutes, cfg.budget.safety_margin_minutes)
    with RunLock(out, "arc-kit run"):  # makes OUT; refuses a directory another command holds, touching nothing
        return _supervise_locked(cfg, out, fresh, config_label, task_set, vote_config, budget, notices)


def _supervise_locked(
    cfg: RunConfig,
    out: Path,
    fresh: bool,
    config_label: str,
    task_set: TaskSet,
    vote_config: VoteConfig,
    budget: Budget,
    notices: list[str],
) -> int:
    """The run itself, in OUT under its lock (its stage processes inherit the lock's token)."""
    log = setup_logging(out, "run")
    log.info(
        f"arc-kit {__version__} run '{cfg.name}' -> {out} (budget {fmt_seconds(60 * cfg.budget.total_minutes)}, "
        f"stages end by {time.strftime('%H:%M:%S', time.localtime(budget.deadline))})"
    )
    for note in notices:
        log.warning(f"config: {note}")
    n_inputs = sum(len(t.test) for t in task_set.tasks.values())
    log.info(
        f"tasks: {len(task_set.tasks)} from {task_set.source} ({n_inputs} test inputs)"
        + (f", {len(task_set.invalid)} invalid (fallback attempts)" if task_set.invalid else "")
        + (f", {len(task_set.unselected)} outside the selection (fallback attempts)" if task_set.unselected else "")
    )
    for p in task_set.problems:
        log.info(f"tasks: problem: {p}")

    r = Supervisor(cfg, out, task_set, vote_config, budget, log, config_label)
    manifest_path = out / MANIFEST_FILE
    if (
        not fresh
        and not manifest_path.is_file()
        and not any((out / f).exists() for f in (PREDICTIONS_FILE, STATE_FILE, TTT_DIR))
    ):
        # A new run: a valid submission.json before anything slow (a resumed run re-votes its predictions below).
        t0 = time.time()
        r.update_submission(force=True)
        r.timings.append(StageResult("fallback", "done", time.time() - t0))
        log.info(f"submission: {out / SUBMISSION_FILE} written (fallback attempts)")
    manifest = {
        "kit_version": __version__,
        "config_hash": config_hash(cfg),
        "resume_key": resume_key(cfg),
        "tasks_hash": tasks_hash(task_set),
        "checkpoint_hash": checkpoint_hash(cfg.model.checkpoint),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config_label": config_label,
    }
    resuming = prepare_out(out, manifest, fresh, log)
    prev: dict[str, Any] = {}
    if resuming:
        try:
            prev = read_json(out / STATE_FILE, "run state").get("stages", {}) if (out / STATE_FILE).is_file() else {}
        except ArcKitError:
            prev = {}
        manifest["created"] = read_json(manifest_path, "run manifest").get("created", manifest["created"])
        log.info(f"resuming the run in {out} (same config, tasks and checkpoint)")
    save_config(cfg, out / CONFIG_FILE)
    save_tasks(out / TASKS_FILE, task_set)  # without test outputs
    atomic_write_json(manifest_path, manifest, indent=1)
    r.manifest = manifest  # the supervisor's own field, filled once the run directory is claimed
    if not any(t.name == "fallback" for t in r.timings):
        t0 = time.time()
        r.update_submission(force=True)  # the fallback, or the resumed predictions' vote
        r.timings.append(StageResult("fallback", "done", time.time() - t0))
        log.info(
            f"submission: {out / SUBMISSION_FILE} written "
            f"({'votes of the resumed predictions' if r.tail.predictions else 'fallback attempts'})"
        )
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
        shutil.rmtree(out / TTT_DIR / "model", ignore_errors=True)  # output.keep_checkpoint: false
        shutil.rmtree(out / SNAPSHOTS_DIR, ignore_errors=True)
        log.info(f"output.keep_checkpoint is false: removed {out / TTT_DIR / 'model'} and its snapshots")
    return finish(r.record())
