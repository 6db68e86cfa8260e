"""Commands vote / validate / score / compare / revote: outputs, exit codes 0/1/2 and error messages."""

import json
from pathlib import Path

import pytest

from arc_kit.cli.main import main
from arc_kit.predictions import Prediction, PredictionWriter

# three tasks: "a" (answer [[1,2]]), "b" (2 test inputs), "c" (answer equals its test input)
TASKS = {
    "a": {"train": [{"input": [[0]], "output": [[1]]}], "test": [{"input": [[2, 1]], "output": [[1, 2]]}]},
    "b": {
        "train": [{"input": [[0]], "output": [[1]]}],
        "test": [{"input": [[3]], "output": [[4]]}, {"input": [[5]], "output": [[6, 6]]}],
    },
    "c": {"train": [{"input": [[0]], "output": [[0]]}], "test": [{"input": [[7]], "output": [[7]]}]},
}


@pytest.fixture
def src(tmp_path):
    """Kaggle layout: challenges without test outputs, solutions beside it."""
    chal = {t: {"train": v["train"], "test": [{"input": p["input"]} for p in v["test"]]} for t, v in TASKS.items()}
    (tmp_path / "arc-agi_x_challenges.json").write_text(json.dumps(chal))
    (tmp_path / "arc-agi_x_solutions.json").write_text(
        json.dumps({t: [p["output"] for p in v["test"]] for t, v in TASKS.items()})
    )
    return str(tmp_path / "arc-agi_x_challenges.json")


def write_preds(path, rows):
    with PredictionWriter(path) as w:
        w.write(
            [Prediction(t, i, t if k == 0 else f"{t}|||t{k}|||0123456789", g, q) for k, (t, i, g, q) in enumerate(rows)]
        )
    return str(path)


@pytest.fixture
def preds(tmp_path):
    return write_preds(
        tmp_path / "p.jsonl",
        [
            ("a", 0, [[1, 2]], 1.0),
            ("a", 0, [[1, 2]], 1.0),
            ("a", 0, [[9]], 3.0),  # a: right answer first
            ("b", 0, [[8]], 0.0),
            ("b", 0, [[4]], -1.0),  # b0: tie, confidence decides
            ("ghost", 0, [[1]], 0.0),
        ],
    )  # unknown task: ignored


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_vote_writes_a_valid_submission(tmp_path, capsys, src, preds):
    out = tmp_path / "sub.json"
    rc, stdout, err = run(capsys, "vote", preds, "--tasks", src, "-o", out, "--report", tmp_path / "fill.txt")
    assert rc == 0 and stdout == ""
    sub = json.loads(out.read_text())
    assert sub["a"] == [{"attempt_1": [[1, 2]], "attempt_2": [[9]]}]
    assert sub["b"][0] == {"attempt_1": [[8]], "attempt_2": [[4]]}  # equal votes: sigmoid(0) > sigmoid(-1)
    assert sub["b"][1] == {"attempt_1": [[5]], "attempt_2": [[0]]}  # no votes: test input, then [[0]]
    assert "task ghost: 1 prediction(s) ignored" in err and "wrote" in err
    assert "task b: test 1: attempt_1 <- test input" in (tmp_path / "fill.txt").read_text()
    rc, stdout, _ = run(capsys, "validate", out, "--tasks", src)
    assert rc == 0 and "valid (3 tasks, 4 test inputs)" in stdout


def test_vote_config_overrides_and_weights(tmp_path, capsys, src, preds):
    other = write_preds(tmp_path / "q.jsonl", [("b", 0, [[4]], -1.0)])
    out = tmp_path / "sub.json"
    # q.jsonl's single vote weighs 0.5: b0 now [[4]] 1.5 votes vs [[8]] 1 vote
    rc, _, _ = run(
        capsys, "vote", preds, f"{other}:0.5", "fallback=zeros", "--tasks", src, "--config", "plurality", "-o", out
    )
    assert rc == 0
    sub = json.loads(out.read_text())
    assert sub["b"][0]["attempt_1"] == [[4]]
    assert sub["b"][1] == {"attempt_1": [[0]], "attempt_2": [[0]]}  # fallback=zeros took effect


