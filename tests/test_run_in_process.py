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


def test_run_from_a_checkpoint_states_the_architecture_that_ran(tmp_path, tasks_dir, stages_in_process):
    """A checkpoint brings its own architecture: the config's model.arch values it overrides get one notice, the
    saved config.yaml and report.md state what ran, and model.halt_max_steps applies to the checkpoint's model.
    The run also draws with focus (ttt.train.focus) and says how many tasks were reproduced."""
    over = {"ttt.max_steps": 4, "ttt.augmentations": 1, "inference.views": 2, "model.checkpoint": "starter"}
    over |= {"model.halt_max_steps": 3, "ttt.train.focus": True, "ttt.train.focus_every": 2, "ttt.train.log_every": 1}
    config, out = tmp_path / "run.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(tiny_config(tasks_dir, **over)))  # its arch: the tiny TRM (hidden 16)
    assert main(["run", "--config", str(config), "--out", str(out)]) == 0
    notices = [x for x in (out / "run.log").read_text().splitlines() if "model.arch:" in x]
    assert len(notices) == 1 and "hidden_size=16" in notices[0] and "hidden_size=64" in notices[0], notices
    assert "halt_max_steps=2" in notices[0] and "model.halt_max_steps sets" in notices[0]
    # the config's task canvas gives way to the crop-trained starter's crops, said once
    canvas = [x for x in (out / "run.log").read_text().splitlines() if "model.canvas:" in x]
    assert len(canvas) == 1 and "task not used" in canvas[0] and "per-task crops" in canvas[0], canvas
    saved = yaml.safe_load((out / "config.yaml").read_text())["model"]["arch"]
    assert saved["hidden_size"] == 64 and saved["halt_max_steps"] == 3 and saved["L_layers"] == 2
    assert (
        "- model: TRM, hidden 64, 4 heads, 2 blocks, H_cycles 1 x L_cycles 2, 3 supervision step(s)"
        in (out / "report.md").read_text()
    )
    trained = yaml.safe_load((out / "ttt" / "model" / "config.yaml").read_text())["model"]
    assert trained["hidden_size"] == 64 and trained["halt_max_steps"] == 3  # what trained, not the starter's 1
    train = json.loads((out / "state.json").read_text())["stages"]["train"]
    assert train["steps"] == 4 and train["focus"]["tasks"] == 4 and 0 <= train["focus"]["reproduced"] <= 4


@pytest.mark.e2e
def test_run_without_a_step_cap_trains_until_its_deadline(tmp_path, tasks_dir, stages_in_process):
    cfg = tiny_config(tasks_dir, **{"ttt.max_steps": 0, "ttt.augmentations": 1, "inference.views": 2})
    cfg["budget"] |= {"total_minutes": 0.4, "train_share": 0.5}
    config, out = tmp_path / "run.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["run", "--config", str(config), "--out", str(out)]) == 0
    state = json.loads((out / "state.json").read_text())["stages"]
    plan = json.loads((out / "plan.json").read_text())
    assert state["train"]["stopped"] == "deadline_or_callback"
    assert state["train"]["steps"] >= 0.5 * plan["train_steps"] > 30  # far beyond tiny_config's cap of 30
    assert not any("limited by time" in n for n in plan["notes"])
