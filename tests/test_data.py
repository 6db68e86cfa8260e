"""Task loading: every source format, every validation rule, lenient mode and selections."""

import argparse
import json

import pytest
from helpers import simple_task, write_challenges, write_task_dir

from arc_kit.base.errors import ArcKitError
from arc_kit.cli.common import add_task_args, tasks_from_args
from arc_kit.data import BUNDLED, load_tasks, parse_ids, validate_grid

# --- sources -----------------------------------------------------------------------------------------


def test_challenges_file_picks_up_solutions_beside_it(challenges_file):
    ts = load_tasks(challenges_file)
    assert list(ts.tasks) == ["a", "b", "c"]
    assert ts.source == str(challenges_file) and ts.problems == [] and ts.invalid == {}
    b = ts.tasks["b"]
    assert len(b.train) == 2 and len(b.test) == 2 and b.has_solutions
    assert b.test[1].output == simple_task(n_test=2, colour=3)["test"][1]["output"]
    assert b.source == str(challenges_file) and b.version == ""


def test_challenges_without_solutions_has_unknown_outputs(tmp_path):
    path = write_challenges(tmp_path, {"a": simple_task()}, with_solutions=False)
    task = load_tasks(path).tasks["a"]
    assert task.test[0].output is None and not task.has_solutions


def test_explicit_solutions_file(tmp_path):
    path = write_challenges(tmp_path / "x", {"a": simple_task()}, with_solutions=False)
    sols = tmp_path / "answers.json"
    sols.write_text(json.dumps({"a": [simple_task()["test"][0]["output"]]}))
    assert load_tasks(path, solutions=sols).tasks["a"].has_solutions
    with pytest.raises(ArcKitError, match="nope.json: solutions file not found"):
        load_tasks(path, solutions=tmp_path / "nope.json")


def test_solutions_count_mismatch_names_task(tmp_path):
    path = write_challenges(tmp_path, {"a": simple_task(n_test=2)}, with_solutions=False)
    (tmp_path / "arc-agi_test_solutions.json").write_text(json.dumps({"a": [[[1]]]}))
    with pytest.raises(
        ArcKitError, match=r"arc-agi_test_solutions.json: task a: 1 solution grid\(s\) for 2 test input"
    ):
        load_tasks(path)


def test_bad_solution_grid_names_pair(tmp_path):
    path = write_challenges(tmp_path, {"a": simple_task()}, with_solutions=False)
    (tmp_path / "arc-agi_test_solutions.json").write_text(json.dumps({"a": [[[1, 12]]]}))
    with pytest.raises(ArcKitError, match=r"task a: test\[0\].output: cell \[0\]\[1\] is 12"):
        load_tasks(path)


def test_task_directory(tmp_path):
    root = write_task_dir(tmp_path / "tasks", {"b2": simple_task(), "a1": simple_task(n_test=2)})
    (root / "README.md").write_text("not a task")
    ts = load_tasks(root)
    assert list(ts.tasks) == ["a1", "b2"]  # sorted file names, id = file stem
    assert ts.tasks["a1"].has_solutions and ts.tasks["a1"].source == str(root)


def test_single_task_file(tmp_path):
    path = tmp_path / "abc123.json"
    path.write_text(json.dumps(simple_task()))
    assert list(load_tasks(path).tasks) == ["abc123"]


def test_directory_of_kaggle_files_says_which_to_pass(challenges_file):
    with pytest.raises(ArcKitError, match=r"holds Kaggle challenges files \(arc-agi_test_challenges.json\); pass one"):
        load_tasks(challenges_file.parent)


def test_empty_directory_and_unknown_source(tmp_path):
    with pytest.raises(ArcKitError, match="no task files"):
        load_tasks(tmp_path)
    with pytest.raises(ArcKitError, match=r"arc-agi-9/training: no such file or directory, and not a bundled set"):
        load_tasks("arc-agi-9/training")


