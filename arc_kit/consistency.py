"""Consistency scoring: the log-probability of every candidate grid under every augmented view's final logits."""

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from arc_kit.augment import split_name
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import open_read
from arc_kit.data import Grid, Task
from arc_kit.encoding import PAD
from arc_kit.infer import View, encode_view_output, encode_views, make_batches
from arc_kit.predictions import Prediction, PredictionWriter, parse_weighted_path
from arc_kit.vote import CONSISTENCY_STRATEGIES, Tally, add_consistency, candidate_hash

CONSISTENCY_FILE = "consistency.jsonl"  # in the run directory, beside predictions.jsonl

# One line per scored view: {"task_id", "test_index", "augmentation", "snapshot", "scores": {hash: [logp, cells]}}.
# logp is the sum of log-probabilities of the candidate's label tokens (colour cells + EOS border inside the
# canvas) under the view's final-step logits; null when the candidate does not fit the view's canvas (-inf).
# A view scored again for candidates found later gets another line; readers merge them.
Scores = dict[str, tuple[float | None, int]]


def consistency_wanted(cfg) -> bool:
    """Whether a run computes consistency scores: `inference.consistency`, or a voting config that ranks by them."""
    from arc_kit.vote import load_vote_config

    return bool(cfg.inference.consistency) or load_vote_config(cfg.voting).strategy in CONSISTENCY_STRATEGIES


def score_view(logp: np.ndarray, view: View, grids: dict[str, Grid]) -> Scores:
    """Scores of `grids` (candidate hash -> grid in the ORIGINAL frame) under one view: log-probabilities
    logp [L, V] (log_stablemax of the view's final-step logits). Each grid is mapped into the view's frame by
    the view's augmentation and laid out as its input is; PAD cells (the corner, the rest of the canvas) are
    never trained and not scored."""
    aug = split_name(view.name)[1]
    out: Scores = {}
    for h, grid in grids.items():
        labels = encode_view_output(view, aug.apply_array(np.asarray(grid, dtype=np.uint8)))
        if labels is None:
            out[h] = (None, 0)
            continue
        idx = np.flatnonzero(labels != PAD)
        out[h] = (float(logp[idx, labels[idx].astype(np.int64)].sum()), int(idx.size))
    return out


def log_stablemax(x: np.ndarray) -> np.ndarray:
    """log of the stablemax distribution over the last axis, in float64: the formula of the training loss
    (model.loss.log_stablemax; a core module cannot import the model layer). s(x) = x + 1 for x >= 0, 1 / (1 - x)
    for x < 0."""
    x = np.asarray(x, dtype=np.float64)
    s = np.where(x < 0, 1.0 / (1.0 - np.minimum(x, 0.0) + 1e-30), x + 1.0)
    return np.log(s / s.sum(axis=-1, keepdims=True))


