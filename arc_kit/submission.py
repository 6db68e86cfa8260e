"""Submission: build submission.json from votes (always complete, fallback-filled), validate, write atomically."""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_json, first_line, read_json
from arc_kit.data import Grid, Task, TaskSet, grid_problem

if TYPE_CHECKING:
    from arc_kit.vote import Candidate

ATTEMPT_KEYS = ("attempt_1", "attempt_2")
ZEROS: Grid = [[0]]


@dataclass
class FillReport:
    """What build_submission had to fill from the fallback instead of from votes."""

    n_tasks: int = 0
    n_test_inputs: int = 0
    n_attempts: int = 0
    n_voted: int = 0  # attempts that came from a voted candidate
    filled: list[str] = field(default_factory=list)  # "task X: test i: attempt_2 <- test input"
    invalid_tasks: list[str] = field(default_factory=list)  # tasks dropped as invalid: [[0]] everywhere
    unselected: int = 0  # tasks outside the selection: fallback attempts only

    def summary(self) -> str:
        s = (
            f"{self.n_tasks} tasks, {self.n_test_inputs} test inputs, {self.n_voted}/{self.n_attempts} "
            f"attempts from votes, {self.n_attempts - self.n_voted} from the fallback"
        )
        if self.invalid_tasks:
            s += f" ({len(self.invalid_tasks)} invalid task(s) got [[0]]: {', '.join(self.invalid_tasks[:5])}"
            s += ", ...)" if len(self.invalid_tasks) > 5 else ")"
        if self.unselected:
            s += f"; {self.unselected} task(s) outside the selection got fallback attempts"
        return s


def fallback_grids(test_input: Any, fallback: str) -> list[Grid]:
    """The grids that fill attempts no vote covers, in order (shared with scoring.score_votes)."""
    # "input": ARC outputs often resemble their input (same size, most cells kept), so the input is a
    # better blind guess than a constant; [[0]] comes next so the two attempts differ when possible.
    if fallback == "input" and test_input is not None and grid_problem(test_input) is None:
        return [test_input, ZEROS]
    return [ZEROS]


def _attempts(candidate_grids: list[Grid], test_input: Any, fallback: str, n: int = 2) -> tuple[list[Grid], int]:
    """First `n` attempts: ranked candidates, then fallback grids not used yet (the last one repeats)."""
    out = list(candidate_grids[:n])
    n_voted = len(out)
    for g in fallback_grids(test_input, fallback):
        if len(out) >= n:
            break
        if g not in out:
            out.append(g)
    while len(out) < n:
        out.append(out[-1] if out else ZEROS)
    return out, n_voted


def build_submission(
    votes: Mapping[str, Sequence[Sequence["Candidate | Grid"]]],
    task_set: TaskSet,
    fallback: str = "input",
    report: FillReport | None = None,
) -> dict[str, Any]:
    """votes (task -> per test input ranked Candidates, see vote.vote) -> a complete, valid submission dict.

    Every task of the task set gets one {"attempt_1", "attempt_2"} dict per test input, in order; tasks
    dropped as invalid (task_set.invalid) get [[0]] attempts; tasks outside the selection (task_set.unselected)
    get fallback attempts. Votes for unknown tasks are ignored.
    """
    report = report if report is not None else FillReport()
    sub = {}
    for tid, task in task_set.tasks.items():
        per_test = votes.get(tid) or []
        entries = []
        for i, pair in enumerate(task.test):
            ranked = per_test[i] if i < len(per_test) else []
            grids = [c.grid if hasattr(c, "grid") else c for c in ranked]
            attempts, n_voted = _attempts(grids, pair.input, fallback)
            for a in range(n_voted, 2):
                src = "test input" if attempts[a] is pair.input else "[[0]]"
                report.filled.append(f"task {tid}: test {i}: {ATTEMPT_KEYS[a]} <- {src}")
            report.n_voted += n_voted
            report.n_attempts += 2
            entries.append(dict(zip(ATTEMPT_KEYS, attempts, strict=False)))
        sub[tid] = entries
        report.n_tasks += 1
        report.n_test_inputs += len(entries)
    for tid, n in (getattr(task_set, "invalid", None) or {}).items():
        if tid in sub:
            continue
        # an invalid task's inputs may be broken themselves: never echo them
        sub[tid] = [{k: [[0]] for k in ATTEMPT_KEYS} for _ in range(max(1, int(n)))]
        report.invalid_tasks.append(tid)
        report.n_tasks += 1
        report.n_test_inputs += len(sub[tid])
        report.n_attempts += 2 * len(sub[tid])
    for tid, inputs in (getattr(task_set, "unselected", None) or {}).items():
        if tid in sub:
            continue
        sub[tid] = [dict(zip(ATTEMPT_KEYS, _attempts([], inp, fallback)[0], strict=True)) for inp in inputs or [None]]
        report.unselected += 1
        report.n_tasks += 1
        report.n_test_inputs += len(sub[tid])
        report.n_attempts += 2 * len(sub[tid])
    return sub


