"""Per-task crops: answer-blind sizes, encoding equal to the canvas restricted to the crop, positions, buckets."""

import numpy as np
import pytest

from arc_kit.augment import AugmentConfig
from arc_kit.crops import BUCKETS, bucket_length, crop_board, crop_positions, encode_crop, oriented, task_crop
from arc_kit.data import GRID_SIDE, Pair, Task
from arc_kit.encoding import IGNORE_LABEL_ID, PAD, crop_tokens, encode_grid, loss_labels
from arc_kit.model.batches import BatchSampler
from arc_kit.model.dataset import TrainData


def _grid(h, w, seed):
    return np.random.default_rng(seed).integers(0, 10, (h, w)).tolist()


def _tasks():
    """Tasks of different crop sizes (non-square, outputs differing from inputs), one with a large answer."""
    wide = Task(id="wide", train=[Pair(_grid(2, 4, 0), _grid(3, 3, 1)), Pair(_grid(1, 1, 2), _grid(1, 5, 3))], test=[])
    tall = Task(id="tall", train=[Pair(_grid(6, 2, 4), _grid(6, 2, 5))], test=[Pair(_grid(7, 3, 6), _grid(20, 20, 7))])
    big = Task(id="big", train=[Pair(_grid(12, 9, 8), _grid(12, 9, 9))] * 2, test=[Pair(_grid(3, 3, 10), None)])
    return [wide, tall, big]


def test_task_crop_is_answer_blind_and_swaps_for_transposes():
    wide, tall, big = _tasks()
    assert task_crop(wide) == (4, 6)  # largest rows 3 (an output), cols 5 (an output), + the EOS border
    assert task_crop(tall) == (8, 4)  # the 20x20 test output never counts
    assert task_crop(big, margin=2) == (15, 12)
    assert task_crop(Task(id="x", train=[Pair(_grid(30, 30, 0), _grid(30, 30, 1))], test=[])) == (30, 30)
    assert [oriented((4, 6), k) for k in range(8)] == [(4, 6), (6, 4), (4, 6), (6, 4), (4, 6), (4, 6), (6, 4), (6, 4)]


def test_buckets_and_positions_with_right_padding():
    assert BUCKETS[0] == 16 and BUCKETS[-1] == 900 and list(BUCKETS) == sorted(BUCKETS) and len(BUCKETS) == 14
    assert [bucket_length(n) for n in (1, 16, 17, 346, 900)] == [16, 16, 32, 416, 900]
    with pytest.raises(ValueError):
        bucket_length(901)
    pos = crop_positions(np.array([[2, 3], [2, 3]]), np.array([[0, 0], [1, 27]]), 16)
    # the crop's cells row-major at 30 (r + dr) + c + dc, then the first grid cells outside the moved crop
    assert pos[0].tolist() == [0, 1, 2, 30, 31, 32] + [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert pos[1].tolist() == [57, 58, 59, 87, 88, 89] + list(range(10))
    for row in crop_positions(np.array([[30, 30], [29, 30]]), np.array([[0, 0], [1, 0]]), 900):
        assert sorted(row.tolist()) == list(range(900))  # every position once: padding never repeats a cell


def test_crop_encoding_equals_the_canvas_restricted_to_the_crop():
    """For random pairs, augmentations and crop offsets: a crop sequence's tokens and labels are the reference
    canvas's at the translated crop's cells (positions), and its padding is PAD / ignored."""
    data = TrainData.from_tasks(_tasks(), 12, AugmentConfig(), seed=1, crops=True, use_test_pairs=True)
    assert data.seq_len == 900 and data.crops is not None
    # the trained 20x20 test answer of "tall" widens its crop instead of being cut off
    assert data.crops.tolist() == [[4, 6], [21, 21], [13, 10]]
    sampler = BatchSampler(data, 24, seed=2)
    seen = set()
    for _ in range(12):
        b = sampler.next_batch()
        n = b["inputs"].shape[1]
        seen.add(n)
        assert n in BUCKETS and b["positions"].shape == (24, n) and b["positions"].dtype == np.int32
        for row in range(24):
            pid = int(b["puzzle_identifiers"][row])
            flat, puzzle = next((i, p) for i, p in enumerate(p for g in data.groups for p in g) if p.identifier == pid)
            h, w = data._pz_crop[flat]
            assert bucket_length(h * w) == n
            pos = b["positions"][row]
            dr, dc = divmod(int(pos[0]), GRID_SIDE)
            cells = h * w
            assert pos[:cells].tolist() == [30 * (r + dr) + c + dc for r in range(h) for c in range(w)]
            match = [j for j in range(len(puzzle)) if _canvas_at(puzzle, j, pos[:cells], b, row)]
            assert match, "no pair of the puzzle encodes to this row"
            assert (b["inputs"][row, cells:] == PAD).all() and (b["labels"][row, cells:] == IGNORE_LABEL_ID).all()
    assert len(seen) == 3  # all three buckets drawn


def _canvas_at(puzzle, j, pos, b, row) -> bool:
    """Whether pair j, on the reference canvas with the grid at the crop's translated corner, has this row's
    tokens at the crop's positions."""
    dr, dc = divmod(int(pos[0]), GRID_SIDE)
    inp, out = puzzle.pair(j)
    x = encode_grid(inp, GRID_SIDE, (dr, dc))[pos]
    y = loss_labels(encode_grid(out, GRID_SIDE, (dr, dc))[pos], np.int32)
    n = len(pos)
    return bool(np.array_equal(x, b["inputs"][row, :n]) and np.array_equal(y, b["labels"][row, :n]))


def test_inference_crop_encoding_round_trips():
    grid = np.array(_grid(3, 5, 0), dtype=np.uint8)
    seq = encode_crop(grid, (5, 7), 48)
    assert seq.shape == (48,) and (seq[35:] == PAD).all()
    board = crop_board(seq, (5, 7))
    assert np.array_equal(board.reshape(30, 30)[:5, :7], encode_grid(grid, GRID_SIDE).reshape(30, 30)[:5, :7])
    assert np.array_equal(crop_tokens(board), grid)


def test_bucket_sampler_is_weighted_resumable_and_ranks_share_a_length():
    data = TrainData.from_tasks(_tasks(), 6, AugmentConfig(), seed=0, crops=True)
    whole = BatchSampler(data, 8, seed=3)
    lo, hi = BatchSampler(data, 8, seed=3), BatchSampler(data, 8, seed=3)
    lengths = []
    for step in range(20):
        if step == 7:  # resume mid-stream: the per-bucket orders travel in the state
            state = whole.state_tensors()
            assert {"sampler.order32", "sampler.pos176"} <= set(state)
            again = BatchSampler(data, 8, seed=99)
            again.load_state_tensors(state)
            want = again.next_batch()
        b = whole.next_batch()
        if step == 7:
            assert all(np.array_equal(b[k], want[k]) for k in b)
        a, c = lo.next_batch(0, 4), hi.next_batch(4, 8)  # two data-parallel ranks
        assert a["inputs"].shape[1] == c["inputs"].shape[1] == b["inputs"].shape[1]
        assert all(np.array_equal(np.concatenate([a[k], c[k]]), b[k]) for k in b)
        lengths.append(b["inputs"].shape[1])
    assert set(lengths) == set(whole.lengths) and len(set(lengths)) > 1
