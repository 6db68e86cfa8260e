"""Predictions JSONL: crash-safe appends, tolerant reading of a cut-off last line, clear errors elsewhere."""

import json

import pytest

from arc_kit.base.errors import ArcKitError
from arc_kit.data import grid_problem
from arc_kit.predictions import Prediction, PredictionWriter, iter_predictions, parse_weighted_path, read_predictions


def pred(task="t1", i=0, grid=None, q=0.5, aug=None, **extra):
    return Prediction(task, i, aug or task, grid or [[1, 2], [3, 4]], q, dict(extra))


def test_write_read_roundtrip_keeps_extra_fields(tmp_path):
    path = tmp_path / "sub" / "p.jsonl"
    with PredictionWriter(path) as w:
        assert w.write([pred(step=3), pred("t2", 1, [[0]], -2.0, aug="t2|||t1|||0123456789")]) == 2
    with PredictionWriter(path) as w:  # append mode: a second writer adds, never overwrites
        w.write([pred("t3")])
    got = read_predictions(path)
    assert [(p.task_id, p.test_index, p.augmentation, p.grid, p.q_halt) for p in got] == [
        ("t1", 0, "t1", [[1, 2], [3, 4]], 0.5),
        ("t2", 1, "t2|||t1|||0123456789", [[0]], -2.0),
        ("t3", 0, "t3", [[1, 2], [3, 4]], 0.5),
    ]
    assert got[0].extra == {"step": 3}
    line = json.loads(path.read_text().splitlines()[0])
    assert set(line) == {"task_id", "test_index", "augmentation", "grid", "q_halt", "step"}


def test_each_write_is_on_disk_before_close(tmp_path):
    path = tmp_path / "p.jsonl"
    w = PredictionWriter(path)
    w.write([pred()])
    # a crash now (no close) must lose nothing: another reader sees the line already
    assert len(read_predictions(path)) == 1
    w.close()


def test_truncated_last_line_is_ignored_and_reported(tmp_path):
    path = tmp_path / "p.jsonl"
    with PredictionWriter(path) as w:
        w.write([pred("a"), pred("b")])
    full = path.read_text()
    path.write_text(full + full.splitlines()[0][:25])  # crash mid-write: no closing brace, no newline
    problems = []
    got = read_predictions(path, problems=problems)
    assert [p.task_id for p in got] == ["a", "b"]
    assert len(problems) == 1 and f"{path}:3" in problems[0] and "truncated" in problems[0]


def test_writer_drops_partial_line_before_appending(tmp_path):
    path = tmp_path / "p.jsonl"
    with PredictionWriter(path) as w:
        w.write([pred("a")])
    with open(path, "a") as f:
        f.write('{"task_id": "b", "test_in')
    with PredictionWriter(path) as w:  # resume after the crash
        w.write([pred("c")])
    problems = []
    assert [p.task_id for p in read_predictions(path, problems=problems)] == ["a", "c"]
    assert problems == []


def test_malformed_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    good = json.dumps(pred().to_json())
    path.write_text(f"{good}\n{{not json\n{good}\n")
    with pytest.raises(ArcKitError, match=r"p\.jsonl:2: malformed JSON"):
        read_predictions(path)
    # a complete (newline-terminated) bad last line is corruption, not a crash: also an error
    path.write_text(f"{good}\n{{not json\n")
    with pytest.raises(ArcKitError, match=r"p\.jsonl:2"):
        read_predictions(path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"grid": [[1, 2], [3]]}, "ragged grid: row 1 has 1 cells, row 0 has 2"),
        ({"grid": [[True]]}, r"cell \[0\]\[0\] is true \(a boolean\), expected an integer 0..9"),
        ({"grid": [[10]]}, "is 10, expected an integer 0..9"),
        ({"grid": [["1"]]}, "is '1' \\(a string\\), expected an integer 0..9"),
        ({"grid": [[1, [2]]]}, r"cell \[0\]\[1\] is a list"),
        ({"grid": [[0]] * 31}, "grid is 31x1, at most 30x30 allowed"),
        ({"grid": [[0] * 31]}, "grid is 1x31, at most 30x30 allowed"),
        ({"grid": []}, "empty grid"),
        ({"q_halt": None}, "q_halt"),
        ({"q_halt": True}, "q_halt"),
        ({"test_index": -1}, "test_index"),
        ({"test_index": False}, "test_index"),
        ({"task_id": 7}, "task_id"),
        ({"weight": -1}, "weight"),
    ],
)
def test_field_validation(tmp_path, change, message):
    obj = {**pred("tx").to_json(), **change}
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(obj) + "\n")
    with pytest.raises(ArcKitError, match=message) as e:
        read_predictions(path)
    assert "p.jsonl:1" in str(e.value)


