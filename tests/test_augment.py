"""Augmentations: reference names, exact round trips on every grid shape, deterministic distinct sampling."""

import json

import numpy as np
import pytest
from helpers import MINI

from arc_kit.augment import (
    DIHEDRAL_INVERSE,
    IDENTITY,
    Augmentation,
    AugmentConfig,
    TaskVersions,
    augment_task,
    dihedral,
    sample_augmentations,
    split_name,
)
from arc_kit.base.config import load_config
from arc_kit.base.errors import ArcKitError
from arc_kit.data import Pair, Task, load_tasks


def _random_aug(rng):
    return Augmentation(int(rng.integers(0, 8)), tuple([0] + (rng.permutation(9) + 1).tolist()))


def test_round_trip_every_shape_every_transform():
    # All 900 shapes 1..30 x 1..30, each with every dihedral transform and a random colour permutation
    # (colour 0 free too): invert(apply(g)) == g, and the shape is swapped exactly for k in {1, 3, 6, 7}.
    rng = np.random.default_rng(0)
    for h in range(1, 31):
        for w in range(1, 31):
            g = rng.integers(0, 10, size=(h, w), dtype=np.uint8)
            for k in range(8):
                aug = Augmentation(k, tuple(rng.permutation(10).tolist()))
                a = aug.apply_array(g)
                assert a.shape == ((w, h) if k in (1, 3, 6, 7) else (h, w))
                assert np.array_equal(aug.invert_array(a), g)


def test_list_api_round_trip_non_square():
    g = [[1, 2, 3], [4, 5, 6]]
    for k in range(8):
        aug = Augmentation(k, (0, 2, 3, 4, 5, 6, 7, 8, 9, 1))
        out = aug.apply(g)
        assert isinstance(out, list) and isinstance(out[0][0], int)
        assert aug.invert(out) == g
        assert aug.invert(np.array(out)) == g  # arrays accepted too


def test_empty_grid_stays_empty():
    # the reference crop can decode nothing ([]); mapping it back must not fail
    aug = Augmentation(1, (0, 2, 1, 3, 4, 5, 6, 7, 8, 9))
    assert aug.invert([]) == [] and aug.apply([]) == []


def test_transform_meanings():
    a = np.arange(6).reshape(2, 3)
    expected = [a, np.rot90(a), np.rot90(a, 2), np.rot90(a, 3), a[:, ::-1], a[::-1], a.T, a[::-1, ::-1].T]
    for k in range(8):
        assert np.array_equal(dihedral(a, k), expected[k])
        assert np.array_equal(dihedral(dihedral(a, k), DIHEDRAL_INVERSE[k]), a)


def test_colour_permutation_applies_before_transform():
    aug = Augmentation(1, (0, 5, 2, 3, 4, 1, 6, 7, 8, 9))  # swap colours 1 and 5, then rot90
    assert aug.apply([[1, 0], [0, 5]]) == [[0, 1], [5, 0]]
    assert aug.apply([[1, 2]]) == [[2], [5]]


def test_names_in_reference_format():
    aug = Augmentation(3, (0, 6, 1, 4, 7, 3, 2, 9, 5, 8))
    name = aug.name("007bbfb7")
    assert name == "007bbfb7|||t3|||0614732958"
    assert split_name(name) == ("007bbfb7", aug)
    assert Augmentation.from_name(name) == aug
    assert IDENTITY.name("abc") == "abc" and split_name("abc") == ("abc", IDENTITY)
    assert Augmentation(0, (0, 2, 1, 3, 4, 5, 6, 7, 8, 9)).name("x") == "x|||t0|||0213456789"


def test_reference_fixture_names_round_trip():
    names = json.loads((MINI / "identifiers.json").read_text())[1:]
    for name in names:
        task_id, aug = split_name(name)
        assert aug.name(task_id) == name


@pytest.mark.parametrize(
    "bad",
    [
        "a|||t8|||0123456789",
        "a|||t1|||012345678",
        "a|||t1|||0123456788",
        "a|||x1|||0123456789",
        "a|||t1",
        "a|||t1|||0123456789|||z",
    ],
)
def test_bad_names_are_one_line_errors(bad):
    with pytest.raises(ArcKitError, match="augmentation name"):
        split_name(bad)


def _task(grids_in, grids_out, test_in, test_out=None):
    return Task("t", [Pair(i, o) for i, o in zip(grids_in, grids_out, strict=False)], [Pair(test_in, test_out)])


def test_augment_task_maps_every_grid_and_renames():
    task = load_tasks("arc-agi-1/training", ids=["007bbfb7"]).tasks["007bbfb7"]
    aug = Augmentation.from_name("007bbfb7|||t4|||0614732958")
    out = augment_task(task, aug)
    assert out.id == "007bbfb7|||t4|||0614732958"
    assert out.train[0].output == aug.apply(task.train[0].output)
    assert out.test[0].output == aug.apply(task.test[0].output)
    assert [aug.invert(p.input) for p in out.train] == [p.input for p in task.train]
    unknown = _task([[[1]]], [[[2]]], [[3]])
    assert augment_task(unknown, aug).test[0].output is None


def _key(task):
    return sorted(json.dumps([p.input, p.output]) for p in task.train + task.test)


