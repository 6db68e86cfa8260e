"""Training examples: puzzle rows, augmented pairs, batches translated on the canvas, resumable sampling."""

import numpy as np
import pytest

from arc_kit.augment import Augmentation, AugmentConfig
from arc_kit.base.errors import ArcKitError
from arc_kit.data import Pair, Task
from arc_kit.encoding import COLOR_OFFSET, EOS, IGNORE_LABEL_ID
from arc_kit.model.batches import BatchSampler
from arc_kit.model.dataset import BLANK, TrainData, build_puzzle_names


def _task(tid="t1", size=3, n_train=3):
    def grid(i):
        return [[(r * size + c + i) % 5 + 1 for c in range(size)] for r in range(size)]

    return Task(id=tid, train=[Pair(grid(i), grid(i + 1)) for i in range(n_train)], test=[Pair(grid(9), grid(10))])


def test_puzzle_names_blank_first_existing_kept():
    assert build_puzzle_names(["a", "b", "a"]) == [BLANK, "a", "b"]
    assert build_puzzle_names(["c", "a"], existing=[BLANK, "a", "b"]) == [BLANK, "a", "b", "c"]
    with pytest.raises(ArcKitError):
        build_puzzle_names(["a"], existing=["a"])


def test_from_tasks_names_rows_and_pairs():
    tasks = [_task("t1"), _task("t2", n_train=2)]
    data = TrainData.from_tasks(tasks, num_augmentations=3, seed=0, canvas=5, use_test_pairs=[True, False])
    assert data.puzzle_names[0] == BLANK
    assert data.puzzle_names[1] == "t1"  # identity first, plain task id
    assert len(data.groups) == 2 and len(data.groups[0]) == 4
    for group in data.groups:
        for p in group:
            assert data.puzzle_names[p.identifier] == p.name
    assert len(data.groups[0][0].pairs) == 4  # 3 demonstrations + the test pair
    assert len(data.groups[1][0].pairs) == 2  # demonstrations only
    # an augmented puzzle holds the augmented grids
    p = data.groups[0][1]
    aug = Augmentation.from_name(p.name)
    assert aug == p.aug
    np.testing.assert_array_equal(p.pairs[0][0], aug.apply_array(np.array(tasks[0].train[0].input)))
    # rows of a loaded checkpoint are kept, new puzzles appended
    again = TrainData.from_tasks(tasks[:1], 3, seed=0, canvas=5, puzzle_names=[BLANK, "old"])
    assert again.puzzle_names[:2] == [BLANK, "old"] and again.groups[0][0].identifier == 2


def test_grid_too_big_for_canvas_names_task():
    with pytest.raises(ArcKitError, match="t1.*does not fit the 2x2 canvas"):
        TrainData.from_tasks([_task("t1")], 0, canvas=2)


def test_batches_encode_translated_pairs():
    task = _task("t1", size=3)
    data = TrainData.from_tasks([task], num_augmentations=0, canvas=6, translate=True)
    sampler = BatchSampler(data, global_batch_size=16, seed=3)
    offsets = set()
    for _ in range(4):
        b = sampler.next_batch()
        assert (
            b["inputs"].shape == (16, 36) and b["labels"].shape == (16, 36) and b["puzzle_identifiers"].shape == (16,)
        )
        assert b["inputs"].dtype == b["labels"].dtype == np.int32 and np.all(b["puzzle_identifiers"] == 1)
        for x, y in zip(b["inputs"], b["labels"], strict=False):
            board = x.reshape(6, 6)
            r, c = np.argwhere(board >= COLOR_OFFSET).min(0)
            offsets.add((int(r), int(c)))
            grid = board[r : r + 3, c : c + 3] - COLOR_OFFSET
            k = [i for i, p in enumerate(task.train) if np.array_equal(grid, p.input)]
            assert len(k) == 1  # the input is one demonstration, intact
            lab = y.reshape(6, 6)
            np.testing.assert_array_equal(lab[r : r + 3, c : c + 3] - COLOR_OFFSET, task.train[k[0]].output)
            assert np.all((lab == IGNORE_LABEL_ID) == (board == 0))  # PAD ignored, EOS trained
            assert EOS in lab or (r == 3 and c == 3)
    assert len(offsets) > 4  # translation happens, within the canvas


def test_untranslated_batches_sit_top_left():
    data = TrainData.from_tasks([_task()], 0, canvas=4, translate=False)
    b = BatchSampler(data, 8, seed=0).next_batch()
    assert np.all(b["inputs"].reshape(8, 4, 4)[:, :3, :3] >= COLOR_OFFSET)


