"""Augmentations: dihedral transforms and colour permutations with reference TRM names, sampled per task."""

import zlib
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt

from arc_kit.base.errors import ArcKitError
from arc_kit.data import Grid, Pair, Task

SEP = "|||"  # the reference builder's puzzle-name separator: TASK|||t{k}|||{perm}
IDENTITY_PERM = tuple(range(10))
_ALL_COLOURS = set(range(10))
# Inverse of dihedral transform k (rotations by 90 and 270 swap; flips and rot180 are self-inverse).
DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """The reference's 8 dihedral transforms of a 2-D array (views, no copy)."""
    if k == 0:
        return a
    if 1 <= k <= 3:
        return np.rot90(a, k)
    if k == 4:
        return np.fliplr(a)
    if k == 5:
        return np.flipud(a)
    if k == 6:
        return a.T
    if k == 7:
        return np.fliplr(np.rot90(a, 1))  # reflection on the anti-diagonal
    raise ValueError(f"dihedral transform must be 0..7, got {k}")


def _as_2d(a: npt.ArrayLike) -> np.ndarray:
    a = np.asarray(a)
    return a.reshape(0, 0) if a.size == 0 else a  # an empty prediction ([] from the crop) stays empty


@dataclass(frozen=True)
class Augmentation:
    """Colour permutation `perm` (old colour i -> perm[i]) followed by dihedral transform `k`."""

    k: int = 0
    perm: tuple[int, ...] = IDENTITY_PERM

    def __post_init__(self) -> None:
        object.__setattr__(self, "perm", tuple(map(int, self.perm)))
        if not (isinstance(self.k, int) and 0 <= self.k <= 7):
            raise ArcKitError(f"augmentation: dihedral transform must be 0..7, got {self.k!r}")
        if len(self.perm) != 10 or set(self.perm) != _ALL_COLOURS:
            raise ArcKitError(f"augmentation: colour permutation must list 0..9 once each, got {self.perm}")

    @property
    def is_identity(self) -> bool:
        return self.k == 0 and self.perm == IDENTITY_PERM

    @classmethod
    def from_name(cls, name: str) -> "Augmentation":
        return split_name(name)[1]

    def name(self, task_id: str) -> str:
        """Reference puzzle name: `TASK|||t{k}|||{perm digits}`, or plain `TASK` for the identity."""
        if self.is_identity:
            return task_id
        return f"{task_id}{SEP}t{self.k}{SEP}{''.join(map(str, self.perm))}"

    def inverse_perm(self) -> np.ndarray:
        return np.argsort(np.array(self.perm)).astype(np.uint8)

    def apply_array(self, a: np.ndarray) -> np.ndarray:
        """[H, W] ints 0..9 -> [H', W'] (H'=W, W'=H for transforms 1, 3, 6, 7); a fresh array."""
        lut = np.array(self.perm, dtype=np.uint8)
        return np.ascontiguousarray(dihedral(lut[_as_2d(a)], self.k))

    def invert_array(self, a: np.ndarray) -> np.ndarray:
        """Undo apply_array: inverse dihedral first, then the inverse colour map."""
        return np.ascontiguousarray(self.inverse_perm()[dihedral(_as_2d(a), DIHEDRAL_INVERSE[self.k])])

    def apply(self, grid: Grid | np.ndarray) -> Grid:
        return cast(Grid, self.apply_array(np.asarray(grid, dtype=np.uint8)).tolist())

    def invert(self, grid: Grid | np.ndarray) -> Grid:
        return cast(Grid, self.invert_array(np.asarray(grid, dtype=np.uint8)).tolist())


IDENTITY = Augmentation()


def split_name(name: str) -> tuple[str, Augmentation]:
    """`TASK|||t3|||0123456789` -> ("TASK", Augmentation(3, ...)); a plain `TASK` -> ("TASK", identity)."""
    if SEP not in name:
        return name, IDENTITY
    parts = name.split(SEP)
    t, perm = parts[-2], parts[-1]
    if len(parts) != 3 or len(t) != 2 or t[0] != "t" or not t[1].isdigit() or len(perm) != 10 or not perm.isdigit():
        raise ArcKitError(f"augmentation name {name!r}: expected TASK{SEP}t<0-7>{SEP}<10 digits>")
    try:
        return parts[0], Augmentation(int(t[1]), tuple(map(int, perm)))
    except ArcKitError as e:
        raise ArcKitError(f"augmentation name {name!r}: {str(e).removeprefix('augmentation: ')}") from None


def augment_task(task: Task, aug: Augmentation) -> Task:
    """Every grid of `task` (test outputs too, when known) augmented; the id becomes aug.name(task.id)."""

    def pair(p: Pair) -> Pair:
        return Pair(aug.apply(p.input), aug.apply(p.output) if p.output is not None else None)

    return Task(
        id=aug.name(task.id),
        train=[pair(p) for p in task.train],
        test=[pair(p) for p in task.test],
        source=task.source,
        version=task.version,
    )


