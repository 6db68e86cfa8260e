"""Full-protocol prediction on a synthetic reference-format checkpoint whose table is the mini build's identifiers."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import MINI, REF

import arc_kit.run.predict as predict_mod
from arc_kit.augment import Augmentation
from arc_kit.cli.main import main
from arc_kit.data import load_tasks
from arc_kit.encoding import encode_grid
from arc_kit.identifiers import task_puzzles
from arc_kit.predictions import read_predictions
from arc_kit.run.predict import PredictConfig, predict, subsample

NAMES = json.loads((MINI / "identifiers.json").read_text())  # 21 rows: <blank> + 5 tasks x 4 puzzles
EVAL = MINI / "source" / "arc-agi_evaluation_challenges.json"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """The small reference checkpoint (trm-reference/step_0 layout) with a 21-row table, imported with
    `arc-kit import-trm`. Row r of the table holds r in column 0, so a looked-up row names itself."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ckpt")
    sd = torch.load(REF / "step_0", map_location="cpu", weights_only=True)
    key = "_orig_mod.model.inner.puzzle_emb.weights"
    g = torch.Generator().manual_seed(0)
    table = torch.randn(len(NAMES), sd[key].shape[1], generator=g) * 0.1
    table[:, 0] = torch.arange(len(NAMES), dtype=torch.float32)
    sd[key] = table
    (root / "ref").mkdir()
    torch.save(sd, root / "ref" / "step_0")
    shutil.copy(REF / "all_config.yaml", root / "ref" / "all_config.yaml")
    out = root / "model"
    rc = main(
        [
            "import-trm",
            str(root / "ref" / "step_0"),
            "--config",
            str(root / "ref" / "all_config.yaml"),
            "--identifiers",
            str(MINI / "identifiers.json"),
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    assert json.loads((out / "puzzles.json").read_text()) == NAMES
    return out


def _instrument(monkeypatch, fake_identity: bool = False, fake_blank: bool = False) -> tuple[list, list]:
    """Wrap load_model: every forward records (global rows looked up, input tokens). With fake_identity the
    'model' answers its input tokens unchanged, so the right inverse must give back the original test input."""
    calls, options = [], []
    real_load = predict_mod.load_model

    def load(model_dir, rows, device, dtype):
        model, info = real_load(model_dir, rows, device, dtype)
        real_predict = model.predict

        def recorded(batch, **kw):
            local = batch["puzzle_identifiers"].long()
            global_rows = model.puzzle_emb.weights[local, 0].round().long().tolist()  # column 0 holds the row
            calls.append((global_rows, batch["inputs"].cpu().numpy().copy()))
            options.append(kw)
            if not (fake_identity or fake_blank):
                return real_predict(batch, **kw)
            B, S = local.shape[0], model.config.halt_max_steps
            preds = torch.zeros_like(batch["inputs"]).long() if fake_blank else batch["inputs"].long()
            return {
                "preds": preds,
                "q_halt": torch.zeros(B),
                "q_continue": torch.zeros(B),
                "steps_run": (torch.tensor(global_rows) % S + 1) if kw.get("early_halt") else torch.full((B,), S),
            }

        model.predict = recorded
        return model, info

    monkeypatch.setattr(predict_mod, "load_model", load)
    return calls, options


def _rows_of(task_id: str) -> set[int]:
    return {r for r, n in enumerate(NAMES) if n.split("|||")[0] == task_id}


def test_task_views_identity_first_and_subsample():
    names = ["<blank>", "a|||t1|||0123456789", "b", "a", "a|||t4|||0987654321", "ab"]
    views = task_puzzles(names, ["a", "b", "zz"])
    assert views == {"a": [(3, "a"), (1, "a|||t1|||0123456789"), (4, "a|||t4|||0987654321")], "b": [(2, "b")]}
    assert subsample(views["a"], 2) == [(3, "a"), (1, "a|||t1|||0123456789")]
    assert subsample(views["a"], None) == views["a"]


def _check_rows_and_inputs(calls, tasks):
    """Every sequence ran with a row of its own task, under that row's augmentation of its test input, and
    each test input ran with exactly the rows of its own task's puzzles. Returns {(task, test): [rows]}."""
    seen = {}
    for rows, inputs in calls:
        for r, x in zip(rows, inputs, strict=False):
            task_id = NAMES[r].split("|||")[0] if r else None
            task = tasks.tasks.get(task_id)
            matches = (
                [
                    i
                    for i, p in enumerate(task.test)
                    if np.array_equal(x, encode_grid(Augmentation.from_name(NAMES[r]).apply(p.input)))
                ]
                if task
                else []
            )
            assert matches, f"row {r} ({NAMES[r]}) ran on an input that is not its augmented test input"
            seen.setdefault((task_id, matches[0]), []).append(r)
    for (task_id, i), rows in seen.items():
        assert sorted(rows) == sorted(_rows_of(task_id)), (task_id, i)
    return seen


@pytest.mark.e2e
def test_real_model_end_to_end_and_resume(model_dir, tmp_path, monkeypatch):
    calls, _ = _instrument(monkeypatch)
    tasks = load_tasks(EVAL, ids=["00576224"])
    out = tmp_path / "out"
    s = predict(model_dir, tasks, out, PredictConfig(batch_size=3, device="cpu", progress=False))
    assert s["views"] == 4 and s["ran"] == 4 and s["rows_loaded"] == 4  # only this task's rows are loaded
    assert s["mean_steps"] == 4
    assert len(calls) == 2
    assert set(_check_rows_and_inputs(calls, tasks)) == {("00576224", 0)}
    preds = read_predictions(out / "predictions.jsonl")
    assert len(preds) + s["empty"] == 4
    for p in preds:
        assert NAMES[p.extra["row"]] == p.augmentation and p.augmentation.split("|||")[0] == p.task_id
        assert p.extra["step"] == 4  # all halt_max_steps steps (eval mode)

    # Resume: nothing left to run, nothing appended.
    calls.clear()
    s2 = predict(model_dir, tasks, out, PredictConfig(batch_size=3, device="cpu", progress=False))
    assert s2["ran"] == 0 and s2["skipped_done"] == 4 and calls == []
    assert len(read_predictions(out / "predictions.jsonl")) == len(preds)


def test_each_view_uses_its_tasks_rows_and_its_own_inverse(model_dir, tmp_path, monkeypatch):
    calls, _ = _instrument(monkeypatch, fake_identity=True)
    # all 5 mini tasks (training + evaluation) in one challenges file, plus one the checkpoint does not know
    src = {}
    for name in ("training", "evaluation"):
        src.update(json.loads((MINI / "source" / f"arc-agi_{name}_challenges.json").read_text()))
    src["unknown1"] = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}], "test": [{"input": [[3, 4], [5, 6]]}]}
    path = tmp_path / "all_challenges.json"
    path.write_text(json.dumps(src))
    tasks = load_tasks(path)
    out = tmp_path / "out"
    s = predict(model_dir, tasks, out, PredictConfig(batch_size=7, device="cpu", progress=False))
    assert s["views"] == 5 * 4 + 1 and s["written"] == 21 and s["unknown_tasks"] == 1 and s["rows_loaded"] == 20
    assert any(len({NAMES[r].split("|||")[0] for r in rows}) > 1 for rows, _ in calls)  # batched across tasks
    known = [(rows, x) for rows, x in calls]
    seen = _check_rows_and_inputs(
        [([r for r in rows if r], x[[i for i, r in enumerate(rows) if r]]) for rows, x in known], tasks
    )
    assert set(seen) == {(t, 0) for t in tasks.tasks if t != "unknown1"}
    preds = read_predictions(out / "predictions.jsonl")
    for p in preds:
        # identity model: un-augmenting its answer must give back the original test input exactly
        assert p.grid == tasks.tasks[p.task_id].test[p.test_index].input, p.augmentation
        assert NAMES[p.extra["row"]] == p.augmentation if p.task_id != "unknown1" else p.extra["row"] == 0
    got = {}
    for p in preds:
        got.setdefault(p.task_id, set()).add(p.augmentation)
    assert got == {t: ({NAMES[r] for r in _rows_of(t)} if t != "unknown1" else {"unknown1"}) for t in tasks.tasks}
    # the inverse is not trivially the identity: most views really transformed the input
    assert sum(not Augmentation.from_name(p.augmentation).is_identity for p in preds) == 15