def test_sampler_deterministic_and_resumable():
    data = TrainData.from_tasks(
        [_task("a"), _task("b", size=2), _task("c", n_train=4)], 5, augment_config=AugmentConfig(), seed=1, canvas=5
    )
    s1, s2 = BatchSampler(data, 7, seed=11), BatchSampler(data, 7, seed=11)
    for _ in range(3):
        b1, b2 = s1.next_batch(), s2.next_batch()
        for k in b1:
            np.testing.assert_array_equal(b1[k], b2[k])
    state = s1.state_tensors()
    expected = [s1.next_batch() for _ in range(3)]
    s3 = BatchSampler(data, 7, seed=0)
    s3.load_state_tensors(state)
    for e in expected:
        got = s3.next_batch()
        for k in e:
            np.testing.assert_array_equal(got[k], e[k])


def test_reference_epoch_length():
    data = TrainData.from_tasks([_task("a", n_train=3), _task("b", n_train=2)], 0, canvas=4)
    assert data.mean_puzzle_examples == 2.5
    assert data.steps_per_epoch(5) == pytest.approx(1.0)


def test_non_square_pairs_fit_after_any_transform():
    task = Task(
        id="wide", train=[Pair([[1, 2, 3, 4, 5], [6, 7, 8, 9, 1]], [[2, 3, 4, 5, 6], [7, 8, 9, 1, 2]])], test=[]
    )
    data = TrainData.from_tasks([task], num_augmentations=30, seed=0, canvas=5, translate=True)
    ks = set()
    for p in data.groups[0]:
        inp, out = p.pair(0)
        assert p.shape(0) == inp.shape == out.shape
        ks.add(p.aug.k)
    assert ks & {1, 3, 6, 7}  # some versions are rotated/transposed to 5x2
    sampler = BatchSampler(data, 64, seed=0)
    for _ in range(3):
        b = sampler.next_batch()  # every translation stays on the 5x5 canvas
        assert (b["inputs"] >= COLOR_OFFSET).sum(1).tolist() == [10] * 64


def _per_example_batch(data, sampler_seed, batch_size, n_batches):
    """The pre-vectorisation sampler, one example at a time with encode_pair: the oracle for next_batch."""
    import torch

    from arc_kit.encoding import encode_pair, loss_labels

    g = torch.Generator().manual_seed(sampler_seed)
    order, pos, out = torch.zeros(0, dtype=torch.int64), 0, []
    for _ in range(n_batches):
        examples = []
        while len(examples) < batch_size:
            if pos >= len(order):
                order, pos = torch.randperm(len(data.groups), generator=g), 0
            pos += 1
            group = data.groups[int(order[pos - 1])]
            puzzle = group[int(torch.randint(len(group), (1,), generator=g))]
            take = min(len(puzzle), batch_size - len(examples))
            examples.extend((puzzle, int(j)) for j in torch.randperm(len(puzzle), generator=g)[:take])
        u = torch.rand((len(examples), 2), generator=g, dtype=torch.float64).numpy()
        xs, ys = [], []
        for b, (puzzle, j) in enumerate(examples):
            off = np.floor(u[b] * (data.canvas - np.array(puzzle.shape(j)) + 1)).astype(np.int64)
            x, y = encode_pair(*puzzle.pair(j), canvas=data.canvas, offset=(int(off[0]), int(off[1])))
            xs.append(x)
            ys.append(y)
        out.append(
            {
                "inputs": np.stack(xs).astype(np.int32),
                "labels": loss_labels(np.stack(ys), np.int32),
                "puzzle_identifiers": np.array([p.identifier for p, _ in examples], dtype=np.int32),
            }
        )
    return out


def test_vectorised_batches_equal_per_example_encoding_and_slices():
    # non-square pairs whose output differs in size from the input, under every dihedral transform
    wide = Task(
        id="wide",
        train=[Pair([[1, 2, 3, 4], [5, 6, 7, 8]], [[2, 3, 4], [5, 6, 7], [8, 9, 0]]), Pair([[3]], [[4, 5, 6, 7, 8]])],
        test=[],
    )
    tasks = [wide, _task("a"), _task("b", size=2, n_train=4)]
    data = TrainData.from_tasks(tasks, num_augmentations=20, augment_config=AugmentConfig(), seed=3, canvas=6)
    assert {p.aug.k for p in data.groups[0]} == set(range(8))
    sampler = BatchSampler(data, 13, seed=5)
    for want in _per_example_batch(data, 5, 13, 6):
        state = sampler.state_tensors()
        got = sampler.next_batch()
        for key in want:
            assert got[key].dtype == want[key].dtype
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        # a process's slice: the same rows, and the stream advances exactly as for the whole batch
        after = sampler.state_tensors()
        sampler.load_state_tensors(state)
        part = sampler.next_batch(4, 9)
        for key in want:
            np.testing.assert_array_equal(part[key], want[key][4:9], err_msg=key)
        assert all(np.array_equal(after[k].numpy(), v.numpy()) for k, v in sampler.state_tensors().items())