@pytest.mark.parametrize(
    "name,count,n_test,version",
    [
        ("arc-agi-1/training", 400, 416, "arcagi"),
        ("arc-agi-1/evaluation", 400, 419, "arcagi"),
        ("arc-agi-2/evaluation", 120, 167, "latest"),
        ("kaggle-2025/evaluation", 120, 172, "kaggle2025"),
    ],
)
def test_bundled_sets(name, count, n_test, version):
    ts = load_tasks(name)
    assert len(ts.tasks) == count
    assert sum(len(t.test) for t in ts.tasks.values()) == n_test
    assert all(t.version == version and t.source == name and t.has_solutions for t in ts.tasks.values())


@pytest.mark.e2e
def test_every_bundled_name_loads():
    counts = {
        "arc-agi-2/training": 1000,
        "kaggle-2025/training": 1000,
        "kaggle-2024/training": 400,
        "kaggle-2024/evaluation": 400,
    }
    assert len(BUNDLED) == 8 and set(counts) < set(BUNDLED)
    for name, n in counts.items():
        assert len(load_tasks(name).tasks) == n, name


def test_kaggle2025_eval_differs_from_arc_agi_2_eval_in_six_tasks():
    a, b = load_tasks("arc-agi-2/evaluation").tasks, load_tasks("kaggle-2025/evaluation").tasks
    assert a.keys() == b.keys()
    assert sum(a[t].test != b[t].test or a[t].train != b[t].train for t in a) == 6


# --- validation ------------------------------------------------------------------------------------


def _bad(tmp_path, task, name="t1"):
    root = write_task_dir(tmp_path / "d", {name: task})
    with pytest.raises(ArcKitError) as e:
        load_tasks(root)
    msg = str(e.value)
    assert "\n" not in msg and f"{root / (name + '.json')}: task {name}" in msg
    return msg


def _with_grid(where, grid):
    t = simple_task()
    kind, i, key = where
    t[kind][i][key] = grid
    return t


@pytest.mark.parametrize(
    "where,grid,expected",
    [
        (("train", 1, "output"), [[1, 2], [3]], "train[1].output: ragged grid: row 1 has 1 cells, row 0 has 2"),
        (("train", 0, "input"), [[1, 10]], "train[0].input: cell [0][1] is 10, expected an integer 0..9"),
        (("train", 0, "input"), [[1, -1]], "cell [0][1] is -1, expected an integer 0..9"),
        (("test", 0, "input"), [[0, True]], "test[0].input: cell [0][1] is true (a boolean)"),
        (("train", 1, "input"), [["3"]], "train[1].input: cell [0][0] is '3' (a string)"),
        (("train", 0, "input"), [[1.0]], "cell [0][0] is 1.0 (a float)"),
        (("train", 0, "input"), [[1, [2]]], "cell [0][1] is a list, expected an integer 0..9"),
        (("train", 0, "input"), [[None]], "cell [0][0] is null, expected an integer 0..9"),
        (("train", 0, "output"), [[0] * 31], "train[0].output: grid is 1x31, at most 30x30 allowed"),
        (("train", 0, "output"), [[0]] * 31, "grid is 31x1, at most 30x30 allowed"),
        (("train", 0, "input"), [], "train[0].input: empty grid (no rows)"),
        (("train", 0, "input"), [[]], "train[0].input: row 0 is empty"),
        (("train", 0, "input"), [1, 2], "train[0].input: row 0 is 1, expected a list of cells"),
        (("test", 0, "input"), "grid", "test[0].input: expected a grid (list of rows), got 'grid' (a string)"),
    ],
)
def test_bad_grids(tmp_path, where, grid, expected):
    assert expected in _bad(tmp_path, _with_grid(where, grid))


def test_full_size_grid_is_valid():
    assert validate_grid([[9] * 30] * 30, "x") == [[9] * 30] * 30
    with pytest.raises(ArcKitError, match=r"^here: cell \[0\]\[0\] is false \(a boolean\)"):
        validate_grid([[False]], "here")


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda t: t.pop("test"), "missing 'test'"),
        (lambda t: t.pop("train"), "missing 'train'"),
        (lambda t: t["train"][1].pop("output"), "train[1]: missing 'output'"),
        (lambda t: t["test"][0].pop("input"), "test[0]: missing 'input'"),
        (lambda t: t.update(test=[]), "no test inputs"),
        (lambda t: t.update(train=[]), "no demonstration pairs"),
        (lambda t: t.update(train={"input": [[1]]}), "'train' must be a list of pairs"),
        (lambda t: t["train"].append([[1]]), "train[2]: expected an object with 'input' and 'output'"),
    ],
)
def test_bad_structure(tmp_path, mutate, expected):
    t = simple_task()
    mutate(t)
    assert expected in _bad(tmp_path, t)


