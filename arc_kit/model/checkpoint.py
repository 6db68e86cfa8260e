"""Checkpoints: the kit's directory format (safetensors + YAML + JSON) and reference TRM import.

A checkpoint directory holds
    config.yaml            format, model (TRMConfig), then whatever extra sections the caller passed
    model.safetensors      every tensor except the puzzle table (reference names, see model.py)
    puzzle_emb.safetensors the puzzle table, one tensor `puzzle_emb.weights` [rows, ndim] float32
    puzzles.json           JSON array: row -> augmented puzzle name (`TASK|||t{k}|||{perm}`, `TASK`, `<blank>`)
    optimizer.safetensors, ema.safetensors   optional, flat name -> tensor dicts for resuming
The table has its own file so prediction can memory-map it and read only the rows it needs.
No file is ever unpickled except the reference checkpoint, with torch.load(weights_only=True).
"""

import dataclasses
import hashlib
import json
import os
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from arc_kit.base.config import from_dict, read_yaml, to_dict
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_open, atomic_write_bytes, atomic_write_json, atomic_write_text
from arc_kit.base.fileset import carry_over, file_set, finish_interrupted
from arc_kit.identifiers import read_identifiers, rows_unnamed
from arc_kit.model.build import fit_config, init_rows, instantiate
from arc_kit.model.trm import TRM, TRMConfig

FORMAT = "arc-kit-trm/1"
MODEL_FILE, TABLE_FILE, CONFIG_FILE, PUZZLES_FILE = (
    "model.safetensors",
    "puzzle_emb.safetensors",
    "config.yaml",
    "puzzles.json",
)
CHECKPOINT_FILES = (CONFIG_FILE, MODEL_FILE, TABLE_FILE, PUZZLES_FILE)  # what a checkpoint needs to load
STATE_FILES = {"optimizer": "optimizer.safetensors", "ema": "ema.safetensors"}
OWNED_FILES = (*CHECKPOINT_FILES, *STATE_FILES.values())  # what a save replaces; other files in the folder stay
TABLE_KEY = "puzzle_emb.weights"
TABLE_HASH_KEY = "table_sha256"  # config.yaml: sha256 of puzzle_emb.safetensors, recorded when the kit writes it
_CHUNK_BYTES = 64 << 20


@dataclass
class Checkpoint:
    """What load_checkpoint found besides the model."""

    path: Path
    config: TRMConfig
    puzzle_names: list[str]  # every row of the stored table
    extra: dict = field(default_factory=dict)  # config.yaml sections other than format/model
    puzzle_rows: list[int] | None = None  # table rows loaded into the model (None: all, in order)
    table_sha256: str | None = None  # recorded by the kit when it wrote the table

    def state(self, kind: str, device="cpu") -> dict[str, torch.Tensor] | None:
        """Saved "optimizer" or "ema" tensors, or None when the checkpoint has none."""
        path = self.path / STATE_FILES[kind]
        return _load_safetensors(path, device) if path.exists() else None


# ---- safetensors helpers --------------------------------------------------------------------------
def _load_safetensors(path: Path, device="cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except FileNotFoundError:
        raise ArcKitError(f"{path}: missing") from None
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ArcKitError(f"{path}: not a readable safetensors file ({' '.join(str(e).split())})") from None


def _save_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    atomic_write_bytes(
        path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata={"format": "pt"})
    )


def _release_pages(t: torch.Tensor) -> None:
    """Drop the resident pages of a memory-mapped, unmodified tensor (they re-read from the file if touched
    again), so streaming a 2 GB mapped table does not leave 2 GB resident. Linux only; a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    page = os.sysconf("SC_PAGE_SIZE")
    start, end = t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()
    start, end = -(start // -page) * page, end // page * page  # whole pages inside the range only
    if end > start:
        import ctypes

        ctypes.CDLL(None).madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4)  # MADV_DONTNEED


def write_table(path: str | Path, table: torch.Tensor, release_source: bool = False) -> str:
    """Write `table` [N, D] as a one-tensor float32 safetensors file, streaming it in chunks: `table` may be
    memory-mapped (reference import) and is never copied whole. `release_source` (only for a read-only
    file mapping!) drops each source chunk's pages once written. Returns the sha256 of the whole file,
    computed as it is written (recorded in config.yaml so a fingerprint never re-reads a 2 GB table)."""
    path = Path(path)
    N, D = table.shape
    header = {
        "__metadata__": {"format": "pt"},
        TABLE_KEY: {"dtype": "F32", "shape": [N, D], "data_offsets": [0, N * D * 4]},
    }
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # data starts 8-byte aligned
    rows = max(1, _CHUNK_BYTES // max(1, D * 4))
    digest = hashlib.sha256()
    with atomic_open(path) as f:
        head = struct.pack("<Q", len(blob)) + blob
        f.write(head)
        digest.update(head)
        for i in range(0, N, rows):
            src = table[i : i + rows].detach()
            chunk = src.to("cpu", torch.float32).contiguous()
            f.write(chunk.numpy().data)
            digest.update(chunk.numpy().data)
            if release_source and chunk.data_ptr() == src.data_ptr():
                _release_pages(src)
    return digest.hexdigest()


def _table_memmap(path: Path) -> np.ndarray:
    """The puzzle table file as a read-only [N, D] float32 memory map (an empty array for an empty table)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            meta = json.loads(f.read(n))[TABLE_KEY]
    except FileNotFoundError:
        raise ArcKitError(f"{path}: missing") from None
    except (OSError, ValueError, KeyError, struct.error):
        raise ArcKitError(f"{path}: not a puzzle-table safetensors file") from None
    if meta["dtype"] != "F32" or len(meta["shape"]) != 2:
        raise ArcKitError(f"{path}: expected a float32 [rows, ndim] table, found {meta['dtype']} {meta['shape']}")
    shape = tuple(meta["shape"])
    if shape[0] * shape[1] == 0:
        return np.zeros(shape, np.float32)
    return np.memmap(path, dtype="<f4", mode="r", offset=8 + n + meta["data_offsets"][0], shape=shape)