def test_missing_field_and_nan(tmp_path):
    path = tmp_path / "p.jsonl"
    obj = pred("tx").to_json()
    del obj["augmentation"]
    path.write_text(json.dumps(obj) + "\n")
    with pytest.raises(ArcKitError, match="p.jsonl:1: task tx: missing field"):
        read_predictions(path)
    path.write_text(json.dumps({**pred("tx").to_json(), "q_halt": float("nan")}) + "\n")
    with pytest.raises(ArcKitError, match="finite"):
        read_predictions(path)


def test_writer_refuses_invalid_prediction(tmp_path):
    path = tmp_path / "p.jsonl"
    with PredictionWriter(path) as w:
        with pytest.raises(ArcKitError, match="task t1"):
            w.write([pred(grid=[[1], [2, 3]])])
        with pytest.raises(ArcKitError, match="q_halt"):
            w.write([pred(q=float("inf"))])
    assert path.read_text() == ""


def test_weights_multiply_line_weights(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with PredictionWriter(a) as w:
        w.write([pred("x"), pred("y", weight=0.5)])
    with PredictionWriter(b) as w:
        w.write([pred("z")])
    got = read_predictions([a, b], weights=[2.0, 1.0])
    assert [(p.task_id, p.weight) for p in got] == [("x", 2.0), ("y", 1.0), ("z", 1.0)]
    assert "weight" not in got[2].extra
    with pytest.raises(ArcKitError, match="2 weights given for 1"):
        read_predictions([a], weights=[1, 2])


def test_parse_weighted_path(tmp_path):
    assert parse_weighted_path("a.jsonl:2.5") == (tmp_path.__class__("a.jsonl"), 2.5)
    assert parse_weighted_path("a.jsonl")[1] == 1.0
    odd = tmp_path / "run:1.jsonl"  # a colon in a real file name is not a weight
    odd.write_text("")
    assert parse_weighted_path(str(odd)) == (odd, 1.0)
    with pytest.raises(ArcKitError, match="weight"):
        parse_weighted_path("a.jsonl:-1")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ArcKitError, match="not found"):
        read_predictions(tmp_path / "nope.jsonl")
    with pytest.raises(ArcKitError, match="directory"):
        list(iter_predictions(tmp_path))


def test_grid_problem_accepts_valid_grids_only():
    assert grid_problem([[0] * 30] * 30) is None
    assert grid_problem([[9]]) is None
    assert grid_problem([[1, 1.0]]) == "cell [0][1] is 1.0 (a float), expected an integer 0..9"  # 1.0 == 1
    assert grid_problem([[1, {}]]) == "cell [0][1] is an object, expected an integer 0..9"  # unhashable
    assert grid_problem(((1,),)) == "expected a grid (list of rows), got ((1,),)"


def test_prediction_tail_parses_only_new_complete_lines(tmp_path):
    from arc_kit.predictions import PredictionTail

    path = tmp_path / "p.jsonl"
    tail = PredictionTail(path)
    assert tail.read() == 0  # no file yet
    line = '{"task_id": "a", "test_index": 0, "augmentation": "a", "grid": [[1]], "q_halt": 0.5}\n'
    path.write_text(line * 2 + line[:20])  # two lines and one being written
    assert tail.read() == 2 and tail.offset == 2 * len(line)
    with open(path, "a") as f:
        f.write(line[20:] + line)
    assert tail.read() == 2 and len(tail.predictions) == 4  # the finished line and one more, nothing re-read
    assert tail.read() == 0
    path.write_text(line)  # replaced by a shorter file: starts over
    assert tail.read() == 1 and len(tail.predictions) == 1
    with open(path, "a") as f:
        f.write("{broken\n")
    with pytest.raises(ArcKitError, match=r"p.jsonl:2: malformed JSON"):
        tail.read()
