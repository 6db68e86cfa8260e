"""Reference TRM puzzle identifiers: the exact (task, augmentation) -> embedding-row list of the reference ARC builder."""

# A published TRM checkpoint's puzzle-embedding table has one row per augmented puzzle of its
# training build, numbered by the reference dataset builder (`dataset/build_arc_dataset.py`,
# seed 42, 1000 augmentations). The checkpoint does not ship the row -> name mapping, so we
# replay the builder's random draws exactly:
#   np.random.seed(seed)
#   for subset in subsets:                       # given order
#       tasks = list(challenges.items()); np.random.shuffle(tasks)
#       for task in tasks:                       # up to 5 * num_aug trials
#           t = np.random.randint(0, 8); perm = [0] + np.random.permutation(1..9)
#           version = dihedral_t(perm[grid]) for every grid (test outputs included)
#           keep it if its multiset of (input, output) pairs is new; stop at num_aug + 1 versions
# Names are `TASK|||t{t}|||{perm digits}` (the original: plain `TASK`); identifiers count from 1
# in order of first appearance, 0 is `<blank>`. Nothing else draws from the RNG before the
# identifiers are fixed (the translation draws come later, when the arrays are written).
#
# Speed: dihedral transforms commute with a colour map, so each task's 8 transformed copies are
# computed once (a flat uint8 buffer each) and a trial is one lookup-table gather plus a sort of
# per-pair byte strings. A full ARC-AGI-1 build (~1M trials) takes well under a minute.

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ArcKitError
from .files import read_json

SEPARATOR = "|||"
RETRIES_FACTOR = 5      # reference ARCAugmentRetriesFactor
MAX_GRID = 30           # reference ARCMaxGridSize
BLANK = "<blank>"


@dataclass(frozen=True)
class Recipe:
    """One reference build: which subsets went in, which one became the test split."""
    subsets: tuple[str, ...]
    test_set: str
    rows: int           # puzzle-embedding rows of the published checkpoint (identifiers incl. <blank>)


# The two published builds (ARC Prize Foundation `trm_arc_prize_verification` checkpoints).
RECIPES = {
    "arc1": Recipe(("training", "evaluation", "concept"), "evaluation", 876_406),
    "arc2": Recipe(("training2", "evaluation2", "concept"), "evaluation2", 1_191_730),
}


def recipe_for_rows(rows: int) -> Recipe | None:
    """The reference build whose table has `rows` rows, or None."""
    return next((r for r in RECIPES.values() if r.rows == rows), None)


def dihedral(arr: np.ndarray, k: int) -> np.ndarray:
    """Reference dihedral_transform: 0 id, 1-3 rot90 k times, 4 fliplr, 5 flipud, 6 transpose, 7 fliplr(rot90)."""
    if k == 0:
        return arr
    if k <= 3:
        return np.rot90(arr, k=k)
    if k == 4:
        return np.fliplr(arr)
    if k == 5:
        return np.flipud(arr)
    if k == 6:
        return arr.T
    return np.fliplr(np.rot90(arr, k=1))


def _grid(grid, where: str) -> np.ndarray:
    try:
        arr = np.array(grid)
    except Exception:
        arr = None
    if arr is None or arr.ndim != 2 or arr.size == 0 or arr.shape[0] > MAX_GRID or arr.shape[1] > MAX_GRID \
            or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() > 9:
        raise ArcKitError(f"{where}: not a grid of colours 0-9 at most {MAX_GRID}x{MAX_GRID}")
    return arr.astype(np.uint8)


def load_subset(data_dir: str | Path, subset: str, prefix: str = "arc-agi") -> dict[str, dict]:
    """`{prefix}_{subset}_challenges.json` with test outputs filled from the solutions file.

    Like the reference, a missing solutions file fills every test output with [[0]].
    Returns {task_id: {"train": [...], "test": [...]}} in file order.
    """
    path = Path(data_dir) / f"{prefix}_{subset}_challenges.json"
    puzzles = read_json(path, "challenges file")
    if not isinstance(puzzles, dict):
        raise ArcKitError(f"{path}: expected an object of tasks")
    sols_path = Path(data_dir) / f"{prefix}_{subset}_solutions.json"
    sols = read_json(sols_path, "solutions file") if os.path.isfile(sols_path) else None
    for task_id, task in puzzles.items():
        if not isinstance(task, dict) or not isinstance(task.get("train"), list) or not isinstance(task.get("test"), list):
            raise ArcKitError(f"{path}: task {task_id}: expected 'train' and 'test' lists")
        for idx, pair in enumerate(task["test"]):
            if sols is None:
                pair.setdefault("output", [[0]])
                continue
            grids = sols.get(task_id) if isinstance(sols, dict) else None
            if not isinstance(grids, list) or idx >= len(grids):
                raise ArcKitError(f"{sols_path}: task {task_id}: no solution for test input {idx}")
            pair["output"] = grids[idx]
    return puzzles