def view_log_probs(model, batch: dict[str, np.ndarray], device="cpu", autocast=None, early_halt: bool = False):
    """log_stablemax (float64, as the training loss) of the final-step logits of one batch: [B, L, V] numpy.
    The same steps as inference (`early_halt`: each view's logits from the step it halted at)."""
    import contextlib

    import torch

    if not hasattr(model, "predict"):
        raise ArcKitError("consistency scoring needs a TRM (a model with predict)")
    tb = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
    ctx = torch.autocast("cuda", dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        logits = model.predict(tb, early_halt=early_halt, return_logits=True)["logits"]
    return log_stablemax(logits.float().cpu().numpy())


def candidates_by_input(predictions: Iterable[Prediction]) -> dict[tuple[str, int], dict[str, Grid]]:
    """(task_id, test_index) -> {candidate hash: grid}: every distinct grid any view (any snapshot) predicted."""
    out: dict[tuple[str, int], dict[str, Grid]] = {}
    for p in predictions:
        out.setdefault((p.task_id, p.test_index), {}).setdefault(candidate_hash(p.grid), p.grid)
    return out


def _check_record(obj, where: str) -> dict:
    if not isinstance(obj, dict):
        raise ArcKitError(f"{where}: expected a JSON object")
    for k, t in (("task_id", str), ("test_index", int), ("augmentation", str), ("scores", dict)):
        if not isinstance(obj.get(k), t) or isinstance(obj.get(k), bool):
            raise ArcKitError(f"{where}: field {k!r} missing or not a {t.__name__}")
    snap = obj.get("snapshot", 1.0)
    if isinstance(snap, bool) or not isinstance(snap, (int, float)) or not 0 < snap <= 1:
        raise ArcKitError(f"{where}: snapshot must be a training fraction in (0, 1], got {snap!r}")
    for h, v in obj["scores"].items():
        ok = isinstance(v, list) and len(v) == 2 and type(v[1]) is int and v[1] >= 0
        ok = ok and (v[0] is None or (isinstance(v[0], (int, float)) and not isinstance(v[0], bool) and v[0] <= 0))
        if not ok:
            raise ArcKitError(f"{where}: scores[{h!r}] must be [log-probability <= 0 or null, cells >= 0]")
    return obj


def read_consistency(paths: str | Path | Iterable[str | Path], problems: list[str] | None = None) -> list[dict]:
    """Every record of one or several consistency.jsonl files, checked. A truncated last line (a crash mid-write)
    is skipped and noted in `problems`; a malformed line elsewhere is an error naming file and line."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    records = []
    for path in paths:
        with open_read(Path(path), "consistency file") as f:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                where = f"{path}:{n}"
                try:
                    obj = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                    if not raw.endswith(b"\n"):
                        if problems is not None:
                            problems.append(f"{where}: truncated last line ignored (interrupted write)")
                        break
                    raise ArcKitError(f"{where}: malformed JSON line") from None
                records.append(_check_record(obj, where))
    return records


def scored_keys(records: Iterable[dict]) -> set[tuple[str, int, float, str, str]]:
    """(task_id, test_index, snapshot, view name, candidate hash) of every stored score (resume skips them)."""
    return {
        (r["task_id"], r["test_index"], float(r.get("snapshot", 1.0)), r["augmentation"], h)
        for r in records
        for h in r["scores"]
    }


class ConsistencyWriter(PredictionWriter):
    """Append consistency records, flushed and fsynced per batch (a partial last line is dropped on open)."""

    def write(self, records) -> int:
        lines = [json.dumps(r, separators=(",", ":")) + "\n" for r in records]
        if lines:
            self._f.write("".join(lines))
            self._f.flush()
            os.fsync(self._f.fileno())
        return len(lines)


def score_views(
    model,
    views: list[View],
    tasks: dict[str, Task],
    candidates: dict[tuple[str, int], dict[str, Grid]],
    out_path: str | Path,
    *,
    snapshot: float = 1.0,
    done: set | None = None,
    batch_size: int = 256,
    device="cpu",
    autocast=None,
    early_halt: bool = False,
    deadline: float | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Score every candidate of each view's test input under that view, skipping the (view, candidate) pairs in
    `done` (scored_keys); one extra inference pass over the views that have anything left to score, whatever
    the number of candidates. Records are appended to `out_path` batch by batch. `deadline` (epoch seconds):
    no batch starts that would likely end after it. Returns counts: views scored, scores written, views left."""
    done = done or set()
    todo: list[tuple[View, dict[str, Grid]]] = []
    for v in views:
        grids = candidates.get((v.task_id, v.test_index), {})
        need = {h: g for h, g in grids.items() if (v.task_id, v.test_index, snapshot, v.name, h) not in done}
        if need:
            todo.append((v, need))
    need_of = {v.key: g for v, g in todo}
    stats = {"views": 0, "scores": 0, "views_left": 0, "seconds": 0.0}
    t0, last = time.time(), 0.0
    batches = make_batches([v for v, _ in todo], batch_size)
    with ConsistencyWriter(out_path) as writer:
        for i, batch in enumerate(batches):
            if deadline is not None and time.time() + 1.2 * last > deadline:
                stats["views_left"] = sum(len(b) for b in batches[i:])
                log(f"consistency: deadline: {stats['views_left']} view(s) left unscored")
                break
            tb = time.time()
            logp = view_log_probs(model, encode_views(batch, tasks), device, autocast, early_halt)
            records = []
            for b, v in enumerate(batch):
                scores = score_view(logp[b], v, need_of[v.key])
                rec = {"task_id": v.task_id, "test_index": v.test_index, "augmentation": v.name}
                rec.update(snapshot=snapshot, scores={h: [s, n] for h, (s, n) in scores.items()})
                records.append(rec)
                stats["scores"] += len(scores)
            writer.write(records)
            stats["views"] += len(batch)
            last = time.time() - tb
    stats["seconds"] = round(time.time() - t0, 3)
    return stats


def attach_consistency(t: Tally, specs: list[str], given: list[str] | None, needed: bool, notes: list[str]) -> None:
    """Merge consistency scores into tally `t`: the --consistency files, else (when a voting config ranks by them)
    the consistency.jsonl beside each predictions file (a run directory), else a note."""
    paths = [Path(p) for p in given or []]
    if not paths and needed:
        beside = {parse_weighted_path(s)[0].parent / CONSISTENCY_FILE for s in specs}
        paths = sorted(p for p in beside if p.is_file())
        if not paths:
            notes.append(
                f"no consistency scores ({CONSISTENCY_FILE} beside the predictions, or --consistency FILE): "
                "the consistency strategies rank by votes alone"
            )
    if paths:
        add_consistency(t, read_consistency(paths, notes))