def test_vote_errors_exit_2_naming_file_and_line(tmp_path, capsys, src, preds):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "a"}\n')
    rc, _, err = run(capsys, "vote", bad, "--tasks", src, "-o", tmp_path / "s.json")
    assert rc == 2 and err.startswith("error: ") and "bad.jsonl:1: task a: missing field" in err
    rc, _, err = run(capsys, "vote", tmp_path / "none.jsonl", "--tasks", src, "-o", tmp_path / "s.json")
    assert rc == 2 and "none.jsonl: predictions file not found" in err
    rc, _, err = run(capsys, "vote", preds, "--tasks", src, "--config", "nope", "-o", tmp_path / "s.json")
    assert rc == 2 and "error:" in err and "Traceback" not in err
    assert not (tmp_path / "s.json").exists()


def test_validate_verdicts_and_exit_codes(tmp_path, capsys, src):
    sub = {
        "a": [{"attempt_1": [[1, 2]], "attempt_2": [[1], [2, 3]]}],
        "b": [{"attempt_1": [[4]], "attempt_2": [[True]]}],
        "zzz": [],
    }
    path = tmp_path / "s.json"
    path.write_text(json.dumps(sub))
    rc, out, err = run(capsys, "validate", path, "--tasks", src)
    assert rc == 1
    lines = out.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith(f"{path}: task ") for line in lines)
    for want in (
        "task a: test 0: attempt_2: ragged grid: row 1 has 2 cells, row 0 has 1",
        "task b: 1 entries, expected 2",
        "task b: test 0: attempt_2: cell [0][0] is true (a boolean)",
        "task c: missing",
        "task zzz: not in the tasks",
    ):
        assert any(want in line for line in lines), want
    assert "5 problem(s)" in err
    path.write_text("[]")
    rc, out, _ = run(capsys, "validate", path, "--tasks", src)
    assert rc == 1 and "must be a JSON object" in out
    # exit 2: unparseable submission, missing file, bad --tasks
    path.write_text('{"a": [')
    rc, out, err = run(capsys, "validate", path, "--tasks", src)
    assert rc == 2 and out == "" and "malformed JSON at line 1" in err
    rc, _, err = run(capsys, "validate", tmp_path / "missing.json", "--tasks", src)
    assert rc == 2 and "not found" in err
    path.write_text("{}")
    rc, _, err = run(capsys, "validate", path, "--tasks", tmp_path / "nowhere")
    assert rc == 2 and err.startswith("error: ")


def test_validate_accepts_fallback_entries_for_invalid_tasks(tmp_path, capsys):
    tasks = dict(TASKS, broken={"train": [{"input": [[0]], "output": [[1]]}], "test": [{"input": [[1], [2, 3]]}]})
    src = tmp_path / "arc-agi_y_challenges.json"
    src.write_text(json.dumps(tasks))
    rc, _, err = run(capsys, "vote", write_preds(tmp_path / "p.jsonl", []), "--tasks", src, "-o", tmp_path / "s.json")
    assert rc == 0 and "broken" in err
    sub = json.loads((tmp_path / "s.json").read_text())
    assert sub["broken"] == [{"attempt_1": [[0]], "attempt_2": [[0]]}]
    rc, _, _ = run(capsys, "validate", tmp_path / "s.json", "--tasks", src)
    assert rc == 0


