"""Training examples: tasks x augmentations -> encoded (inputs, labels, puzzle_identifiers) batches on the canvas."""

from dataclasses import dataclass

import numpy as np

from arc_kit.augment import IDENTITY, Augmentation, AugmentConfig, sample_augmentations
from arc_kit.base.config import load_config
from arc_kit.base.errors import ArcKitError
from arc_kit.crops import TRANSPOSING, bucket_length, crop_positions, task_crop
from arc_kit.data import GRID_SIDE, load_tasks
from arc_kit.encoding import COLOR_OFFSET, EOS, PAD, loss_labels
from arc_kit.identifiers import BLANK  # puzzle-embedding row 0, as the reference builder numbers them
from arc_kit.model.config import DataConfig


@dataclass
class Puzzle:
    """One augmented version of a task: its embedding row, and its pairs made on demand.

    The pairs are stored once per task in the original frame (`base`, uint8 arrays shared by all
    versions) and augmented when drawn: a 1000-version pretraining build then costs the memory of
    the tasks, not of a million augmented copies."""

    name: str  # "TASK|||t3|||0123456789" or "TASK"
    identifier: int  # row in the puzzle-embedding table
    base: list[tuple[np.ndarray, np.ndarray]]  # (input, output) pairs in the task's own frame
    aug: Augmentation = IDENTITY

    def __len__(self) -> int:
        return len(self.base)

    def pair(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        inp, out = self.base[j]
        return self.aug.apply_array(inp), self.aug.apply_array(out)

    def shape(self, j: int) -> tuple[int, int]:
        """(rows, cols) the augmented pair needs on the canvas (the larger of input and output)."""
        inp, out = self.base[j]
        h, w = max(inp.shape[0], out.shape[0]), max(inp.shape[1], out.shape[1])
        return (w, h) if self.aug.k in (1, 3, 6, 7) else (h, w)  # rotations by 90/270 and transposes swap

    @property
    def pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self.pair(j) for j in range(len(self.base))]


def build_puzzle_names(names: list[str], existing: list[str] | None = None) -> list[str]:
    """Embedding-row list: row 0 `<blank>`, then `existing` rows unchanged, then new names in order."""
    out = list(existing) if existing else [BLANK]
    if out[0] != BLANK:
        raise ArcKitError(f"puzzle names: row 0 must be '{BLANK}', found '{out[0]}'")
    seen = set(out)
    for n in names:
        if n not in seen:
            seen.add(n)
            out.append(n)
    return out


def _grid_array(grid, canvas: int, task_id: str, where: str) -> np.ndarray:
    a = np.asarray(grid, dtype=np.uint8)
    if a.ndim != 2 or a.shape[0] > canvas or a.shape[1] > canvas:
        raise ArcKitError(f"{where}: task {task_id}: grid of shape {a.shape} does not fit the {canvas}x{canvas} canvas")
    return a


