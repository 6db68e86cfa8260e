"""Encoding: grids <-> token sequences on the reference TRM canvas, and the reference test-split rebuild."""

from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt

from arc_kit.base.errors import ArcKitError
from arc_kit.data import GRID_SIDE, Grid, load_tasks
from arc_kit.identifiers import plan_test_split, read_identifiers

PAD = 0  # empty canvas cell; PAD label positions are ignored by the loss
EOS = 1  # marks the row below and the column right of a grid
COLOR_OFFSET = 2  # colour c -> token c + 2, so tokens 2..11 are colours
VOCAB_SIZE = 12
IGNORE_LABEL_ID = -100


def encode_grid(grid: Grid | np.ndarray, canvas: int = GRID_SIDE, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Grid [h, w] (list or array, colours 0..9) -> uint8 tokens [canvas * canvas], row-major.

    The grid sits at `offset` (row, col); EOS fills the row just below it (over the grid's columns)
    and the column just right of it (over the grid's rows), each only when inside the canvas. The
    corner cell below-right stays PAD, exactly as the reference builder writes it.
    """
    g = np.asarray(grid, dtype=np.uint8)
    h, w = g.shape
    r, c = offset
    if r < 0 or c < 0 or r + h > canvas or c + w > canvas:
        raise ArcKitError(f"grid {h}x{w} at offset ({r}, {c}) does not fit a {canvas}x{canvas} canvas")
    board = np.zeros((canvas, canvas), dtype=np.uint8)
    board[r : r + h, c : c + w] = g + COLOR_OFFSET
    if r + h < canvas:
        board[r + h, c : c + w] = EOS
    if c + w < canvas:
        board[r : r + h, c + w] = EOS
    return board.reshape(-1)


def encode_pair(
    inp: Grid | np.ndarray, out: Grid | np.ndarray, canvas: int = GRID_SIDE, offset: tuple[int, int] = (0, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels): both grids at the same offset, uint8 [canvas * canvas] each (labels: PAD = 0)."""
    return encode_grid(inp, canvas, offset), encode_grid(out, canvas, offset)


def crop_tokens(tokens: np.ndarray, canvas: int = GRID_SIDE) -> np.ndarray:
    """The reference evaluator's crop: the largest top-left rectangle holding only colour tokens.

    Row by row the usable width shrinks to the first non-colour token (< 2 or > 11); the rectangle of
    largest area (first one on ties) wins. Returns colours uint8 [h, w], possibly 0 x 0.
    """
    g = np.asarray(tokens).reshape(canvas, canvas)
    bad = (g < COLOR_OFFSET) | (g > COLOR_OFFSET + 9)  # [canvas, canvas]
    first_bad = np.where(bad.any(1), bad.argmax(1), canvas)  # [canvas] width usable per row
    width = np.minimum.accumulate(first_bad)  # a row can only narrow the rectangle
    area = width * np.arange(1, canvas + 1)
    best = int(area.argmax())  # first maximum, as the reference's `>`
    h, w = (best + 1, int(width[best])) if area[best] > 0 else (0, 0)
    return (g[:h, :w] - COLOR_OFFSET).astype(np.uint8)


def decode_grid(tokens: np.ndarray, canvas: int = GRID_SIDE) -> Grid:
    """Token sequence [canvas * canvas] -> grid by the reference crop rule ([] when nothing is there)."""
    return cast(Grid, crop_tokens(tokens, canvas).tolist())


def loss_labels(labels: np.ndarray, dtype: npt.DTypeLike = np.int64) -> np.ndarray:
    """uint8 label tokens [..., L] -> `dtype` with PAD positions set to IGNORE_LABEL_ID (EOS positions are trained)."""
    out = np.asarray(labels).astype(dtype)
    out[out == PAD] = IGNORE_LABEL_ID
    return out


# -----------------------------------------------------------------------------
# Reference test split rebuild. The reference builder puts each test-set task's test pairs, untranslated,
# into one puzzle per augmentation (identity first), one group per task; tasks appear in the order of the
# identifier list (the builder numbers puzzles in the same order it stores them): identifiers.plan_test_split.


def _find_challenges(source_dir: Path, test_set: str) -> Path:
    hits = sorted(source_dir.glob(f"*_{test_set}_challenges.json"))
    if not hits:
        raise ArcKitError(f"{source_dir}: no *_{test_set}_challenges.json file")
    return hits[0]


def build_test_split(
    source_dir: str | Path, identifiers: list[str] | str | Path, test_set: str = "evaluation", canvas: int = GRID_SIDE
) -> dict[str, np.ndarray]:
    """Rebuild the reference dataset's test split from Kaggle-style files and the identifier list.

    Returns the arrays the reference stores as test/all__{key}.npy: inputs, labels uint8 [N, canvas^2];
    puzzle_identifiers int32 [P]; puzzle_indices int32 [P + 1]; group_indices int32 [G + 1].
    Test pairs without a known output get the reference's dummy output [[0]].
    """
    if not isinstance(identifiers, list):
        identifiers = read_identifiers(identifiers)
    tasks = load_tasks(_find_challenges(Path(source_dir), test_set)).tasks
    inputs, labels, puzzle_ids, puzzle_idx, group_idx = [], [], [], [0], [0]
    for task_id, puzzles in plan_test_split(tasks, identifiers):
        task = tasks[task_id]
        for ident, aug in puzzles:
            for pair in task.test:
                out = pair.output if pair.output is not None else [[0]]
                x, y = encode_pair(
                    aug.apply_array(np.asarray(pair.input, dtype=np.uint8)),
                    aug.apply_array(np.asarray(out, dtype=np.uint8)),
                    canvas,
                )
                inputs.append(x)
                labels.append(y)
            puzzle_ids.append(ident)
            puzzle_idx.append(len(inputs))
        group_idx.append(len(puzzle_ids))
    empty = np.zeros((0, canvas * canvas), dtype=np.uint8)
    return {
        "inputs": np.stack(inputs) if inputs else empty,
        "labels": np.stack(labels) if labels else empty,
        "puzzle_identifiers": np.array(puzzle_ids, dtype=np.int32),
        "puzzle_indices": np.array(puzzle_idx, dtype=np.int32),
        "group_indices": np.array(group_idx, dtype=np.int32),
    }