def test_score_json_and_table(tmp_path, capsys, src, preds):
    sub = tmp_path / "sub.json"
    run(capsys, "vote", preds, "--tasks", src, "-o", sub)
    rc, out, _ = run(capsys, "score", sub, "--tasks", src, "--json")
    assert rc == 0
    j = json.loads(out)  # stdout holds only the JSON object
    assert set(j) >= {"score_per_output", "score_per_task", "ci95", "tasks", "pass_at"}
    # a solved; b: b0 solved at attempt 2 ([[4]]), b1 not; c: test input fallback is the answer
    assert j["tasks"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert j["score_per_task"] == pytest.approx(2.5 / 3) and j["score_per_output"] == pytest.approx(3 / 4)
    assert j["pass_at"]["1"] == pytest.approx(2 / 3) and len(j["ci95"]) == 2
    rc, out, _ = run(capsys, "score", sub, "--tasks", src)
    assert rc == 0 and "per-task score (pass@2):   0.8333" in out and "per-output score (pass@2): 0.7500" in out
    assert out.splitlines()[0].startswith("task")


def test_score_predictions_file_votes_first(tmp_path, capsys, src, preds):
    rc, out, _ = run(capsys, "score", preds, "--tasks", src, "--json")
    j = json.loads(out)
    assert rc == 0 and j["kind"] == "predictions"
    assert j["tasks"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert "3" in j["pass_at"]  # a and b0 have 2 candidates plus fallback grids
    sub = tmp_path / "sub.json"
    run(capsys, "vote", preds, "--tasks", src, "-o", sub)
    rc, out2, _ = run(capsys, "score", sub, "--tasks", src, "--json")
    j2 = json.loads(out2)
    assert (j2["score_per_task"], j2["score_per_output"]) == (j["score_per_task"], j["score_per_output"])


def test_score_needs_solutions(tmp_path, capsys, src):
    (tmp_path / "arc-agi_x_solutions.json").unlink()
    sub = tmp_path / "sub.json"
    sub.write_text("{}")
    rc, out, err = run(capsys, "score", sub, "--tasks", src)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and "task a" in err and "--solutions" in err


def test_score_bundled_true_solutions_print_one(tmp_path, capsys):
    from arc_kit.data import load_tasks

    ts = load_tasks("arc-agi-2/evaluation")
    sub = {t: [{"attempt_1": p.output, "attempt_2": p.output} for p in task.test] for t, task in ts.tasks.items()}
    (tmp_path / "s.json").write_text(json.dumps(sub))
    rc, out, _ = run(capsys, "score", tmp_path / "s.json", "--tasks", "arc-agi-2/evaluation", "--json")
    j = json.loads(out)
    assert rc == 0 and j["score_per_task"] == 1.0 and j["score_per_output"] == 1.0 and j["n_tasks"] == 120


def test_compare(tmp_path, capsys, src):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({t: [{"attempt_1": [[0]], "attempt_2": [[0]]}] * len(v["test"]) for t, v in TASKS.items()}))
    b.write_text(
        json.dumps({t: [{"attempt_1": p["output"], "attempt_2": [[0]]} for p in v["test"]] for t, v in TASKS.items()})
    )
    rc, out, _ = run(capsys, "compare", a, b, "--tasks", src)
    assert rc == 0 and "B better: 3" in out and "no significant difference" in out  # 3 tasks: too few
    rc, out, _ = run(capsys, "compare", a, b, "--tasks", src, "--json")
    j = json.loads(out)
    assert j["comparison"]["wins_b"] == 3 and j["comparison"]["significant"] is False
    assert j["b"]["score_per_task"] == 1.0 and j["tasks"]["a"] == [0.0, 1.0]


def test_revote_reproduces_vote_and_compares_configs(tmp_path, capsys, src, preds):
    for name in ("reference", "plurality"):
        run(capsys, "vote", preds, "--tasks", src, "--config", name, "-o", tmp_path / f"{name}.json")
    out_dir = tmp_path / "rv"
    rc, out, _ = run(
        capsys,
        "revote",
        preds,
        "--tasks",
        src,
        "--configs",
        "reference",
        "plurality",
        Path(__file__).parents[1] / "configs/voting/filtered.yaml",
        "-o",
        out_dir,
        "--json",
    )
    assert rc == 0
    j = json.loads(out)
    assert [r["config"] for r in j["configs"]] == ["reference", "plurality", "filtered"]
    for name in ("reference", "plurality"):  # byte-identical to what `vote` wrote
        assert (out_dir / name / "submission.json").read_bytes() == (tmp_path / f"{name}.json").read_bytes()
    ref = json.loads((out_dir / "reference" / "score.json").read_text())
    assert ref["tasks"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert "vs_first" not in j["configs"][0] and "verdict" in j["configs"][1]["vs_first"]
    # filtered (min 2 votes) keeps only a's 2-vote answer: b0's answer is lost
    assert j["configs"][2]["score_per_task"] == pytest.approx(2 / 3)
    assert json.loads((out_dir / "revote.json").read_text()) == j
    rc, out, err = run(capsys, "revote", preds, "--tasks", src)  # default: every shipped config, a table
    assert rc == 0 and [line.split()[0] for line in out.splitlines()[1:]] == [
        "reference",
        "plurality",
        "confidence",
        "filtered",
        "consistency",
        "votes-consistency",
    ]
    assert "no consistency scores" in err  # no consistency.jsonl beside the predictions: ranked by votes alone
