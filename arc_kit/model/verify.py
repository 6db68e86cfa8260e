"""Checkpoint verification before anything runs: config, safetensors headers and sizes, shapes, manifest hashes."""

# A checkpoint that cannot be read is a mistake in what the user asked for, like a config error, so
# `arc-kit run` (run/checks.py), `arc-kit predict` and `kaggle simulate` verify it before they make any
# directory. Cheap by design: a safetensors file is an 8-byte header length, a JSON header naming every
# tensor's dtype, shape and byte range, then the data; comparing the file's size with the header's last
# offset catches a truncated or padded file without reading the data. Only small files are hashed (the
# table's recorded sha256 up to HASH_LIMIT bytes; MANIFEST.json's hashes, which only exports carry,
# always: exports are stripped to one puzzle row, so they are small).

import json
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING

from arc_kit.base.errors import ArcKitError

if TYPE_CHECKING:
    from arc_kit.model.checkpoint import Checkpoint

HASH_LIMIT = 64 << 20  # bytes: puzzle tables up to this size are checked against config.yaml's table_sha256
_HEADER_LIMIT = 100 << 20  # safetensors' own limit on the JSON header
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass
class TensorEntry:
    """One tensor of a safetensors header."""

    dtype: str
    shape: list[int]
    start: int  # byte range in the data section
    end: int


