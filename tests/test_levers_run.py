"""`arc-kit run` with consistency voting and with snapshot pooling: stored scores, revote byte for byte, resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, assert_valid_submission, prediction_lines, run_cli, tiny_config

pytestmark = pytest.mark.e2e  # every test here runs `arc-kit run` in a subprocess


def revote_submission(tmp_path: Path, out: Path, tasks: Path, config: str) -> bytes:
    """`arc-kit revote OUT/predictions.jsonl --configs CONFIG -o DIR` (consistency.jsonl picked up beside it)."""
    rv = tmp_path / f"rv-{config}"
    cmd = [sys.executable, "-m", "arc_kit.cli", "revote", str(out / "predictions.jsonl"), "--tasks", str(tasks)]
    res = subprocess.run([*cmd, "--configs", config, "-o", str(rv)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return (rv / config / "submission.json").read_bytes()


@pytest.mark.parametrize("canvas", ["task", "crop"])
def test_consistency_run_stores_scores_revotes_exactly_and_resumes_without_work(tmp_path, tasks_dir, canvas):
    out = tmp_path / "run"
    layout = {"model.canvas": canvas} | ({"model.arch.positions": "coords"} if canvas == "crop" else {})
    cfg = tiny_config(tasks_dir, voting="consistency", **{"ttt.max_steps": 60}, **layout)
    res = run_cli(cfg, out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_valid_submission(out, tasks_dir)
    preds = [json.loads(x) for x in prediction_lines(out)]
    scores = [json.loads(x) for x in prediction_lines(out, "consistency.jsonl")]
    assert preds and scores
    # every view that answered scored every candidate of its test input
    cands: dict = {}
    for p in preds:
        cands.setdefault((p["task_id"], p["test_index"]), set()).add(json.dumps(p["grid"]))
    scored: dict = {}
    for r in scores:
        scored.setdefault((r["task_id"], r["test_index"], r["augmentation"]), set()).update(r["scores"])
    for p in preds:
        assert len(scored[(p["task_id"], p["test_index"], p["augmentation"])]) == len(
            cands[(p["task_id"], p["test_index"])]
        )
    state = json.loads((out / "state.json").read_text())["stages"]["infer"]
    assert state["consistency"]["scores"] == sum(len(r["scores"]) for r in scores)

    assert revote_submission(tmp_path, out, tasks_dir, "consistency") == (out / "submission.json").read_bytes()

    before, before_scores = prediction_lines(out), prediction_lines(out, "consistency.jsonl")
    res = run_cli(cfg, out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming" in res.stderr and "consistency: 0 scores of 0 views" in res.stderr
    assert prediction_lines(out) == before and prediction_lines(out, "consistency.jsonl") == before_scores


def test_snapshot_run_pools_both_snapshots_revotes_exactly_and_resumes_without_work(tmp_path, tasks_dir):
    out = tmp_path / "run"
    cfg = tiny_config(tasks_dir, **{"ttt.max_steps": 60, "inference.snapshots": [0.5, 1.0]})
    res = run_cli(cfg, out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_valid_submission(out, tasks_dir)
    assert (out / "ttt" / "snapshots" / "0.5" / "model.safetensors").is_file()
    assert "snapshot 0.5 saved at step 30" in (out / "run.log").read_text()
    preds = [json.loads(x) for x in prediction_lines(out)]
    early = [p for p in preds if p.get("snapshot") == 0.5]
    final = [p for p in preds if "snapshot" not in p]
    assert early and final and len(early) + len(final) == len(preds)
    # the same views under both snapshots (answers or empty), each snapshot its own identity
    empty = {n: len(prediction_lines(out, n)) for n in ("predictions_empty.jsonl", "predictions_empty_0.5.jsonl")}
    assert len(early) + empty["predictions_empty_0.5.jsonl"] == len(final) + empty["predictions_empty.jsonl"]
    state = json.loads((out / "state.json").read_text())["stages"]["infer"]
    assert set(state["snapshots"]) == {"0.5", "1"}
    plan = json.loads((out / "plan.json").read_text())
    assert plan["infer_seconds"] >= cfg["budget"]["startup_seconds"]

    # the run voted both snapshots together: the same as re-voting the whole file offline
    assert revote_submission(tmp_path, out, tasks_dir, "reference") == (out / "submission.json").read_bytes()

    before = prediction_lines(out)
    res = run_cli(cfg, out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming" in res.stderr and "snapshot 0.5: 0 views to run" in res.stderr
    assert prediction_lines(out) == before