def task_pairs(task, canvas: int, use_test_pairs: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """A task's training pairs as uint8 arrays: demonstrations, plus test pairs with known outputs if asked."""
    pairs = list(task.train) + ([p for p in task.test if p.output is not None] if use_test_pairs else [])
    where = task.source or "tasks"
    return [
        (_grid_array(p.input, canvas, task.id, where), _grid_array(p.output, canvas, task.id, where)) for p in pairs
    ]


class TrainData:
    """Groups (one per task) of puzzles (augmented versions) of examples (pairs), and batch encoding.

    `crops` (one (H, W) per group, in the task's own frame; arc_kit.crops): each example is encoded on its
    puzzle's crop, right-padded to the crop's bucket length, with coordinate `positions`; the canvas is then the
    30x30 coordinate grid, on which translation moves the crop window. None: every example on the square canvas."""

    def __init__(
        self,
        groups: list[list[Puzzle]],
        puzzle_names: list[str],
        canvas: int = 30,
        translate: bool = True,
        crops: list[tuple[int, int]] | None = None,
    ):
        keep = [i for i, g in enumerate(groups) if g and any(len(p) for p in g)]
        self.groups = [groups[i] for i in keep]
        if not self.groups:
            raise ArcKitError("training data: no task has a demonstration pair to train on")
        self.puzzle_names = puzzle_names
        self.canvas = GRID_SIDE if crops is not None else canvas
        self.translate = translate
        self.crops = np.array([crops[i] for i in keep], dtype=np.int64).reshape(-1, 2) if crops is not None else None
        self._build_tables()

    def _build_tables(self) -> None:
        """Flat arrays for vectorised batch encoding: every distinct base pair once, padded to the canvas
        (`_grids` [N, 2, C, C], `_dims` [N, 2, 2] rows/cols of input and output), and per puzzle (numbered
        group by group) its first pair's row `_pz_pairs`, dihedral `_pz_k`, colour map `_pz_perm` and
        embedding row `_pz_id`."""
        C = self.canvas
        first: dict[int, int] = {}  # id(puzzle.base) -> row of its first pair (versions share their task's base)
        bases: list[list[tuple[np.ndarray, np.ndarray]]] = []
        for group in self.groups:
            for p in group:
                if id(p.base) not in first:
                    first[id(p.base)] = sum(len(b) for b in bases)
                    bases.append(p.base)
        n = sum(len(b) for b in bases)
        self._grids = np.zeros((n, 2, C, C), dtype=np.uint8)
        self._dims = np.zeros((n, 2, 2), dtype=np.int64)
        i = 0
        for base in bases:
            for pair in base:
                for s, g in enumerate(pair):
                    self._grids[i, s, : g.shape[0], : g.shape[1]] = g
                    self._dims[i, s] = g.shape
                i += 1
        puzzles = [p for group in self.groups for p in group]
        self._group_start = np.cumsum([0] + [len(g) for g in self.groups])
        self._pz_pairs = np.array([first[id(p.base)] for p in puzzles], dtype=np.int64)
        self._pz_k = np.array([p.aug.k for p in puzzles], dtype=np.int64)
        self._pz_perm = np.array([p.aug.perm for p in puzzles], dtype=np.uint8).reshape(-1, 10)
        self._pz_id = np.array([p.identifier for p in puzzles], dtype=np.int32)
        if self.crops is not None:
            group_of = np.repeat(np.arange(len(self.groups)), [len(g) for g in self.groups])
            crop = self.crops[group_of]
            self._pz_crop = np.where(np.isin(self._pz_k, TRANSPOSING)[:, None], crop[:, ::-1], crop)
            # a crop's bucket is the same under every transform (H * W), so it is the task's
            self.group_length = np.array([bucket_length(int(h * w)) for h, w in self.crops], dtype=np.int64)

    @classmethod
    def from_tasks(
        cls,
        tasks,
        num_augmentations: int | list[int],
        augment_config=None,
        seed: int = 42,
        canvas: int = 30,
        translate: bool = True,
        use_test_pairs: bool | list[bool] = False,
        puzzle_names: list[str] | None = None,
        crops: bool = False,
        crop_margin: int = 0,
    ) -> "TrainData":
        """Build from a list of Task. `num_augmentations` (one count, or one per task) versions besides the identity;
        `use_test_pairs` (one flag, or one per task) also trains on test pairs with known outputs. `puzzle_names`
        (e.g. a loaded checkpoint's rows) keeps existing rows; new augmented puzzles are appended after them.
        `crops`: each task on its crop (crops.task_crop with `crop_margin`, the answer-blind rule inference uses);
        a trained test pair larger than it (a pretraining source's known answer) widens its task's crop rather
        than being cut off."""
        tasks = list(tasks)
        flags = use_test_pairs if isinstance(use_test_pairs, list) else [use_test_pairs] * len(tasks)
        counts = num_augmentations if isinstance(num_augmentations, list) else [num_augmentations] * len(tasks)
        per_task = []
        for task, flag, count in zip(tasks, flags, counts, strict=False):
            # Identity first, then up to `count` distinct versions; the draws depend on (seed, task id).
            augs = sample_augmentations(task, count, seed, augment_config)
            per_task.append((task_pairs(task, canvas, flag), [(aug.name(task.id), aug) for aug in augs]))
        names = build_puzzle_names([n for _, versions in per_task for n, _ in versions], puzzle_names)
        row = {n: i for i, n in enumerate(names)}
        groups = [[Puzzle(n, row[n], base, aug) for n, aug in versions] for base, versions in per_task]
        task_crops = None
        if crops:
            task_crops = []
            for task, (base, _) in zip(tasks, per_task, strict=True):
                h, w = task_crop(task, crop_margin)
                for pair in base:
                    for g in pair:
                        h, w = max(h, min(GRID_SIDE, g.shape[0] + 1)), max(w, min(GRID_SIDE, g.shape[1] + 1))
                task_crops.append((h, w))
        return cls(groups, names, canvas=canvas, translate=translate, crops=task_crops)

    @property
    def seq_len(self) -> int:
        """Tokens of the longest sequence: the canvas, or the largest bucket (900) with crops."""
        return self.canvas * self.canvas

    @property
    def num_puzzles(self) -> int:
        return sum(len(g) for g in self.groups)

    @property
    def mean_puzzle_examples(self) -> float:
        return sum(len(p) for g in self.groups for p in g) / max(1, self.num_puzzles)

    def steps_per_epoch(self, global_batch_size: int) -> float:
        """The reference's epoch: every task once, one random version each."""
        return len(self.groups) * self.mean_puzzle_examples / global_batch_size

    def encode(
        self, puzzles: np.ndarray, pairs: np.ndarray, offsets: np.ndarray, length: int | None = None
    ) -> dict[str, np.ndarray]:
        """Encode examples (flat puzzle index [B], pair index within the puzzle [B]) at canvas offsets [B, 2]
        -> inputs/labels [B, L], puzzle_identifiers [B], with whole-batch array operations.

        int32 throughout; label PAD positions become IGNORE_LABEL_ID (not trained), EOS stays (trained).
        Equal to encoding.encode_pair of each augmented pair (Puzzle.pair) at its offset.

        With crops: `length`-token sequences (the batch's bucket), each the pair on its puzzle's crop (grid at the
        crop's top-left) then right padding, and `positions` [B, length] with the crop window at `offsets`."""
        if self.crops is not None:
            return self._encode_crops(puzzles, pairs, offsets, length or self.seq_len)
        rows = self._pz_pairs[puzzles] + pairs
        k, perm = self._pz_k[puzzles], self._pz_perm[puzzles]
        inputs = self._encode_grids(rows, 0, k, perm, offsets)
        labels = self._encode_grids(rows, 1, k, perm, offsets)
        return {
            "inputs": inputs.astype(np.int32),
            "labels": loss_labels(labels, np.int32),
            "puzzle_identifiers": self._pz_id[puzzles].copy(),
        }

    def _encode_crops(
        self, puzzles: np.ndarray, pairs: np.ndarray, offsets: np.ndarray, length: int
    ) -> dict[str, np.ndarray]:
        """encode() with crops: each pair on a square of the batch's largest crop side at (0, 0), then each
        sequence's crop cells gathered row-major and PAD on the right."""
        rows = self._pz_pairs[puzzles] + pairs
        k, perm, crop = self._pz_k[puzzles], self._pz_perm[puzzles], self._pz_crop[puzzles]
        S = int(crop.max()) if len(crop) else 1
        zero = np.zeros_like(offsets)
        t = np.arange(length)[None, :]
        W = crop[:, 1:2]
        cells = t < crop[:, 0:1] * W
        idx = np.where(cells, (t // W) * S + t % W, 0)
        inputs, labels = (
            np.where(cells, np.take_along_axis(self._encode_grids(rows, s, k, perm, zero, S), idx, axis=1), PAD)
            for s in (0, 1)
        )
        return {
            "inputs": inputs.astype(np.int32),
            "labels": loss_labels(labels, np.int32),
            "puzzle_identifiers": self._pz_id[puzzles].copy(),
            "positions": crop_positions(crop, offsets, length),
        }

    def _encode_grids(
        self, rows: np.ndarray, side: int, k: np.ndarray, perm: np.ndarray, offsets: np.ndarray, out: int = 0
    ) -> np.ndarray:
        """Side 0 (inputs) or 1 (outputs) of base pairs `rows` [B] -> colour-mapped, dihedral-transformed
        tokens at `offsets` [B, 2] with the EOS border of encoding.encode_grid: uint8 [B, S * S] on a square of
        side S = `out` (default the canvas C, the grid table's side)."""
        B, C = len(rows), self.canvas
        S = out or C
        h, w = self._dims[rows, side, 0], self._dims[rows, side, 1]  # [B]
        swap = np.isin(k, (1, 3, 6, 7))  # transforms that transpose
        H, W = np.where(swap, w, h), np.where(swap, h, w)  # transformed grid size
        i = np.arange(S)[None, :] - offsets[:, :1]  # [B, S] row within the grid
        j = np.arange(S)[None, :] - offsets[:, 1:]  # [B, S] column within the grid
        row_in, col_in = (i >= 0) & (i < H[:, None]), (j >= 0) & (j < W[:, None])
        below, right = i == H[:, None], j == W[:, None]  # the EOS row and column
        # augment.dihedral(a, k)[i, j] = a[si, sj] with si, sj linear in i, j: the flat source index
        # si * C + sj = ci * i + cj * j + c0 is one broadcast add over the canvas; i and j are clamped into
        # the grid first so every index is valid (cells outside are masked below)
        i, j = np.clip(i, 0, H[:, None] - 1), np.clip(j, 0, W[:, None] - 1)
        si_i, si_j, si_h, sj_i, sj_j, sj_w = _DIHEDRAL_SOURCE[k].T
        ci, cj = si_i * C + sj_i, si_j * C + sj_j
        c0 = si_h * (h - 1) * C + sj_w * (w - 1) + (rows * 2 + side) * C * C  # into the flat table of grids
        src = (ci[:, None] * i + c0[:, None]).astype(np.int32)[:, :, None] + (cj[:, None] * j).astype(np.int32)[
            :, None, :
        ]
        colours = self._grids.reshape(-1)[src]  # [B, S, S] uint8
        # the example's colour map as one lookup in a [B, 16] token table
        lut = np.zeros((B, 16), dtype=np.uint8)
        lut[:, :10] = perm + COLOR_OFFSET
        tokens = lut.reshape(-1)[colours + (16 * np.arange(B, dtype=np.int32))[:, None, None]]
        # outside the grid: EOS on the row below and the column right of it (not the corner), PAD elsewhere
        # (uint8 arithmetic on the masks: much faster than np.where here)
        inside = row_in[:, :, None] & col_in[:, None, :]
        border = (below[:, :, None] & col_in[:, None, :]) | (row_in[:, :, None] & right[:, None, :])
        return (tokens * inside + np.uint8(EOS) * border + np.uint8(PAD)).reshape(B, -1).astype(np.uint8)


# augment.dihedral(a, k)[i, j] = a[si, sj] with si = si_i*i + si_j*j + si_h*(h-1), sj = sj_i*i + sj_j*j + sj_w*(w-1):
# 0: (i, j)  1: (j, w-1-i)  2: (h-1-i, w-1-j)  3: (h-1-j, i)  4: (i, w-1-j)  5: (h-1-i, j)  6: (j, i)  7: (h-1-j, w-1-i)
_DIHEDRAL_SOURCE = np.array(
    [
        (1, 0, 0, 0, 1, 0),
        (0, 1, 0, -1, 0, 1),
        (-1, 0, 1, 0, -1, 1),
        (0, -1, 1, 1, 0, 0),
        (1, 0, 0, 0, -1, 1),
        (-1, 0, 1, 0, 1, 0),
        (0, 1, 0, 1, 0, 0),
        (0, -1, 1, -1, 0, 1),
    ],
    dtype=np.int64,
)


def _trained_side(task, use_test_pairs: bool) -> int:
    """The largest side of the grids a task's training pairs hold (test pairs only when they are trained on)."""
    pairs = list(task.train) + ([p for p in task.test if p.output is not None] if use_test_pairs else [])
    grids = [g for p in pairs for g in (p.input, p.output)]
    return max((max(len(g), len(g[0])) for g in grids), default=0)


def load_train_data(config: DataConfig, puzzle_names: list[str] | None = None) -> TrainData:
    """Tasks named in `config` -> TrainData (augmentations drawn with config.seed)."""
    tasks, flags = [], []
    for source, use_test in [(s, True) for s in config.sources] + [(s, False) for s in config.demo_sources]:
        for task in load_tasks(source).tasks.values():
            if config.max_size and _trained_side(task, use_test) > config.max_size:
                continue
            tasks.append(task)
            flags.append(use_test)
    if not tasks:
        raise ArcKitError(
            "training data: no tasks (set data.sources or data.demo_sources, or pass --tasks"
            + (f"; data.max_size={config.max_size} kept none)" if config.max_size else ")")
        )
    aug_config = load_config(AugmentConfig, config.augmentation, subdir="augmentation")
    return TrainData.from_tasks(
        tasks,
        config.augmentations,
        aug_config,
        seed=config.seed,
        canvas=GRID_SIDE if config.crops else int(config.canvas),
        translate=config.translate,
        use_test_pairs=flags,
        puzzle_names=puzzle_names,
        crops=config.crops,
        crop_margin=config.canvas_margin,
    )