class _TaskVersions:
    """A task's (input, output) pairs under each of the 8 dihedral transforms, ready for colour maps."""

    def __init__(self, task_id: str, task: dict, where: str):
        pairs = []
        for split in ("train", "test"):     # the multiset ignores split and order
            for i, p in enumerate(task[split]):
                w = f"{where}: task {task_id}: {split} pair {i}"
                if not isinstance(p, dict) or "input" not in p or "output" not in p:
                    raise ArcKitError(f"{w}: expected 'input' and 'output'")
                pairs.append((_grid(p["input"], w + " input"), _grid(p["output"], w + " output")))
        self.n_pairs = len(pairs)
        # Per transform: one flat buffer of all grids, and per pair (shape header, start, end).
        # A pair's key is header + its bytes; the header fixes the lengths, so keys are unambiguous.
        self.buffers, self.slices = [], []
        for k in range(8):
            chunks, slices, pos = [], [], 0
            for inp, out in pairs:
                a, b = dihedral(inp, k), dihedral(out, k)
                header = bytes([*a.shape, *b.shape])
                n = a.size + b.size
                chunks += [a.ravel(), b.ravel()]
                slices.append((header, pos, pos + n))
                pos += n
            self.buffers.append(np.concatenate(chunks) if chunks else np.zeros(0, np.uint8))
            self.slices.append(slices)

    def key(self, k: int, lut: np.ndarray) -> bytes:
        """Canonical bytes of the version (colour map `lut`, then transform `k`): sorted pair keys."""
        mapped = lut[self.buffers[k]].tobytes()
        return b"".join(sorted(h + mapped[s:e] for h, s, e in self.slices[k]))


def augmentation_names(task_id: str, task: dict, num_aug: int, rng: np.random.RandomState,
                       where: str = "") -> list[str]:
    """Names of the kept versions of one task, the original first, drawing from `rng` as the reference does."""
    names = [task_id]
    if num_aug <= 0:
        return names
    versions = _TaskVersions(task_id, task, where or "tasks")
    identity = np.arange(10, dtype=np.uint8)
    seen = {versions.key(0, identity)}
    digits = np.frombuffer(b"0123456789", dtype=np.uint8)
    colours = np.arange(1, 10, dtype=np.uint8)
    lut = identity.copy()                       # [0] + permutation of 1..9: new colour of old colour i
    for _ in range(RETRIES_FACTOR * num_aug):
        trans = rng.randint(0, 8)
        lut[1:] = rng.permutation(colours)      # the reference's np.random.permutation(np.arange(1, 10))
        key = versions.key(trans, lut)
        if key not in seen:
            seen.add(key)
            names.append(f"{task_id}{SEPARATOR}t{trans}{SEPARATOR}{digits[lut].tobytes().decode()}")
        if len(names) >= num_aug + 1:
            break
    return names


def build_identifiers(data_dir: str | Path, subsets, test_set: str, seed: int = 42, num_aug: int = 1000,
                      prefix: str = "arc-agi", test_set2: str = "evaluation2",
                      progress: bool = False) -> tuple[list[str], list[list[int]]]:
    """Replay the reference ARC builder; return (names, test_split).

    names[i] is the puzzle of identifier i (names[0] == "<blank>"): the row order of the
    checkpoint's puzzle-embedding table. test_split lists the test split's puzzles in stored order
    as [identifier, number of test examples]. Like the reference, subsets named `test_set` or
    `test_set2` send their test pairs to the test split.
    """
    subsets = list(subsets)
    if not subsets:
        raise ArcKitError("trm-identifiers: no subsets given")
    rng = np.random.RandomState(seed)
    groups = []             # (names of one task's versions, number of test pairs, goes to test split)
    loaded = [(s, load_subset(data_dir, s, prefix)) for s in subsets]   # read everything first: fail fast
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(len(p) for _, p in loaded), desc="identifiers", unit="task", file=None)
    for subset, puzzles in loaded:
        where = str(Path(data_dir) / f"{prefix}_{subset}_challenges.json")
        items = list(puzzles.items())
        rng.shuffle(items)  # same draws as the reference's np.random.shuffle of the (id, task) list
        to_test = subset in (test_set, test_set2)
        for task_id, task in items:
            groups.append((augmentation_names(task_id, task, num_aug, rng, where), len(task["test"]), to_test))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()

    # Identifiers in order of first appearance: the train split (every task) comes first, then the
    # test split, whose puzzles all appeared already. (The reference inserts "train" first whenever
    # the first subset is not the test set; otherwise its order depends on Python's hash seed.)
    ids = {}
    for names, _, _ in groups:
        for name in names:
            if name not in ids:
                ids[name] = len(ids) + 1
    table = [BLANK] + list(ids)
    test_split = [[ids[name], n_test] for names, n_test, to_test in groups if to_test for name in names]
    return table, test_split