def read_safetensors_header(path: Path) -> dict[str, TensorEntry]:
    """A safetensors file's header (name -> dtype, shape, byte range), checked against the file's size; reads
    only the header. ArcKitError naming the file and what is wrong (missing, truncated, not safetensors)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ArcKitError(f"{path}: truncated ({size} bytes): not even a safetensors header length")
            (n,) = struct.unpack("<Q", head)
            if n > _HEADER_LIMIT:
                raise ArcKitError(f"{path}: not a safetensors file (header length {n:,} bytes)")
            if 8 + n > size:
                raise ArcKitError(f"{path}: truncated: {size:,} bytes, but its header alone needs {8 + n:,}")
            raw = f.read(n)
    except FileNotFoundError:
        raise ArcKitError(f"{path}: missing") from None
    except IsADirectoryError:
        raise ArcKitError(f"{path}: a directory, not a safetensors file") from None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        entries = {
            k: TensorEntry(
                v["dtype"], [int(d) for d in v["shape"]], int(v["data_offsets"][0]), int(v["data_offsets"][1])
            )
            for k, v in doc.items()
            if k != "__metadata__"
        }
    except (ValueError, KeyError, TypeError, IndexError):
        raise ArcKitError(f"{path}: not a safetensors file (unreadable header)") from None
    at = 0
    for name, e in sorted(entries.items(), key=lambda kv: kv[1].start):
        if e.dtype not in _DTYPE_BYTES or any(d < 0 for d in e.shape):
            raise ArcKitError(f"{path}: tensor '{name}' has an unknown dtype or shape ({e.dtype} {e.shape})")
        if e.start != at or e.end - e.start != prod(e.shape) * _DTYPE_BYTES[e.dtype]:
            raise ArcKitError(f"{path}: tensor '{name}' has a byte range that does not fit its dtype and shape")
        at = e.end
    if size != 8 + n + at:
        what = "truncated" if size < 8 + n + at else "has trailing bytes"
        raise ArcKitError(f"{path}: {what}: {size:,} bytes, its header says {8 + n + at:,}")
    return entries


def _check_model_tensors(path: Path, entries: dict[str, TensorEntry], cfg) -> None:
    """The network's tensors must be exactly those the config's model has, with its shapes (a meta-device
    model: shapes only, no memory, no init)."""
    import torch

    from arc_kit.model.build import instantiate
    from arc_kit.model.checkpoint import TABLE_KEY

    with torch.device("meta"):
        want = {k: list(v.shape) for k, v in instantiate(cfg).state_dict().items() if k != TABLE_KEY}
    missing = sorted(set(want) - set(entries))
    unexpected = sorted(set(entries) - set(want))
    if missing or unexpected:
        raise ArcKitError(
            f"{path}: does not match its config.yaml: missing {missing[:3] or 'nothing'}, "
            f"unexpected {unexpected[:3] or 'nothing'}"
        )
    for k, shape in want.items():
        if entries[k].shape != shape:
            raise ArcKitError(f"{path}: tensor '{k}' is {entries[k].shape}, its config.yaml's model needs {shape}")


def _check_manifest(d: Path) -> None:
    """Every file MANIFEST.json names has its recorded size and sha256 (an exported checkpoint)."""
    from arc_kit.model.starter import MANIFEST_FILE, file_sha256

    path = d / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        entries = {str(k): (int(v["bytes"]), str(v["sha256"])) for k, v in manifest.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ArcKitError(f"{path}: unreadable (expected file name -> sha256 and bytes)") from None
    for name, (size, sha) in entries.items():
        f = d / name
        if not f.is_file():
            raise ArcKitError(f"{f}: missing, but listed in {MANIFEST_FILE}")
        if f.stat().st_size != size:
            raise ArcKitError(f"{f}: {f.stat().st_size:,} bytes, {MANIFEST_FILE} says {size:,} (truncated or changed)")
        if file_sha256(f) != sha:
            raise ArcKitError(f"{f}: its sha256 differs from {MANIFEST_FILE} (the file is corrupt or was changed)")


def verify_checkpoint(directory: str | Path) -> "Checkpoint":
    """Check a kit checkpoint directory without loading its tensors; returns its Checkpoint info (config and
    row names). Raises ArcKitError with one line naming the file and what is wrong: config.yaml that does not
    parse, a safetensors file that is missing, truncated or not safetensors, network tensors or a puzzle table
    whose shapes disagree with config.yaml and puzzles.json, a table whose sha256 differs from the recorded
    one, an optimizer/EMA state file that is damaged, a file that differs from MANIFEST.json."""
    from arc_kit.model.checkpoint import MODEL_FILE, STATE_FILES, TABLE_FILE, TABLE_KEY, read_checkpoint_info
    from arc_kit.model.starter import MANIFEST_FILE, file_sha256

    d = Path(directory)
    if not d.is_dir():
        raise ArcKitError(f"{d}: checkpoint directory not found" if not d.exists() else f"{d}: not a directory")
    info = read_checkpoint_info(d)  # config.yaml parses into a TRMConfig; puzzles.json has one name per row
    cfg = info.config
    _check_model_tensors(d / MODEL_FILE, read_safetensors_header(d / MODEL_FILE), cfg)
    table = d / TABLE_FILE
    if cfg.puzzle_emb_ndim > 0:
        entries = read_safetensors_header(table)
        want = [cfg.num_puzzle_identifiers, cfg.puzzle_emb_ndim]
        got = entries.get(TABLE_KEY)
        if got is None or len(entries) != 1:
            raise ArcKitError(f"{table}: expected one tensor '{TABLE_KEY}', found {sorted(entries)[:3]}")
        if got.dtype != "F32" or got.shape != want:
            raise ArcKitError(
                f"{table}: puzzle table is {got.dtype} {got.shape}, config.yaml and puzzles.json need F32 {want} "
                f"({len(info.puzzle_names)} rows x puzzle_emb_ndim {cfg.puzzle_emb_ndim})"
            )
        if info.table_sha256 and table.stat().st_size <= HASH_LIMIT and file_sha256(table) != info.table_sha256:
            raise ArcKitError(f"{table}: its sha256 differs from the one config.yaml records (corrupt or changed)")
    for name in STATE_FILES.values():
        if (d / name).exists():
            read_safetensors_header(d / name)
    if (d / MANIFEST_FILE).exists():
        _check_manifest(d)
    return info
