"""`arc-kit run` end to end on tiny tasks and a tiny TRM: budget, broken tasks, kills, resume, faults, revote."""

import json
import subprocess
import sys
import time

import pytest
from helpers import (
    BROKEN,
    ROOT,
    assert_valid_submission,
    kill_run_when,
    prediction_lines,
    run_cli,
    simple_task,
    tiny_config,
    write_task_dir,
)

pytestmark = pytest.mark.e2e  # every test here runs `arc-kit run` in a subprocess


def test_run_end_to_end_scores_and_revote_reproduces_it(tmp_path, tasks_dir):
    out = tmp_path / "run"
    res = run_cli(tiny_config(tasks_dir, **{"ttt.max_steps": 150}), out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "score:" in res.stdout
    for name in ("submission.json", "predictions.jsonl", "score.json", "report.md", "run.log", "state.json"):
        assert (out / name).is_file(), name
    assert_valid_submission(out, tasks_dir)
    state = json.loads((out / "state.json").read_text())["stages"]
    assert state["train"]["status"] == "done" and state["train"]["steps"] > 0
    assert state["infer"]["status"] == "done" and state["infer"]["written"] > 0
    report = (out / "report.md").read_text()
    for needle in ("kit version", "hash", "hardware", "threads", "## Stages", "## Score", "Best tasks"):
        assert needle in report, needle

    # score.json holds exactly what `arc-kit score --json` prints for the run's predictions under its voting
    # config, and its pass@2 is the submission's own score; coverage counts every candidate the model found
    def score_json(path, *extra):
        cmd = [sys.executable, "-m", "arc_kit.cli", "score", str(path), "--tasks", str(tasks_dir), "--json", *extra]
        return json.loads(subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout)

    run_score = json.loads((out / "score.json").read_text())
    assert score_json(out / "predictions.jsonl", "--vote", "reference") == run_score
    # report.html: one card per scored task, the loss curve; the redirected log has no progress-bar frames
    page = (out / "report.html").read_text()
    assert page.count('<section class="card" data-task=') == len(run_score["tasks"]) > 0
    assert 'id="loss-curve"' in page
    assert "\r" not in res.stderr
    sub_score = score_json(out / "submission.json")
    assert sub_score["tasks"] == run_score["tasks"] and sub_score["score_per_output"] == run_score["score_per_output"]
    assert sub_score["coverage"] is None and run_score["kind"] == "predictions"
    assert run_score["coverage"]["per_output"] >= run_score["score_per_output"]

    # `arc-kit revote` on the run's predictions reproduces the submission the run voted
    rv = subprocess.run(
        [
            sys.executable,
            "-m",
            "arc_kit.cli",
            "revote",
            str(out / "predictions.jsonl"),
            "--tasks",
            str(tasks_dir),
            "--configs",
            "reference",
            "--output",
            str(tmp_path / "rv"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert rv.returncode == 0, rv.stderr
    assert json.loads((tmp_path / "rv" / "reference" / "submission.json").read_text()) == json.loads(
        (out / "submission.json").read_text()
    )

    # same --out, same everything: resumes, keeps every prediction, runs nothing again
    before = prediction_lines(out)
    res = run_cli(tiny_config(tasks_dir, **{"ttt.max_steps": 150}), out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming" in res.stderr
    assert prediction_lines(out) == before
    # a different config in the same --out is refused clearly, unless --fresh
    res = run_cli(tiny_config(tasks_dir, **{"ttt.augmentations": 2}), out)
    assert res.returncode == 2 and "--fresh" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(tiny_config(tasks_dir, **{"ttt.augmentations": 2, "ttt.max_steps": 5}), out, "--fresh")
    assert res.returncode == 0, res.stderr[-3000:]


def test_one_minute_budget_ends_in_time_with_a_valid_submission(tmp_path, tasks_dir):
    # training could go on for 10^6 steps: only the budget stops it; inference is slowed down too
    cfg = tiny_config(
        tasks_dir,
        **{
            "ttt.max_steps": 1_000_000,
            "budget.total_minutes": 1.0,
            "budget.safety_margin_minutes": 0.1,
            "budget.startup_seconds": 8,  # a stage child's start-up (torch import, model load) on a slow 2-core CPU
            "inference.views": 4,
        },
    )
    res = run_cli(cfg, tmp_path / "run", env={"ARC_KIT_FAULT": "infer:sleep0.5"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert_valid_submission(tmp_path / "run", tasks_dir)
    # behaviour, not wall time: training stopped itself at its deadline (not at max_steps), and neither stage
    # had to be killed by the watchdog ("done", not "timeout")
    state = json.loads((tmp_path / "run" / "state.json").read_text())["stages"]
    assert state["train"]["status"] == state["infer"]["status"] == "done"
    assert state["train"]["stopped"] == "deadline_or_callback" and 0 < state["train"]["steps"] < 1_000_000


def test_broken_task_gets_fallback_attempts(tmp_path):
    tasks = {"good": simple_task(colour=2), "bad": BROKEN, "also_good": simple_task(colour=4)}
    tasks_dir = write_task_dir(tmp_path / "tasks", tasks)
    res = run_cli(tiny_config(tasks_dir, **{"ttt.max_steps": 10}), tmp_path / "run")
    assert res.returncode == 0, res.stderr[-3000:]
    sub = assert_valid_submission(tmp_path / "run", tasks_dir)
    assert sub["bad"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}] * 2
    assert {"good", "also_good"} <= set(sub)
    assert "bad" in res.stderr  # reported, never fatal


@pytest.mark.parametrize("fault", ["train", "train:nan", "train:hang", "infer", "infer_start:exit"])
def test_injected_fault_costs_only_its_stage(tmp_path, tasks_dir, fault):
    cfg = tiny_config(tasks_dir, **{"ttt.max_steps": 20, "budget.total_minutes": 0.75, "budget.stage_grace_seconds": 2})
    res = run_cli(cfg, tmp_path / "run", env={"ARC_KIT_FAULT": fault})
    # a valid submission, and the failure said: exit status 4, the stage and reason in the summary and report
    assert res.returncode == 4, res.stderr[-3000:]
    assert "FAILED" in res.stderr and "Traceback" not in res.stderr
    assert_valid_submission(tmp_path / "run", tasks_dir)
    state = json.loads((tmp_path / "run" / "state.json").read_text())["stages"]
    stage = fault.split(":")[0].removesuffix("_start")
    assert state[stage]["status"] in ("failed", "timeout"), state
    assert f"**Failed:** {stage} {state[stage]['status']}" in (tmp_path / "run" / "report.md").read_text()
    if stage == "infer":
        assert state["train"]["status"] == "done"


def test_run_killed_during_inference_resumes_without_losing_predictions(tmp_path, tasks_dir):
    out = tmp_path / "run"
    cfg = tiny_config(tasks_dir, **{"ttt.max_steps": 10, "inference.batch_size": 1})
    # slow inference (0.3 s per batch of one view) so that the kill lands in the middle of it
    kill_run_when(cfg, out, "infer:sleep0.3", lambda: len(prediction_lines(out)) >= 3)
    time.sleep(1.5)
    before = prediction_lines(out)
    empty = prediction_lines(out, "predictions_empty.jsonl")  # views that decoded to no grid are done too
    assert 3 <= len(before) < 20, len(before)
    time.sleep(1.0)
    assert prediction_lines(out) == before, "the inference child outlived the killed run"

    res = run_cli(cfg, out)
    assert res.returncode == 0, res.stderr[-3000:]
    after = prediction_lines(out)
    assert after[: len(before)] == before  # nothing finished was lost or rewritten
    keys = [(o["task_id"], o["test_index"], o["augmentation"]) for o in map(json.loads, after)]
    assert len(keys) == len(set(keys)), "a finished view was predicted again"
    state = json.loads((out / "state.json").read_text())["stages"]
    assert state["infer"]["already_done"] == len(before) + len(empty)
    assert state["train"]["status"] == "done"
    assert_valid_submission(out, tasks_dir)


def test_run_killed_during_training_resumes_from_its_latest_checkpoint(tmp_path, tasks_dir):
    out = tmp_path / "run"
    cfg = tiny_config(tasks_dir, **{"ttt.max_steps": 100_000, "ttt.checkpoint_minutes": 1e-4})  # save every 10 steps
    kill_run_when(
        cfg, out, "train:sleep0.02", lambda: (out / "ttt" / "model" / "optimizer.safetensors").is_file(), settle=0.5
    )
    assert not (out / "predictions.jsonl").is_file()
    res = run_cli(
        tiny_config(
            tasks_dir, **{"ttt.max_steps": 100_000, "ttt.checkpoint_minutes": 1e-4, "budget.total_minutes": 0.5}
        ),
        out,
    )  # the budget may change on resume
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed phase 'full' at step" in res.stderr
    step = int(res.stderr.split("resumed phase 'full' at step ")[1].split()[0])
    state = json.loads((out / "state.json").read_text())["stages"]
    assert step >= 10 and state["train"]["steps"] > step
    assert state["infer"]["written"] > 0
    assert_valid_submission(out, tasks_dir)
