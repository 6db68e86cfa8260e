"""Kaggle notebook job guard: run `arc-kit run` with a hard timeout, keep submission.json valid, summarise."""

import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_bytes
from arc_kit.data import load_tasks
from arc_kit.kaggle.settings import MIN_RUN_MINUTES, NotebookSettings
from arc_kit.run.config import load_run_config
from arc_kit.run.directory import REPORT_HTML_FILE
from arc_kit.run.watchdog import watch_child
from arc_kit.submission import ATTEMPT_KEYS, ZEROS, read_submission, validate_submission, write_submission


def submission_problems(path: str | Path, test_file: str | Path) -> list[str]:
    """What makes `path` unacceptable for `test_file` (empty list: valid), by the kit's own validator
    (`arc-kit validate`); a broken task in the test file still expects one entry per test input."""
    try:
        task_set = load_tasks(test_file, lenient=True)
    except Exception as e:
        return [f"{test_file}: unreadable: {type(e).__name__}"]
    try:
        sub = read_submission(path)
    except ArcKitError as e:
        return [str(e)]
    return [f"{path}: {p}" for p in validate_submission(sub, task_set)]


# ---------------------------------------------------------------- the job


@dataclass
class JobResult:
    started: bool = False
    returncode: int | None = None
    timed_out: bool = False
    minutes: float = 0.0
    used_run_submission: bool = False  # submission.json came from the job (else: the fallback)
    syncs: int = 0  # times a better submission was copied in while the job ran
    problems: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    report: str = ""  # report.html copied to the output folder (the run explorer), "" when the job wrote none


def job_overrides(s: NotebookSettings, job_minutes: float) -> list[str]:
    """`key=value` overrides for `arc-kit run`: budget, devices and dtype from what the notebook found."""
    margin = 0.5
    # the config's own margin, capped so it stays below a small budget (the config check demands it); a broken
    # config keeps the default here and is reported by `arc-kit run` itself
    with contextlib.suppress(Exception):
        margin = load_run_config(s.config).budget.safety_margin_minutes
    ov = [
        f"budget.total_minutes={job_minutes:.3f}",
        f"budget.safety_margin_minutes={min(margin, 0.25 * job_minutes):.3f}",
    ]
    if s.gpus:
        ov += ["runtime.device=cuda", f"runtime.num_processes={s.gpus}"]
        if not s.bf16:
            ov.append("runtime.precision=float32")  # T4/P100: no bfloat16
    else:
        ov += ["runtime.device=cpu", "runtime.num_processes=1", "runtime.precision=float32"]
    return ov + list(s.overrides)


def job_command(s: NotebookSettings, job_minutes: float) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "arc_kit.cli",
        "run",
        "--config",
        s.config,
        "--tasks",
        str(s.test_file),
        "--out",
        str(Path(s.output_dir) / "arc-kit-run"),
    ]
    if s.checkpoint_dir:
        cmd += ["--checkpoint", s.checkpoint_dir]
    return cmd + job_overrides(s, job_minutes)


def run_job(
    s: NotebookSettings, sync_seconds: float = 30.0, grace_seconds: float | None = None, echo=print
) -> JobResult:
    """Run `arc-kit run` as a child process group with a hard timeout; relay its output; every
    `sync_seconds` copy its submission.json over ours when valid. Never raises."""
    res = JobResult()
    try:
        if not s.test_file:
            res.problems.append("no test file: kept the fallback submission")
            return res
        minutes = s.job_minutes()
        if minutes < MIN_RUN_MINUTES:
            res.problems.append(f"only {minutes:.2f} min left for the job: kept the fallback submission")
            return res
        out = Path(s.output_dir)
        run_sub = out / "arc-kit-run" / "submission.json"
        final = out / "submission.json"
        # The child's own watchdog ends it at `minutes`; we kill at minutes + grace (half the safety margin,
        # at most 2 min) so a hung child cannot push the notebook past its limit.
        grace = grace_seconds if grace_seconds is not None else min(120.0, 30.0 * s.safety_minutes)
        deadline = time.time() + 60.0 * minutes + grace
        res.command = job_command(s, minutes)
        echo("$ " + " ".join(res.command))
        out.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(out / "arc-kit-run.log", "a", encoding="utf-8") as log:

            def relay(line: str) -> None:  # the job's output: to the log file and the notebook
                log.write(line + "\n")
                log.flush()
                echo(line)
                if line.startswith("error: "):  # e.g. a broken checkpoint: said again in the summary
                    res.problems.append(f"arc-kit run: {line}")

            def sync() -> None:
                res.syncs += _sync(run_sub, final, s.test_file)

            job = watch_child(
                "arc-kit run",
                res.command,
                deadline,
                env=env,
                poll=sync,
                poll_every=sync_seconds,
                log=lambda m: echo(f"WARNING: {m}"),
                output=relay,
            )
        res.started = job.status != "skipped"
        res.timed_out = job.status == "timeout"
        res.returncode = job.returncode
        res.minutes = job.seconds / 60.0
        sync()
        res.report = _copy_report(out / "arc-kit-run" / REPORT_HTML_FILE, out / REPORT_HTML_FILE)
    except Exception as e:
        res.problems.append(f"job failed to run: {type(e).__name__}: {e}")
    return res