def fallback_submission(task_set: TaskSet, fallback: str = "input") -> dict[str, Any]:
    """A valid submission without any prediction (what a run writes before its model has produced anything)."""
    return build_submission({}, task_set, fallback)


def write_submission(path: str | Path, submission: dict[str, Any]) -> None:
    """Atomic write: readers (and Kaggle) see the old file or the new one, never half of one."""
    atomic_write_json(path, submission)


def read_submission(path: str | Path) -> dict[str, Any]:
    obj = read_json(path, "submission file")
    if not isinstance(obj, dict):
        raise ArcKitError(
            f"{path}: a submission must be a JSON object mapping task ids to lists, got {type(obj).__name__}"
        )
    return obj


def expected_test_counts(task_set: TaskSet) -> dict[str, int]:
    """task id -> number of test inputs: valid tasks, then invalid ones, then those outside the selection."""
    counts = {tid: len(t.test) for tid, t in task_set.tasks.items()}
    for tid, n in (getattr(task_set, "invalid", None) or {}).items():
        counts.setdefault(tid, max(1, int(n)))
    for tid, inputs in (getattr(task_set, "unselected", None) or {}).items():
        counts.setdefault(tid, max(1, len(inputs)))
    return counts


def validate_submission(sub: object, task_set: TaskSet) -> list[str]:
    """Every problem of `sub` against the tasks, one line each (empty list: valid for Kaggle)."""
    if not isinstance(sub, dict):
        return [f"submission must be a JSON object mapping task ids to lists, got {type(sub).__name__}"]
    problems = []
    expected = expected_test_counts(task_set)
    for tid, n in expected.items():
        if tid not in sub:
            problems.append(f"task {tid}: missing (expected {n} test input(s))")
            continue
        entries = sub[tid]
        if not isinstance(entries, list):
            problems.append(f"task {tid}: expected a list of {n} attempt dict(s), got {type(entries).__name__}")
            continue
        if len(entries) != n:
            problems.append(f"task {tid}: {len(entries)} entries, expected {n} (one per test input)")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                problems.append(
                    f"task {tid}: test {i}: expected a dict with attempt_1 and attempt_2, got {type(entry).__name__}"
                )
                continue
            for k in ATTEMPT_KEYS:
                if k not in entry:
                    problems.append(f"task {tid}: test {i}: missing {k}")
                    continue
                why = grid_problem(entry[k])
                if why:
                    problems.append(f"task {tid}: test {i}: {k}: {why}")
            for k in entry:
                if k not in ATTEMPT_KEYS:
                    problems.append(f"task {tid}: test {i}: unexpected key {k!r} (only attempt_1, attempt_2)")
    for tid in sub:
        if tid not in expected:
            problems.append(f"task {tid}: not in the tasks (unknown task id)")
    return problems


def is_submission_file(path: Path) -> bool:
    """A JSON object of task id -> list of attempt dicts (a submission.json), judged by its first entry."""
    first = first_line(path).lstrip()
    if not first.startswith(b"{"):
        return False
    try:
        obj = json.loads(first)
    except (ValueError, RecursionError):  # an indented file: the opening line alone is no JSON; read the whole file
        if first.strip() != b"{":
            return False
        try:
            obj = read_json(path, "file")
        except ArcKitError:
            return False
    if not isinstance(obj, dict) or not obj or "task_id" in obj:
        return False
    value = next(iter(obj.values()))
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "attempt_1" in value[0]


def submission_attempts(path: str | Path, task: Task) -> list[list[Any]]:
    """The attempts for `task` in a Kaggle submission.json: one list [attempt_1, attempt_2] per test input."""
    sub = read_submission(path)
    if task.id not in sub:
        raise ArcKitError(f"{path}: task {task.id}: not in the submission")
    entries = sub[task.id]
    if not isinstance(entries, list):
        raise ArcKitError(f"{path}: task {task.id}: expected a list with one entry per test input")
    attempts = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ArcKitError(f"{path}: task {task.id}: entry {i} is not an object with attempt_1 and attempt_2")
        keys = sorted((k for k in e if k.startswith("attempt_")), key=lambda k: (len(k), k))
        attempts.append([e[k] for k in keys])
    return attempts