def load_puzzle_rows(
    directory: str | Path, rows: Sequence[int] | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Rows of a checkpoint's puzzle table [len(rows), ndim] (all rows when None), read through a memory map
    so only those rows are touched. `out` (a float32 tensor of that shape) is filled in place if given."""
    path = Path(directory) / TABLE_FILE
    mm = _table_memmap(path)
    n = mm.shape[0] if rows is None else len(rows)
    if out is None:
        out = torch.empty(n, mm.shape[1], dtype=torch.float32)
    elif tuple(out.shape) != (n, mm.shape[1]):
        want = f"{out.shape[0]} rows of {out.shape[1]}" if rows is None else f"rows of {out.shape[1]}"
        raise ArcKitError(f"{path}: table is {list(mm.shape)}, expected {want} (does not match config.yaml)")
    dst = out.numpy()
    if rows is None:
        step = max(1, _CHUNK_BYTES // max(1, mm.shape[1] * 4))
        for i in range(0, n, step):
            dst[i : i + step] = mm[i : i + step]
    else:
        idx = np.asarray(rows, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= mm.shape[0]):
            raise ArcKitError(
                f"{path}: row {int(idx.max() if idx.max() >= mm.shape[0] else idx.min())} "
                f"out of range (table has {mm.shape[0]} rows)"
            )
        if idx.size > 1 and idx[-1] - idx[0] == idx.size - 1 and (np.diff(idx) == 1).all():
            dst[:] = mm[idx[0] : idx[-1] + 1]  # a contiguous range: one sequential read
        else:
            dst[:] = mm[idx]
    return out


# ---- save / load ----------------------------------------------------------------------------------
def _write_checkpoint(
    directory: Path,
    cfg: TRMConfig,
    state: dict,
    table,
    names: list[str],
    extra: dict | None,
    states: dict[str, dict | None],
    release_table: bool = False,
) -> None:
    extra = dict(extra or {})
    extra.pop(TABLE_HASH_KEY, None)  # recomputed below: never carried over from a loaded checkpoint
    for reserved in ("format", "model"):
        if reserved in extra:
            raise ArcKitError(f"{directory}: extra config may not use the reserved key '{reserved}'")
    rows = 0 if table is None else table.shape[0]
    if len(names) != rows:
        raise ArcKitError(f"{directory}: {len(names)} puzzle names for a puzzle table of {rows} rows")
    # Written as one set: a save killed at any moment leaves the previous checkpoint or this one, never a mix.
    with file_set(directory, OWNED_FILES, CONFIG_FILE) as new:
        _save_safetensors(new / MODEL_FILE, state)
        if table is not None:
            extra[TABLE_HASH_KEY] = write_table(new / TABLE_FILE, table, release_source=release_table)
        atomic_write_json(new / PUZZLES_FILE, list(names))
        for kind, tensors in states.items():
            if tensors is not None:  # a state the set lacks is removed with the old set
                _save_safetensors(new / STATE_FILES[kind], tensors)
        doc = {"format": FORMAT, "model": to_dict(cfg), **extra}
        atomic_write_text(new / CONFIG_FILE, yaml.safe_dump(doc, sort_keys=False))


def save_checkpoint(
    directory: str | Path,
    model: TRM,
    puzzle_names: Sequence[str],
    extra_config: dict | None = None,
    optimizer_state: dict[str, torch.Tensor] | None = None,
    ema_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write `model` (+ row names, extra config sections such as train/data, resume state) to `directory`.
    Saving the same model twice gives byte-identical files."""
    state = dict(model.state_dict())
    table = state.pop(TABLE_KEY, None)
    _write_checkpoint(
        Path(directory),
        model.config,
        state,
        table,
        list(puzzle_names),
        extra_config,
        {"optimizer": optimizer_state, "ema": ema_state},
    )


def finish_interrupted_save(directory: str | Path) -> None:
    """Complete a save that was killed after its commit point, while moving its files in (see base/fileset)."""
    finish_interrupted(directory, OWNED_FILES, CONFIG_FILE)


def read_checkpoint_info(directory: str | Path) -> Checkpoint:
    """config.yaml and puzzles.json of a checkpoint, without loading any tensor."""
    d = Path(directory)
    finish_interrupted_save(d)
    if not (d / CONFIG_FILE).is_file():
        raise ArcKitError(f"{d}: not an arc-kit checkpoint directory (no {CONFIG_FILE})")
    doc = read_yaml(d / CONFIG_FILE)
    if doc.get("format") != FORMAT:
        raise ArcKitError(f"{d / CONFIG_FILE}: unknown checkpoint format {doc.get('format')!r} (expected {FORMAT})")
    try:
        cfg = from_dict(TRMConfig, doc.get("model"), prefix="model.")
    except ArcKitError as e:
        raise ArcKitError(f"{d / CONFIG_FILE}: {e}") from None
    names = read_identifiers(d / PUZZLES_FILE)
    expected = cfg.num_puzzle_identifiers if cfg.puzzle_emb_ndim > 0 else 0
    if len(names) != expected:
        raise ArcKitError(f"{d / PUZZLES_FILE}: {len(names)} names but the model has {expected} puzzle rows")
    extra = {k: v for k, v in doc.items() if k not in ("format", "model", TABLE_HASH_KEY)}
    return Checkpoint(d, cfg, names, extra, table_sha256=doc.get(TABLE_HASH_KEY))


def load_checkpoint(
    directory: str | Path, device="cpu", puzzle_rows: Sequence[int] | None = None, forward_dtype: str | None = None
) -> tuple[TRM, Checkpoint]:
    """Load a checkpoint into a TRM (eval mode). `puzzle_rows`: load only these table rows, in this order (the
    model's puzzle id i is then stored row puzzle_rows[i]; the rest of a 1.8 GB table is never read). `forward_dtype`
    overrides the saved one (e.g. float32 on CPU). Does not touch the global RNG."""
    rows = None if puzzle_rows is None else [int(r) for r in puzzle_rows]
    info = read_checkpoint_info(directory)
    cfg = info.config
    if forward_dtype is not None:
        cfg = dataclasses.replace(cfg, forward_dtype=forward_dtype)
    if rows is not None and cfg.puzzle_emb_ndim > 0:
        cfg = dataclasses.replace(cfg, num_puzzle_identifiers=max(1, len(rows)))
    state = _load_safetensors(info.path / MODEL_FILE)
    with torch.random.fork_rng(devices=[]):  # init values are overwritten; keep the caller's RNG stream
        model = instantiate(cfg)
    if cfg.puzzle_emb_ndim > 0 and (rows is None or rows):  # no rows asked: a single zero row
        load_puzzle_rows(info.path, rows, out=model.puzzle_emb.weights)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ArcKitError(
            f"{info.path / MODEL_FILE}: does not match its config: {' '.join(str(e).split())[:300]}"
        ) from None
    missing = [k for k in missing if k != TABLE_KEY]
    if missing or unexpected:
        raise ArcKitError(
            f"{info.path / MODEL_FILE}: does not match its config: "
            f"missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'}"
        )
    info.config, info.puzzle_rows = cfg, rows
    return model.to(device).eval(), info


def load_model_tensors(directory: str | Path, device="cpu") -> dict[str, torch.Tensor]:
    """The full model state dict of a checkpoint (model.safetensors + the puzzle table), e.g. to resume training."""
    d = Path(directory)
    state = _load_safetensors(d / MODEL_FILE, device)
    if (d / TABLE_FILE).exists():
        state[TABLE_KEY] = load_puzzle_rows(d).to(device)
    return state


def table_mean(directory: str | Path, chunk: int = 65536) -> torch.Tensor:
    """The mean row [ndim] float32 of a checkpoint's whole puzzle table, streamed through the memory map in
    float64 chunks (a 1.2M-row table is never resident). A stripped checkpoint stores that mean as its only row."""
    d = Path(directory)
    info = read_checkpoint_info(d)
    mm = _table_memmap(d / TABLE_FILE)
    if info.extra.get("stripped_puzzles") or mm.shape[0] == 1:
        return torch.from_numpy(np.array(mm[0], dtype=np.float32))
    total = np.zeros(mm.shape[1], dtype=np.float64)
    for i in range(0, mm.shape[0], chunk):
        total += mm[i : i + chunk].sum(0, dtype=np.float64)
    return torch.from_numpy((total / max(1, mm.shape[0])).astype(np.float32))


def fingerprint(directory: str | Path, full_bytes: int = 64 << 20) -> str:
    """A checkpoint's identity for resume checks, without reading a multi-GB table: every file's name and size,
    the full bytes of files up to `full_bytes` (config.yaml holds the table's sha256 when the kit wrote it),
    and of larger files their safetensors header plus their first, middle and last MiB."""
    p = Path(directory)
    if not p.exists():
        raise ArcKitError(f"{p}: checkpoint directory not found")
    if p.is_dir():
        finish_interrupted_save(p)  # the files a read will see, not a save's staging or commit folder
    hidden = (lambda f: any(part.startswith(".") for part in f.relative_to(p).parts)) if p.is_dir() else None
    files = sorted(f for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file() and not (hidden and hidden(f)))
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}\0{size}\0".encode())
        with open(f, "rb") as fh:
            if size <= full_bytes:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
                continue
            if f.suffix == ".safetensors":
                (n,) = struct.unpack("<Q", fh.read(8))
                h.update(fh.read(min(n, full_bytes)))
            for at in (0, size // 2, max(0, size - (1 << 20))):
                fh.seek(at)
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def strip_puzzle_rows(directory: str | Path, chunk: int = 65536) -> int:
    """Replace a checkpoint's puzzle table by one row, the table's mean, named `<blank>` (row 0 by the
    reference's numbering): new test-time puzzles start from the table mean (model.build row init "mean") exactly
    as with the full table, and a task left without a trained row falls back to it. The public tasks' rows
    are 1.8-2.5 GB of a published checkpoint and useless on hidden tasks. Optimizer state goes too (it is
    per row). Returns the number of rows dropped."""
    directory = Path(directory)
    info = read_checkpoint_info(directory)
    n = len(info.puzzle_names)
    if n == 0 or not (directory / TABLE_FILE).is_file():
        return 0
    doc = yaml.safe_load((directory / CONFIG_FILE).read_text())
    with file_set(directory, OWNED_FILES, CONFIG_FILE) as new:  # a kill half-way keeps the full checkpoint
        for name in (MODEL_FILE, STATE_FILES["ema"]):  # the optimizer state goes: it is per row
            carry_over(directory / name, new)
        doc[TABLE_HASH_KEY] = write_table(new / TABLE_FILE, table_mean(directory, chunk)[None])
        atomic_write_json(new / PUZZLES_FILE, ["<blank>"])
        doc["model"]["num_puzzle_identifiers"] = 1
        doc["stripped_puzzles"] = {"rows_dropped": n, "kept": "row 0 <blank> = the mean of the dropped table"}
        atomic_write_text(new / CONFIG_FILE, yaml.safe_dump(doc, sort_keys=False))
    read_checkpoint_info(directory)  # still a valid checkpoint
    return n


def load_model(
    checkpoint: str | Path,
    names: Sequence[str] | None = None,
    *,
    seq_len: int | None = None,
    crop_margin: int | None = None,
    halt_max_steps: int | None = None,
    seed: int = 0,
    row_init: str = "mean",
    crop_key: str = "model.canvas",
) -> tuple[TRM, int]:
    """A checkpoint's model with a puzzle table of exactly `names` (row 0 `<blank>`; None: the stored table),
    fitted as `fit_config` says. A name the checkpoint has starts from its stored row (only those rows are read);
    a new one as `row_init` says ("mean": the mean of the whole stored table, streamed). Returns (model in
    train-ready form, number of new rows)."""
    new: list[int] = []
    if names is None:
        model, _ = load_checkpoint(checkpoint)
    else:
        stored = read_checkpoint_info(checkpoint).puzzle_names
        # unnamed rows (row0, ...: e.g. the published HRM's): no task is matched to a row; all start as new ones
        row_of = {} if rows_unnamed(stored) else {n: i for i, n in enumerate(stored)}
        model, _ = load_checkpoint(checkpoint, puzzle_rows=[row_of.get(n, 0) for n in names])
        new = [i for i, n in enumerate(names) if i > 0 and n not in row_of]
    if new and model.config.puzzle_emb_ndim > 0:
        torch.manual_seed(seed)  # "normal": the same rows in every process and on resume
        init_rows(model, new, row_init, table_mean(checkpoint) if row_init == "mean" else None)
    if model.config.crops:
        seq_len = None  # a crop-trained model keeps its crops
    model.config = fit_config(
        model.config, seq_len=seq_len, crop_margin=crop_margin, halt_max_steps=halt_max_steps, crop_key=crop_key
    )
    return model, len(new)
