"""Per-task crops on the 30x30 coordinate grid: crop sizes, length buckets, crop encoding and positions."""

import numpy as np

from arc_kit.data import GRID_SIDE, Task, visible_grids
from arc_kit.encoding import PAD, encode_grid

# Sequence lengths a crop-mode batch may have: roughly geometric (x1.25-1.5) in multiples of 16 from 16 to the
# full 900. A crop of n = H * W tokens goes into the smallest length >= n, padded on the right; 14 lengths keep
# compiled code to a few shapes while the padding stays under a third of a sequence (under a fifth above 300).
BUCKETS = (16, 32, 48, 64, 96, 128, 176, 240, 320, 416, 528, 656, 784, 900)
TRANSPOSING = (1, 3, 6, 7)  # dihedral transforms (augment.dihedral k) that swap height and width


def task_crop(task: Task, margin: int = 0) -> tuple[int, int]:
    """(H, W) of the task's crop in its own frame: the largest visible grid's rows + 1 and columns + 1 (the EOS
    border) plus `margin`, each at most 30. Answer-blind: demonstrations and test inputs only, never test outputs
    (the crop edge must not tell the model the answer's size, which inference cannot know)."""
    grids = visible_grids(task)
    h = max(len(g) for g in grids)
    w = max(len(g[0]) for g in grids)
    return min(GRID_SIDE, h + 1 + margin), min(GRID_SIDE, w + 1 + margin)


def oriented(crop: tuple[int, int], k: int) -> tuple[int, int]:
    """The crop of a task's version under dihedral transform k (height and width swap for the transposing ones)."""
    return (crop[1], crop[0]) if k in TRANSPOSING else crop


def bucket_length(n: int) -> int:
    """The smallest bucket length holding n tokens."""
    for b in BUCKETS:
        if n <= b:
            return b
    raise ValueError(f"a crop of {n} tokens is larger than the {GRID_SIDE}x{GRID_SIDE} grid")


def crop_positions(crops: np.ndarray, offsets: np.ndarray, length: int) -> np.ndarray:
    """Coordinate positions (30 r + c, without the prefix) of `length`-token crop sequences: int32 [B, length].

    crops [B, 2] (H, W) and offsets [B, 2] (dr, dc) of each sequence: its H * W cells row-major at
    30 (r + dr) + (c + dc), then the right padding at the first cells of the 30x30 grid outside the moved crop
    (row-major) -- canvas PAD cells, as the reference's full canvas attends over too."""
    B = len(crops)
    H, W = crops[:, 0:1], crops[:, 1:2]
    t = np.arange(length)[None, :]
    inside_seq = t < H * W  # [B, length]
    r, c = t // W, t % W
    pos = (r + offsets[:, 0:1]) * GRID_SIDE + c + offsets[:, 1:2]
    # cells of the grid outside each crop, row-major: a stable sort puts them first, in order
    gr, gc = np.divmod(np.arange(GRID_SIDE * GRID_SIDE), GRID_SIDE)
    in_crop = (
        (gr[None, :] >= offsets[:, 0:1])
        & (gr[None, :] < offsets[:, 0:1] + H)
        & (gc[None, :] >= offsets[:, 1:2])
        & (gc[None, :] < offsets[:, 1:2] + W)
    )
    outside = np.argsort(in_crop, axis=1, kind="stable")  # [B, 900]: outside cells first
    pad_rank = np.maximum(t - H * W, 0)  # the k-th padding token takes the k-th outside cell
    pad_pos = np.take_along_axis(outside, np.broadcast_to(pad_rank, (B, length)), axis=1)
    return np.where(inside_seq, pos, pad_pos).astype(np.int32)


def encode_crop(grid, crop: tuple[int, int], length: int) -> np.ndarray:
    """Grid (colours, already augmented) at the top-left of an H x W crop with the EOS border of
    encoding.encode_grid, row-major, right-padded with PAD to `length`: uint8 [length]."""
    H, W = crop
    cells = encode_grid(grid, GRID_SIDE).reshape(GRID_SIDE, GRID_SIDE)[:H, :W].reshape(-1)
    out = np.full(length, PAD, dtype=np.uint8)
    out[: H * W] = cells
    return out


def crop_board(tokens: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """A crop sequence's tokens (right padding ignored) back on a 30x30 board, PAD elsewhere: [900], ready
    for encoding.crop_tokens."""
    H, W = crop
    board = np.full((GRID_SIDE, GRID_SIDE), PAD, dtype=np.asarray(tokens).dtype)
    board[:H, :W] = np.asarray(tokens)[: H * W].reshape(H, W)
    return board.reshape(-1)