def test_task_not_an_object(tmp_path):
    assert "expected an object with 'train' and 'test', got a list" in _bad(tmp_path, [1, 2])


def test_malformed_json_task_file(tmp_path):
    msg = _bad(tmp_path, '{"train": [', name="broken")
    assert "malformed JSON at line 1" in msg


def test_malformed_challenges_file_is_fatal_even_lenient(tmp_path):
    path = tmp_path / "arc-agi_x_challenges.json"
    path.write_text("{oops")
    for lenient in (False, True):
        with pytest.raises(ArcKitError, match="arc-agi_x_challenges.json: malformed JSON at line 1 column 2"):
            load_tasks(path, lenient=lenient)
    path.write_text("[1, 2]")
    with pytest.raises(ArcKitError, match="expected a JSON object mapping task ids"):
        load_tasks(path, lenient=True)


def test_challenges_file_error_names_file_task_and_pair(tmp_path):
    bad = simple_task()
    bad["train"][0]["input"][1] = [1]
    path = write_challenges(tmp_path, {"ok": simple_task(), "bad1": bad})
    with pytest.raises(ArcKitError, match=r"arc-agi_test_challenges.json: task bad1: train\[0\].input: ragged grid"):
        load_tasks(path)


# --- lenient mode -----------------------------------------------------------------------------------


def test_lenient_keeps_valid_tasks_and_lists_invalid(tmp_path):
    bad = simple_task(n_test=2)
    bad["train"][0]["output"] = [[7, 11]]
    path = write_challenges(
        tmp_path,
        {"ok": simple_task(), "bad": bad, "worse": "nonsense", "notest": {"train": simple_task()["train"], "test": []}},
        with_solutions=False,
    )
    ts = load_tasks(path, lenient=True)
    assert list(ts.tasks) == ["ok"]
    assert ts.invalid == {"bad": 2, "worse": 1, "notest": 1}
    assert len(ts.problems) == 3 and "task bad: train[0].output: cell [0][1] is 11" in ts.problems[0]


def test_lenient_directory_with_broken_json_file(tmp_path):
    root = write_task_dir(tmp_path / "d", {"good": simple_task(), "broken": "{"})
    ts = load_tasks(root, lenient=True)
    assert list(ts.tasks) == ["good"] and ts.invalid == {"broken": 1}
    assert "broken.json: task broken: malformed JSON" in ts.problems[0]


def test_lenient_malformed_solutions_file_means_no_solutions(tmp_path):
    path = write_challenges(tmp_path, {"a": simple_task()}, with_solutions=False)
    (tmp_path / "arc-agi_test_solutions.json").write_text("{not json")
    with pytest.raises(ArcKitError, match="arc-agi_test_solutions.json: malformed JSON"):
        load_tasks(path)
    ts = load_tasks(path, lenient=True)
    assert list(ts.tasks) == ["a"] and not ts.tasks["a"].has_solutions
    assert len(ts.problems) == 1 and "solutions ignored" in ts.problems[0]


def test_lenient_bad_solution_drops_only_that_task(tmp_path):
    path = write_challenges(tmp_path, {"a": simple_task(), "b": simple_task()})
    sols = json.loads((tmp_path / "arc-agi_test_solutions.json").read_text())
    sols["b"] = [[[True]]]
    (tmp_path / "arc-agi_test_solutions.json").write_text(json.dumps(sols))
    ts = load_tasks(path, lenient=True)
    assert list(ts.tasks) == ["a"] and ts.invalid == {"b": 1} and ts.tasks["a"].has_solutions


# --- selections ------------------------------------------------------------------------------------