def test_views_subsample_is_deterministic_identity_first(model_dir, tmp_path, monkeypatch):
    _instrument(monkeypatch, fake_identity=True)
    tasks = load_tasks(EVAL)
    out = tmp_path / "out"
    s = predict(model_dir, tasks, out, PredictConfig(views=2, batch_size=8, device="cpu", progress=False))
    assert s["ran"] == 4 and s["rows_loaded"] == 4
    by_task = {}
    for p in read_predictions(out / "predictions.jsonl"):
        by_task.setdefault(p.task_id, []).append(p.augmentation)
    for t, augs in by_task.items():
        rows = sorted(_rows_of(t))
        assert augs == [NAMES[rows[0]], NAMES[rows[1]]] and augs[0] == t
    # growing --views later runs only the new views
    s2 = predict(model_dir, tasks, out, PredictConfig(views=3, batch_size=8, device="cpu", progress=False))
    assert s2["ran"] == 2 and s2["skipped_done"] == 4
    # a crash in the middle of a write leaves half a line: the resume drops it and runs that view again
    path = out / "predictions.jsonl"
    path.write_bytes(path.read_bytes()[:-25])
    s3 = predict(model_dir, tasks, out, PredictConfig(views=3, batch_size=8, device="cpu", progress=False))
    assert s3["ran"] == 1 and s3["skipped_done"] == 5
    keys = [(p.task_id, p.test_index, p.augmentation) for p in read_predictions(path)]
    assert len(keys) == len(set(keys)) == 6


