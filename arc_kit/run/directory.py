"""The run directory (`--out`): every file name in it, the stages' task file, log, manifest and resume guard."""

import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path

from arc_kit.base.config import config_hash, to_dict
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_json, read_json
from arc_kit.consistency import CONSISTENCY_FILE
from arc_kit.data import TaskSet, task_set_from_json, task_set_to_json
from arc_kit.predictions import EMPTY_VIEWS_FILE, PREDICTIONS_FILE
from arc_kit.run.config import RunConfig

# Files of a run directory (`--out`).
CONFIG_FILE = "config.yaml"  # the resolved RunConfig of this run
TASKS_FILE = "tasks.json"  # the selected tasks, exactly as the stages see them
MANIFEST_FILE = "run.json"  # hashes that decide whether a rerun may resume
STATE_FILE = "state.json"  # per-stage status (parent writes)
PLAN_FILE = "plan.json"  # time split and trimmed counts (training stage writes)
SUBMISSION_FILE = "submission.json"
SCORE_FILE = "score.json"
REPORT_FILE = "report.md"
REPORT_HTML_FILE = "report.html"  # the run explorer (run/html_report.py)
LOG_FILE = "run.log"
TTT_DIR = "ttt"  # ttt/model: the test-time-trained checkpoint (+ training state)
SNAPSHOTS_DIR = "ttt/snapshots"  # ttt/snapshots/<fraction>/: the model at each earlier inference.snapshots fraction
LOCK_FILE = ".lock"  # run/lock.py: flock'ed while a command writes here; JSON naming the holder (pid, host, start)

# What a fresh start removes from an existing run directory (nothing else is touched).
RUN_FILES = (
    CONFIG_FILE,
    TASKS_FILE,
    MANIFEST_FILE,
    STATE_FILE,
    PLAN_FILE,
    PREDICTIONS_FILE,
    EMPTY_VIEWS_FILE,
    CONSISTENCY_FILE,
    SUBMISSION_FILE,
    SCORE_FILE,
    REPORT_FILE,
    REPORT_HTML_FILE,
    "stage_train.json",
    "stage_infer.json",
)

# Logger name -> the (run directory, tag) its handlers write for: setting up the same pair again is a no-op.
_LOG_TARGETS: dict[str, tuple[str, str]] = {}


def save_tasks(path: Path, task_set: TaskSet) -> None:
    """The stages' task file: the selected tasks' demonstrations and test inputs. Test outputs are never written:
    they exist for scoring only, in the parent process."""
    atomic_write_json(path, task_set_to_json(task_set, with_solutions=False))


def load_saved_tasks(path: Path) -> TaskSet:
    return task_set_from_json(read_json(path, "run tasks file"), str(path))


def setup_logging(out: Path, tag: str) -> logging.Logger:
    """Logger `arc_kit.run`: short lines on stderr, timestamped lines appended to OUT/run.log (all processes)."""
    log = logging.getLogger("arc_kit.run")
    if _LOG_TARGETS.get(log.name) == (str(out), tag):
        return log
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.setLevel(logging.INFO)
    log.propagate = False
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(logging.Formatter(f"[{tag}] %(message)s"))
    log.addHandler(err)
    out.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(out / LOG_FILE, encoding="utf-8")
    fh.setFormatter(logging.Formatter(f"%(asctime)s [{tag} pid %(process)d] %(message)s"))
    log.addHandler(fh)
    _LOG_TARGETS[log.name] = (str(out), tag)
    return log


# ---------------------------------------------------------------- manifest and resume


def tasks_hash(task_set) -> str:
    """Hash of what the model sees: demonstrations and test inputs (not the solutions) plus invalid ids."""
    blob = {
        tid: [[[p.input, p.output] for p in t.train], [p.input for p in t.test]] for tid, t in task_set.tasks.items()
    }
    data = json.dumps([blob, sorted(task_set.invalid)], sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def checkpoint_hash(path: str | Path | None) -> str | None:
    """The checkpoint's fingerprint (checkpoint.fingerprint: bounded cost, never the whole table), or None."""
    if not path:
        return None
    from arc_kit.model.checkpoint import fingerprint

    return fingerprint(path)


def resume_key(cfg: RunConfig) -> str:
    """Hash of the settings that change predictions; budget, output, voting and process count may change on resume."""
    d = to_dict(cfg)
    d["model"].pop("checkpoint", None)  # the checkpoint's content hash is compared instead of its path
    d["inference"].pop("consistency", None)  # adds consistency.jsonl beside the predictions: may change on resume
    d["inference"].pop("compile", None)  # speed only: may change on resume (and older runs still resume)
    if d["inference"].get("snapshots") == [1.0]:
        d["inference"].pop("snapshots")  # the default: runs made before snapshots existed still resume
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
        for snap_empty in out.glob("predictions_empty_*.jsonl"):  # earlier snapshots' empty views
            snap_empty.unlink()
        shutil.rmtree(out / TTT_DIR, ignore_errors=True)
        if old is not None or has_run_files:
            log.info(f"--fresh: removed the previous run's files from {out}")
        return False
    if old is None:
        if has_run_files:
            raise ArcKitError(
                f"{out}: holds run files but no {MANIFEST_FILE}, so it cannot be resumed safely; "
                f"pass --fresh to start over there, or choose another --out"
            )
        return False
    refuse_changed(
        out,
        old,
        manifest,
        {"resume_key": "config (model/ttt/inference settings)", "tasks_hash": "tasks", "checkpoint_hash": "checkpoint"},
        "pass --fresh to discard it, or choose another --out",
    )
    return True


def refuse_changed(where: Path, old: dict, new: dict, what: dict[str, str], advice: str) -> None:
    """The one resume guard (`arc-kit run`, `arc-kit predict`): appending to a directory is allowed only when the
    settings that shaped its results (`what`: key -> description) are the same; otherwise an error naming them."""
    diffs = [k for k in what if old.get(k) != new.get(k)]
    if diffs:
        raise ArcKitError(
            f"{where}: holds results made with a different {', '.join(what[k] for k in diffs)} "
            f"({', '.join(f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in diffs)}); {advice}"
        )