def _sync(run_sub: Path, final: Path, test_file) -> int:
    """Copy the job's submission over ours when it is newer and valid; 1 when copied."""
    try:
        if not run_sub.is_file() or (final.is_file() and run_sub.stat().st_mtime <= final.stat().st_mtime):
            return 0
        if submission_problems(run_sub, test_file):
            return 0
        atomic_write_bytes(final, run_sub.read_bytes())
        return 1
    except Exception:
        return 0


def _copy_report(src: Path, dst: Path) -> str:
    """The job's report.html beside submission.json in the output folder (Kaggle's Output tab); its path or ""."""
    try:
        if not src.is_file():
            return ""
        atomic_write_bytes(dst, src.read_bytes())
        return str(dst)
    except OSError:
        return ""


def finish(s: NotebookSettings, fallback: dict, job: JobResult | None = None) -> dict:
    """Last word on submission.json: keep it if valid, else restore the fallback. Returns a summary."""
    final = Path(s.output_dir) / "submission.json"
    summary: dict[str, Any] = {
        "submission": str(final),
        "source": "fallback",
        "restored_fallback": False,
        "elapsed_minutes": round(s.elapsed_minutes(), 2),
        "limit_minutes": s.limit_minutes,
        "tasks": s.n_tasks,
        "problems": [],
    }
    try:
        problems = submission_problems(final, s.test_file) if s.test_file else ["no test file"]
        if problems and s.test_file:
            summary["problems"] = problems[:5]
            write_submission(final, fallback)
            summary["restored_fallback"] = True
        elif job is not None and job.syncs:
            summary["source"] = "arc-kit run"
        if s.test_file and not summary["restored_fallback"]:
            sub = read_submission(final)
            # An entry is the model's when some attempt is neither the test input nor [[0]]: the kit's
            # fallback ([input, [[0]]]) differs from the notebook's ([input, input]) yet answers nothing.
            summary["answered_by_model"] = sum(
                any(a.get(k) not in (fb["attempt_1"], ZEROS) for k in ATTEMPT_KEYS)
                for t in fallback
                for a, fb in zip(sub.get(t, []), fallback[t], strict=False)
            )
            summary["test_inputs"] = sum(len(v) for v in fallback.values())
    except Exception as e:
        summary["problems"].append(f"{type(e).__name__}: {e}")
    if job is not None:
        summary["job"] = {k: v for k, v in asdict(job).items() if k != "command"}
    summary["elapsed_minutes"] = round(s.elapsed_minutes(), 2)
    return summary


def format_summary(summary: dict) -> str:
    job: dict[str, Any] = summary.get("job") or {}
    lines = [
        f"submission.json: {summary['submission']} (from {summary['source']}"
        f"{', fallback restored' if summary['restored_fallback'] else ''})",
        f"answered by the model: {summary.get('answered_by_model', 0)} of {summary.get('test_inputs', '?')} "
        f"test inputs ({summary['tasks']} tasks); the rest keep fallback attempts",
        f"time: {summary['elapsed_minutes']:.1f} of {summary['limit_minutes']:g} min",
    ]
    if job:
        rc = job.get("returncode")
        # `arc-kit run` exits 0 when every stage finished and 4 when it wrote a valid submission although a
        # stage failed: both mean "submission written"; 4 is said loudly so the user looks at the log
        meanings: dict[int | None, str] = {  # rc is None when the job never started
            0: "every stage finished",
            4: "submission written, BUT A STAGE FAILED (see arc-kit-run.log)",
            2: "bad configuration or input (see arc-kit-run.log)",
        }
        meaning = meanings.get(rc, "")
        lines.append(
            f"job: started {job.get('started')}, exit {rc}{f' ({meaning})' if meaning else ''}, "
            f"timed out {job.get('timed_out')}, {job.get('minutes', 0):.1f} min"
        )
        if rc == 4:
            lines.insert(
                0,
                "!" * 72 + "\nWARNING: arc-kit run reported a failed stage; the submission is valid but "
                "may hold fewer model answers than planned\n" + "!" * 72,
            )
    if job.get("report"):
        lines.append(f"run explorer: {job['report']} (open it in a browser)")
    lines += [f"problem: {p}" for p in summary["problems"] + job.get("problems", [])]
    return "\n".join(lines)