def test_ids_max_size_limit(challenges_file):
    assert list(load_tasks(challenges_file, ids=["c", "a"]).tasks) == ["a", "c"]  # source order
    assert list(load_tasks(challenges_file, max_size=3).tasks) == ["a", "b"]
    assert list(load_tasks(challenges_file, max_size=5, limit=2).tasks) == ["a", "b"]
    assert list(load_tasks(challenges_file, ids=["c", "b"], limit=1).tasks) == ["b"]
    assert load_tasks(challenges_file, limit=0).tasks == {}
    with pytest.raises(ArcKitError, match=r"task id\(s\) not found: zz, yy"):
        load_tasks(challenges_file, ids=["a", "zz", "yy"])


def test_max_size_never_looks_at_test_outputs(tmp_path):
    t = simple_task(size=3)
    t["test"][0]["output"] = [[1] * 8]  # the answer is wider than anything visible
    root = write_task_dir(tmp_path / "d", {"t": t})
    assert list(load_tasks(root, max_size=3).tasks) == ["t"]
    assert load_tasks(root, max_size=2).tasks == {}
    t["train"][0]["output"] = [[1] * 4]  # a demonstration output counts: it is visible
    root = write_task_dir(tmp_path / "e", {"t": t})
    assert load_tasks(root, max_size=3).tasks == {}


def test_bundled_dev_bench_is_23_tasks_by_visible_grids():
    ts = load_tasks("arc-agi-1/evaluation", max_size=8)
    assert len(ts.tasks) == 23
    assert sum(len(t.test) for t in ts.tasks.values()) == 29
    # two of them have answers larger than every visible grid (reachable only with a canvas margin)
    assert {"60c09cac", "833dafe3"} <= set(ts.tasks)


def test_lenient_selection_lists_every_other_task_for_the_submission(tmp_path):
    tasks = {"a": simple_task(size=3), "big": simple_task(size=9), "bad": {"train": []}, "c": simple_task(size=2)}
    path = write_challenges(tmp_path, tasks, with_solutions=False)
    ts = load_tasks(path, max_size=4, lenient=True)
    assert list(ts.tasks) == ["a", "c"]
    # the invalid task's size is unknown: not selected, still listed; the big one too, with its test input
    assert set(ts.unselected) == {"big", "bad"} and ts.invalid == {}
    assert ts.unselected["big"] == [tasks["big"]["test"][0]["input"]] and ts.unselected["bad"] == [None]
    strict = load_tasks(path, ids=["a"])
    assert strict.unselected == {}  # strict loads (validate, tasks) keep the plain selection


def test_selection_keeps_invalid_ids_in_lenient_mode(tmp_path):
    path = write_challenges(tmp_path, {"ok": simple_task(), "bad": {"train": []}}, with_solutions=False)
    ts = load_tasks(path, ids=["bad"], lenient=True)
    assert ts.tasks == {} and ts.invalid == {"bad": 1}


def test_selection_does_not_validate_unselected_tasks(tmp_path):
    root = write_task_dir(tmp_path / "d", {"a": simple_task(), "b": "{broken", "c": simple_task()})
    assert list(load_tasks(root, ids=["c"]).tasks) == ["c"]
    assert list(load_tasks(root, limit=1).tasks) == ["a"]
    with pytest.raises(ArcKitError, match="b.json: task b: malformed JSON"):
        load_tasks(root, limit=2)


def test_parse_ids(tmp_path):
    assert parse_ids("a,b, c") == ["a", "b", "c"]
    f = tmp_path / "ids.txt"
    f.write_text("a\n# comment\nb c  # trailing\na\n")
    assert parse_ids(f"@{f}") == ["a", "b", "c"]
    with pytest.raises(ArcKitError, match="missing.txt: ids file not found"):
        parse_ids(f"@{tmp_path / 'missing.txt'}")
    with pytest.raises(ArcKitError, match="no task ids"):
        parse_ids(",")


def test_task_args_positional_and_option(challenges_file, tmp_path):
    p = argparse.ArgumentParser()
    add_task_args(p)
    args = p.parse_args([str(challenges_file), "--ids", "a,c", "--max-size", "3"])
    assert list(tasks_from_args(args).tasks) == ["a"]
    q = argparse.ArgumentParser()
    add_task_args(q, positional=False)
    args = q.parse_args(["--tasks", str(challenges_file), "--limit", "2", "--solutions", str(tmp_path / "none.json")])
    with pytest.raises(ArcKitError, match="none.json: solutions file not found"):
        tasks_from_args(args)