# -----------------------------------------------------------------------------
# Sampling


@dataclass
class AugmentConfig:
    """An augmentation set: which transforms are drawn (configs/augmentation/*.yaml). How many versions,
    the seed and canvas translation belong to the run or training config that uses the set."""

    dihedral: bool = True  # sample one of the 8 dihedral transforms
    colors: bool = True  # sample a colour permutation
    fix_background: bool = True  # colour 0 stays 0 (the reference's rule)
    max_trials: int = 0  # sampling attempts per task; 0 -> 5 * n (the reference's bound)


def _task_seed(seed: int, task_id: str) -> list[int]:
    # Same seed, different tasks -> different (but reproducible) streams. crc32 is stable across runs,
    # unlike hash(str).
    return [int(seed) & 0xFFFFFFFF, zlib.crc32(task_id.encode("utf-8"))]


class TaskVersions:
    """Canonical keys of a task's augmented versions, to drop duplicates: the multiset of its (input, output)
    pairs, demonstrations and tests together, order and split ignored.

    A solver's keys are answer-blind: test outputs are never looked at (`test_outputs=False`), so whether a
    solutions file sits beside the tasks cannot change which augmentations a run draws. The reference
    builder's rule also compares known test outputs: only the exact identifier replay (identifiers.py) asks
    for it with `test_outputs=True`.

    Dihedral transforms commute with a colour map, so the task's 8 transformed copies are computed once
    (one flat uint8 buffer each) and a key costs one lookup-table gather plus a sort of per-pair byte
    strings: fast enough for the ~1M trials of a reference identifier replay.
    """

    def __init__(self, task: Task, test_outputs: bool = False) -> None:
        def output(p: Pair, is_test: bool) -> np.ndarray:
            known = p.output is not None and (test_outputs or not is_test)
            return np.asarray(p.output if known else np.zeros((0, 0)), dtype=np.uint8)

        # a test output left out (or unknown) counts as a 0x0 grid
        pairs = [
            (np.asarray(p.input, dtype=np.uint8), output(p, i >= len(task.train)))
            for i, p in enumerate(task.train + task.test)
        ]
        # Per transform: all grids in one buffer, and per pair (shape header, start, end). A pair's key is
        # its header + its bytes; the header fixes both grids' lengths, so keys are unambiguous.
        self.buffers, self.slices = [], []
        for k in range(8):
            chunks, slices, pos = [], [], 0
            for inp, out in pairs:
                a, b = dihedral(inp, k), dihedral(out, k)
                n = a.size + b.size
                chunks += [a.ravel(), b.ravel()]
                slices.append((bytes([*a.shape, *b.shape]), pos, pos + n))
                pos += n
            self.buffers.append(np.concatenate(chunks) if chunks else np.zeros(0, np.uint8))
            self.slices.append(slices)

    def key(self, k: int, lut: np.ndarray) -> bytes:
        """Key of the version with colour map `lut` (uint8 [10]: new colour of old colour i), then transform `k`."""
        mapped = lut[self.buffers[k]].tobytes()
        return b"".join(sorted(h + mapped[s:e] for h, s, e in self.slices[k]))

    def key_of(self, aug: Augmentation) -> bytes:
        return self.key(aug.k, np.array(aug.perm, dtype=np.uint8))


def sample_augmentations(task: Task, n: int, seed: int = 42, config: AugmentConfig | None = None) -> list[Augmentation]:
    """Identity first, then up to `n` more whose augmented tasks are all distinct. Deterministic for a seed.

    Candidates are drawn at random (transform and/or colour permutation, per `config`); a candidate that
    yields a task identical to one already taken (demonstration pairs and test inputs; test outputs are never
    looked at, even when known) is dropped. Stops after `config.max_trials` draws (default 5 * n), so
    symmetric tasks with few colours simply get fewer augmentations.
    """
    config = config or AugmentConfig()
    out = [IDENTITY]
    if n <= 0 or not (config.dihedral or config.colors):
        return out
    rng = np.random.default_rng(_task_seed(seed, task.id))
    versions = TaskVersions(task)
    seen = {versions.key_of(IDENTITY)}
    trials = config.max_trials if config.max_trials > 0 else 5 * n
    first = 0 if not config.fix_background else 1
    for _ in range(trials):
        k = int(rng.integers(0, 8)) if config.dihedral else 0
        perm = list(range(10))
        if config.colors:
            perm[first:] = (rng.permutation(10 - first) + first).tolist()
        aug = Augmentation(k, tuple(perm))
        key = versions.key_of(aug)
        if key in seen:
            continue
        seen.add(key)
        out.append(aug)
        if len(out) >= n + 1:
            break
    return out