def test_version_keys_are_the_multiset_of_pairs():
    a = Task("x", [Pair([[1]], [[2]]), Pair([[3, 3]], [[4]])], [Pair([[5]], [[6]])])
    b = Task("x", [Pair([[5]], [[6]]), Pair([[3, 3]], [[4]])], [Pair([[1]], [[2]])])  # same pairs, shuffled
    # the reference replay's rule: known test outputs count, demonstrations and tests together
    assert TaskVersions(a, test_outputs=True).key_of(IDENTITY) == TaskVersions(b, test_outputs=True).key_of(IDENTITY)
    unknown = Task("x", a.train, [Pair([[5]], None)])
    assert TaskVersions(unknown, test_outputs=True).key_of(IDENTITY) != TaskVersions(a, test_outputs=True).key_of(
        IDENTITY
    )
    # a solver's rule is answer-blind: a known test output does not change the key, so solutions on disk
    # cannot change which augmentations a run draws
    assert TaskVersions(unknown).key_of(IDENTITY) == TaskVersions(a).key_of(IDENTITY)
    assert TaskVersions(a).key_of(IDENTITY) != TaskVersions(b).key_of(IDENTITY)  # b's visible pairs differ
    for k in range(8):  # the key of a version is the key of the augmented task itself
        aug = Augmentation(k, (0, 2, 1, 3, 4, 5, 6, 7, 9, 8))
        assert TaskVersions(a).key_of(aug) == TaskVersions(augment_task(a, aug)).key_of(IDENTITY)
    assert TaskVersions(a).key_of(Augmentation(1)) != TaskVersions(a).key_of(IDENTITY)  # [[3, 3]] turns


def test_sampled_augmentations_do_not_depend_on_known_test_outputs():
    # a task whose only asymmetry is its test output: with the answer, more versions look distinct
    sym = [[1, 1], [1, 1]]
    task = Task("s", [Pair(sym, sym)], [Pair(sym, [[1, 2], [1, 1]])])
    blind = Task("s", task.train, [Pair(sym, None)])
    cfg = AugmentConfig(colors=False, max_trials=200)
    assert sample_augmentations(task, 7, 3, cfg) == sample_augmentations(blind, 7, 3, cfg) == [IDENTITY]


def test_sampling_deterministic_identity_first_and_distinct():
    task = load_tasks("arc-agi-1/evaluation", ids=["00576224"]).tasks["00576224"]
    a = sample_augmentations(task, 20, seed=7)
    assert a == sample_augmentations(task, 20, seed=7)
    assert a != sample_augmentations(task, 20, seed=8)
    assert a[0] == IDENTITY and len(a) == 21
    assert all(x.perm[0] == 0 for x in a)  # background fixed by default
    keys = [json.dumps(_key(augment_task(task, x))) for x in a]
    assert len(set(keys)) == len(keys)


def test_sampling_drops_duplicates_of_symmetric_tasks():
    # One colour, a symmetric grid: only colour permutations and transforms that change something count.
    sym = _task([[[1, 1], [1, 1]]], [[[1]]], [[1, 1], [1, 1]])
    got = sample_augmentations(sym, 50, seed=0, config=AugmentConfig(dihedral=True, colors=True))
    # 9 choices for colour 1 (0 fixed), the transform never matters: 9 distinct tasks at most
    assert len(got) == 9 and len({x.perm[1] for x in got}) == 9
    only_dihedral = sample_augmentations(sym, 50, seed=0, config=AugmentConfig(colors=False))
    assert only_dihedral == [IDENTITY]


def test_sampling_modes():
    task = _task([[[1, 2, 0], [3, 4, 5]]], [[[6, 7, 8]]], [[9, 1], [2, 3]])
    dih = sample_augmentations(task, 7, 0, AugmentConfig(colors=False, max_trials=500))
    assert sorted(x.k for x in dih) == list(range(8)) and all(x.perm == tuple(range(10)) for x in dih)
    col = sample_augmentations(task, 5, 0, AugmentConfig(dihedral=False, fix_background=False, max_trials=500))
    assert all(x.k == 0 for x in col) and any(x.perm[0] != 0 for x in col)
    assert sample_augmentations(task, 0, 0) == [IDENTITY]
    assert sample_augmentations(task, 5, 0, AugmentConfig(dihedral=False, colors=False)) == [IDENTITY]
    # different tasks with the same seed get different augmentations
    other = Task("u", task.train, task.test)
    assert sample_augmentations(task, 5, 0)[1:] != sample_augmentations(other, 5, 0)[1:]


def test_sampling_trials_are_bounded():
    task = _task([[[1]]], [[[1]]], [[1]])
    assert len(sample_augmentations(task, 1000, 0, AugmentConfig(max_trials=30))) <= 10


@pytest.mark.parametrize("name", ["none", "dihedral", "colors", "full", "reference"])
def test_shipped_presets_load(name):
    cfg = load_config(AugmentConfig, name, subdir="augmentation")
    assert isinstance(cfg, AugmentConfig)
    task = _task([[[1, 2], [3, 4]]], [[[5, 6]]], [[7, 8], [9, 0]])
    augs = sample_augmentations(task, 5, 0, cfg)
    assert augs[0] == IDENTITY and len(set(augs)) == len(augs)
    for a in augs[1:]:
        assert cfg.dihedral or a.k == 0
        assert cfg.colors or a.perm == tuple(range(10))
        assert not cfg.fix_background or a.perm[0] == 0
    assert (len(augs) == 1) == (not cfg.dihedral and not cfg.colors)
