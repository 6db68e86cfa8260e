"""Predictions file: one JSON line per prediction of one augmented view, appended crash-safely and read back."""

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import first_line, open_read, path_exists
from arc_kit.data import Grid, grid_problem

# The fields every line has; anything else on a line is kept in Prediction.extra.
FIELDS = ("task_id", "test_index", "augmentation", "grid", "q_halt")


@dataclass
class Prediction:
    task_id: str
    test_index: int
    augmentation: str  # full augmentation name, "TASK|||t1|||0123456789", or plain "TASK" for the identity
    grid: Grid  # already mapped back to the ORIGINAL (un-augmented) frame
    q_halt: float  # halting logit of the model; sigmoid(q_halt) is its confidence
    extra: dict = field(default_factory=dict)  # optional fields (e.g. "step", "checkpoint"); "weight" scales the vote

    @property
    def weight(self) -> float:
        return float(self.extra.get("weight", 1.0))

    @property
    def snapshot(self) -> float:
        """The training fraction whose model made this prediction (inference.snapshots); 1.0 = the final model."""
        return float(self.extra.get("snapshot", 1.0))

    def to_json(self) -> dict:
        obj = {
            "task_id": self.task_id,
            "test_index": self.test_index,
            "augmentation": self.augmentation,
            "grid": self.grid,
            "q_halt": self.q_halt,
        }
        obj.update({k: v for k, v in self.extra.items() if k not in FIELDS})
        return obj


