"""`arc-kit run` in one process (the fast tier's run): supervisor, train and infer stages, report, score, revote."""

import json
import time

import pytest
import yaml
from helpers import assert_valid_submission, tiny_config

import arc_kit.run.pipeline as pipeline
from arc_kit.cli.main import main
from arc_kit.run import stages
from arc_kit.run.watchdog import StageResult


@pytest.fixture
def stages_in_process(monkeypatch):
    """The supervisor's stage children run as calls of `arc_kit.run.stages.main` in this process (the e2e tests
    in test_pipeline.py run them as real processes under the watchdog). Returns the stages run, in order."""
    ran: list[str] = []

    def watch_child(name, cmd, deadline, *, poll=None, **_):
        t0 = time.time()
        argv = cmd[cmd.index("arc_kit.run.stages") + 1 :]
        ran.append(argv[0])
        rc = stages.main(argv)
        if poll is not None:
            poll()  # the supervisor's re-vote while a stage works
        return StageResult(name, "done" if rc == 0 else "failed", time.time() - t0, rc, "")

    monkeypatch.setattr(pipeline, "watch_child", watch_child)
    monkeypatch.setattr(stages, "watch_parent", lambda: None)  # no watcher thread in the test process
    return ran


def test_run_trains_predicts_votes_reports_and_resumes(tmp_path, tasks_dir, stages_in_process, capsys):
    cfg = tiny_config(tasks_dir, **{"ttt.max_steps": 4, "ttt.augmentations": 2, "inference.views": 2})
    config, out = tmp_path / "run.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["run", "--config", str(config), "--out", str(out)]) == 0
    assert stages_in_process == ["train", "infer"]
    for name in ("submission.json", "predictions.jsonl", "score.json", "report.md", "run.log", "state.json"):
        assert (out / name).is_file(), name
    assert_valid_submission(out, tasks_dir)
    state = json.loads((out / "state.json").read_text())["stages"]
    assert state["train"]["status"] == "done" and state["train"]["steps"] == 4
    assert state["infer"]["status"] == "done" and state["infer"]["written"] > 0
    report = (out / "report.md").read_text()
    for needle in ("kit version", "## Stages", "## Score"):
        assert needle in report, needle
    assert "score:" in capsys.readouterr().out

    # score.json is what `arc-kit score --json` says of the run's predictions under its voting config
    assert (
        main(["score", str(out / "predictions.jsonl"), "--tasks", str(tasks_dir), "--json", "--vote", "reference"]) == 0
    )
    assert json.loads(capsys.readouterr().out) == json.loads((out / "score.json").read_text())
    # `arc-kit revote` reproduces the submission the run voted
    rv = ["revote", str(out / "predictions.jsonl"), "--tasks", str(tasks_dir), "--configs", "reference"]
    assert main([*rv, "--output", str(tmp_path / "rv")]) == 0
    voted = json.loads((tmp_path / "rv" / "reference" / "submission.json").read_text())
    assert voted == json.loads((out / "submission.json").read_text())

    # the same run again resumes: no stage runs, every prediction is kept
    before = (out / "predictions.jsonl").read_text()
    assert main(["run", "--config", str(config), "--out", str(out)]) == 0
    assert stages_in_process == ["train", "infer", "infer"]  # train kept; infer finds every view done
    assert (out / "predictions.jsonl").read_text() == before