def test_early_halt_reaches_the_model_and_steps_are_recorded(model_dir, tmp_path, monkeypatch):
    _, options = _instrument(monkeypatch, fake_identity=True)  # the fake stops view of row r after r % 4 + 1 steps
    s = predict(
        model_dir, load_tasks(EVAL), tmp_path / "out", PredictConfig(early_halt=True, device="cpu", progress=False)
    )
    assert all(kw.get("early_halt") is True for kw in options)
    preds = read_predictions(tmp_path / "out" / "predictions.jsonl")
    assert len(preds) == 8 and all(p.extra["step"] == p.extra["row"] % 4 + 1 for p in preds)
    assert s["mean_steps"] == sum(p.extra["step"] for p in preds) / 8


def test_views_that_decode_empty_are_remembered(model_dir, tmp_path, monkeypatch):
    calls, _ = _instrument(monkeypatch, fake_blank=True)  # answers an empty canvas: no grid to write
    tasks = load_tasks(EVAL)
    out = tmp_path / "out"
    s = predict(model_dir, tasks, out, PredictConfig(views=2, device="cpu", progress=False))
    assert s["ran"] == 4 and s["empty"] == 4 and s["written"] == 0
    assert len((out / "predictions_empty.jsonl").read_text().splitlines()) == 4
    calls.clear()
    s2 = predict(model_dir, tasks, out, PredictConfig(views=2, device="cpu", progress=False))
    assert s2["ran"] == 0 and s2["skipped_done"] == 4 and calls == []


def test_cli_predict_all_steps_and_settings_guard(model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            str(model_dir),
            "--tasks",
            str(EVAL),
            "--ids",
            "00576224",
            "--views",
            "1",
            "--all-steps",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ran"] == 1
    preds = read_predictions(out / "predictions.jsonl")
    assert sorted(p.extra["step"] for p in preds) == list(range(1, 5)[: len(preds)])  # one line per step
    assert all(p.augmentation == "00576224" for p in preds)
    # a resume with different step settings would mix two protocols in one file: refused
    rc = main(["predict", str(model_dir), "--tasks", str(EVAL), "--views", "1", "--device", "cpu", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "all_steps" in err and "another --out" in err


def test_wrong_task_set_is_refused(model_dir, tmp_path, capsys):
    path = tmp_path / "x_challenges.json"
    path.write_text(json.dumps({"zz": {"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[1]]}]}}))
    rc = main(["predict", str(model_dir), "--tasks", str(path), "--device", "cpu", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "none of the 1 selected tasks" in err