def parse_prediction(obj, where: str) -> Prediction:
    """One decoded JSON line -> Prediction; `where` ("file:line") prefixes every error."""
    if not isinstance(obj, dict):
        raise ArcKitError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in FIELDS if k not in obj]
    if missing:
        raise ArcKitError(f"{where}: task {obj.get('task_id', '?')}: missing field(s) {', '.join(missing)}")
    task_id, test_index, aug, grid, q = (obj[k] for k in FIELDS)
    if not isinstance(task_id, str) or not task_id:
        raise ArcKitError(f"{where}: task_id must be a non-empty string, got {task_id!r}")
    if type(test_index) is not int or test_index < 0:
        raise ArcKitError(f"{where}: task {task_id}: test_index must be an int >= 0, got {test_index!r}")
    if not isinstance(aug, str) or not aug:
        raise ArcKitError(f"{where}: task {task_id}: augmentation must be a non-empty string, got {aug!r}")
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not math.isfinite(q):
        raise ArcKitError(f"{where}: task {task_id}: q_halt must be a finite number, got {q!r}")
    problem = grid_problem(grid)
    if problem:
        raise ArcKitError(f"{where}: task {task_id}: test {test_index}: {problem}")
    extra = {k: v for k, v in obj.items() if k not in FIELDS}
    if "weight" in extra:
        w = extra["weight"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ArcKitError(f"{where}: task {task_id}: weight must be a finite number >= 0, got {w!r}")
    if "snapshot" in extra:
        s = extra["snapshot"]
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 1:
            raise ArcKitError(f"{where}: task {task_id}: snapshot must be a training fraction in (0, 1], got {s!r}")
    return Prediction(task_id, test_index, aug, grid, float(q), extra)


class PredictionWriter:
    """Append predictions to a JSONL file; every write() is flushed and fsynced, so a crash loses nothing written.

    Opening a file whose last line was cut off by a crash drops that partial line first, so appended
    lines never glue onto it.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_partial_last_line()
        # the writer owns the handle for its whole life (append after append); close()/__exit__ release it
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _drop_partial_last_line(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            # scan back for the last complete line (files are appended in small writes: blocks are enough)
            pos = size
            while pos > 0:
                step = min(65536, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    f.truncate(pos - step + nl + 1)
                    break
                pos -= step
            else:
                f.truncate(0)
            f.flush()
            os.fsync(f.fileno())

    def write(self, predictions: Iterable[Prediction]) -> int:
        lines = []
        for p in predictions:
            where = f"{self.path}: prediction"
            parse_prediction(p.to_json(), where)  # never write a line that could not be read back
            lines.append(json.dumps(p.to_json(), separators=(",", ":")) + "\n")
        if lines:
            self._f.write("".join(lines))
            self._f.flush()
            os.fsync(self._f.fileno())
        return len(lines)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_weighted_path(spec: str | Path) -> tuple[Path, float]:
    """`preds.jsonl:2.0` -> (Path("preds.jsonl"), 2.0); a plain path has weight 1.0."""
    s = str(spec)
    if path_exists(s) or ":" not in s:
        return Path(s), 1.0
    head, tail = s.rsplit(":", 1)
    try:
        w = float(tail)
    except ValueError:
        if head and path_exists(head):  # `a.jsonl:abc` names an existing file with a bad weight
            raise ArcKitError(f"{s}: weight {tail!r} is not a number (FILE:WEIGHT, e.g. {head}:2.0)") from None
        return Path(s), 1.0
    if not math.isfinite(w) or w < 0:
        raise ArcKitError(f"{s}: weight must be a finite number >= 0")
    return Path(head), w


def iter_predictions(paths, weights=None, problems: list[str] | None = None) -> Iterator[Prediction]:
    """Stream predictions from one or several files; file weights multiply each line's own "weight".

    A truncated last line (no final newline: a crash mid-write) is skipped and noted in `problems`;
    a malformed line anywhere else is an error naming the file and line number.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    weights = [1.0] * len(paths) if weights is None else list(weights)
    if len(weights) != len(paths):
        raise ArcKitError(f"{len(weights)} weights given for {len(paths)} predictions files")
    for path, fw in zip(paths, weights, strict=False):
        path = Path(path)
        with open_read(path, "predictions file") as f:
            line_no = 0
            for raw in f:
                line_no += 1
                if not raw.strip():
                    continue
                complete = raw.endswith(b"\n")
                where = f"{path}:{line_no}"
                try:
                    obj = json.loads(raw)
                except RecursionError:
                    raise ArcKitError(f"{where}: JSON nested too deeply to read") from None
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    if not complete:  # only the very last line can lack its newline
                        if problems is not None:
                            problems.append(f"{where}: truncated last line ignored (interrupted write)")
                        break
                    msg = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8"
                    raise ArcKitError(f"{where}: malformed JSON line: {msg}") from None
                p = parse_prediction(obj, where)
                if fw != 1.0:
                    p.extra["weight"] = p.weight * fw
                yield p


def read_predictions(path_or_paths, weights=None, problems: list[str] | None = None) -> list[Prediction]:
    """All predictions of one or several files (each line stays its own vote; weight in extra["weight"])."""
    return list(iter_predictions(path_or_paths, weights, problems))


class PredictionTail:
    """Follow a predictions file that a writer is appending to: each read() parses only the complete lines added
    since the last one (the run's periodic re-vote no longer re-parses the whole file every time)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.line_no = 0
        self.predictions: list[Prediction] = []

    def read(self) -> int:
        """Parse the new complete lines; returns how many predictions were added. A shrunk file starts over."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        if size < self.offset:  # replaced or truncated (a partial last line dropped by a new writer)
            self.offset, self.line_no, self.predictions = 0, 0, []
        if size == self.offset:
            return 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        end = data.rfind(b"\n") + 1  # complete lines only: a line being written is read next time
        n0 = len(self.predictions)
        for raw in data[:end].splitlines():
            self.line_no += 1
            if not raw.strip():
                continue
            where = f"{self.path}:{self.line_no}"
            try:
                obj = json.loads(raw)
            except RecursionError:
                raise ArcKitError(f"{where}: JSON nested too deeply to read") from None
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                msg = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8"
                raise ArcKitError(f"{where}: malformed JSON line: {msg}") from None
            self.predictions.append(parse_prediction(obj, where))
        self.offset += end
        return len(self.predictions) - n0


# A directory that predictions are appended to (a run's OUT, `arc-kit predict`'s OUT) holds these two files.
PREDICTIONS_FILE = "predictions.jsonl"
EMPTY_VIEWS_FILE = "predictions_empty.jsonl"  # views whose answer decoded to no grid: done, skipped on resume


def empty_views_file(snapshot: float = 1.0) -> str:
    """The empty-views sidecar of one training snapshot: the final model's is EMPTY_VIEWS_FILE (as before
    snapshots existed), an earlier snapshot's predictions_empty_<fraction>.jsonl."""
    return EMPTY_VIEWS_FILE if snapshot == 1.0 else f"predictions_empty_{snapshot:g}.jsonl"


def record_empty_views(path: str | Path, keys: Iterable[tuple[str, int, str]]) -> None:
    """Append (task, test_index, augmentation) keys of views that decoded to no grid, fsynced like predictions."""
    lines = [json.dumps({"task_id": t, "test_index": i, "augmentation": a}) + "\n" for t, i, a in keys]
    if not lines:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())


def done_view_keys(directory: str | Path, snapshot: float = 1.0) -> set[tuple[str, int, str]]:
    """(task, test_index, augmentation) of every view of training snapshot `snapshot` already predicted in
    `directory`: the lines of predictions.jsonl with that snapshot (a line without one is the final model's,
    1.0) and of the snapshot's empty-views sidecar. Reads only the key fields (fast on 400k lines)."""
    keys = set()
    for name in (PREDICTIONS_FILE, empty_views_file(snapshot)):
        path = Path(directory) / name
        if not path.exists():
            continue
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    break  # cut off by a crash: the writer drops it, the view runs again
                if not line.strip():
                    continue
                try:
                    o = json.loads(line)
                    if name == PREDICTIONS_FILE and float(o.get("snapshot", 1.0)) != snapshot:
                        continue
                    keys.add((o["task_id"], o["test_index"], o["augmentation"]))
                except (ValueError, KeyError, TypeError, RecursionError, AttributeError):
                    raise ArcKitError(
                        f"{path}:{n}: not a prediction line (task_id, test_index, augmentation)"
                    ) from None
    return keys


def is_predictions_file(path: Path) -> bool:
    """A .jsonl file, or a file whose first line is a JSON object with a task_id (a predictions line)."""
    if path.suffix == ".jsonl":
        return True
    try:
        obj = json.loads(first_line(path))
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and "task_id" in obj and "grid" in obj
