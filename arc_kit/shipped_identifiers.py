"""The published checkpoints' puzzle-identifier lists, shipped compactly encoded as package data."""

# A published TRM checkpoint's table rows are named by the reference builder's identifier list
# (identifiers.py replays that builder, but only from its input files, ConceptARC among them, which
# users do not have). The two lists ship with the kit instead. Names are `<blank>`, `TASK` and
# `TASK|||t{k}|||0{perm of 1..9}`, so each row is (task, transform, permutation):
#   tasks        [T] str      task ids in order of first appearance
#   task_index   [N-1] uint16/uint32  row r+1 -> task
#   transform    [N-1] uint8  dihedral k, or PLAIN for the un-augmented `TASK`
#   perm_low/perm_high        rank of the colour permutation among the 9! orderings of 1..9
#                             (lexicographic), split 16 + 8 bits so zlib sees low-entropy planes
#   digest       sha256 of the decoded names joined by "\n": the loader checks it
# The random draws make ~21.5 bits a row the floor; np.savez_compressed gets ~22 (2.5 + 3.3 MB).

import hashlib
import itertools
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from arc_kit.augment import SEP
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_open
from arc_kit.identifiers import BLANK, read_identifiers

FORMAT = "arc-kit-identifiers/1"
PLAIN = 8
DATA_DIR = Path(__file__).resolve().parent / "identifier_data"
SHIPPED = {"arc1": "arc1.npz", "arc2": "arc2.npz"}  # names of identifiers.RECIPES


@lru_cache(maxsize=1)
def _perm_strings() -> list[str]:
    """rank -> the 10-digit permutation string (`0` then an ordering of 1..9), lexicographic ranks."""
    return ["0" + "".join(p) for p in itertools.permutations("123456789")]


def _digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()


def encode_identifiers(names: list[str]) -> dict[str, np.ndarray]:
    """The arrays of the compact form of an identifier list (row 0 must be `<blank>`)."""
    if not names or names[0] != BLANK:
        raise ArcKitError(f"identifier list: row 0 must be {BLANK!r}")
    rank = {p: i for i, p in enumerate(_perm_strings())}
    tasks: dict[str, int] = {}
    n = len(names) - 1
    task_index = np.empty(n, np.uint32)
    transform = np.empty(n, np.uint8)
    perm = np.zeros(n, np.uint32)
    for i, name in enumerate(names[1:]):
        parts = name.split(SEP)
        task_index[i] = tasks.setdefault(parts[0], len(tasks))
        if len(parts) == 1 and parts[0]:
            transform[i] = PLAIN
        elif (
            len(parts) == 3
            and len(parts[1]) == 2
            and parts[1][0] == "t"
            and parts[1][1] in "01234567"
            and parts[2] in rank
        ):
            transform[i], perm[i] = int(parts[1][1]), rank[parts[2]]
        else:
            raise ArcKitError(f"identifier list: row {i + 1} {name!r} is not TASK or TASK|||t{{k}}|||{{perm}}")
    index_type = np.uint16 if len(tasks) <= 1 << 16 else np.uint32
    return {
        "format": np.array(FORMAT),
        "tasks": np.array(list(tasks)),
        "task_index": task_index.astype(index_type),
        "transform": transform,
        "perm_low": (perm & 0xFFFF).astype(np.uint16),
        "perm_high": (perm >> 16).astype(np.uint8),
        "digest": np.array(_digest(names)),
    }


def decode_identifiers(arrays, source: str = "identifier list") -> list[str]:
    """The exact name list back from encode_identifiers' arrays; the digest is checked."""
    try:
        if str(arrays["format"]) != FORMAT:
            raise ArcKitError(f"{source}: unknown format {str(arrays['format'])!r} (expected {FORMAT})")
        tasks = arrays["tasks"].tolist()
        task_index, transform = arrays["task_index"].tolist(), arrays["transform"].tolist()
        perm = (arrays["perm_high"].astype(np.uint32) << 16 | arrays["perm_low"]).tolist()
        digest = str(arrays["digest"])
    except KeyError as e:
        raise ArcKitError(f"{source}: missing array {e}") from None
    perms = _perm_strings()
    names = [BLANK]
    names += [
        tasks[ti] if t == PLAIN else f"{tasks[ti]}{SEP}t{t}{SEP}{perms[p]}"
        for ti, t, p in zip(task_index, transform, perm, strict=False)
    ]
    if _digest(names) != digest:
        raise ArcKitError(f"{source}: decoded list does not match its digest (corrupt file)")
    return names


def write_identifier_file(path: str | Path, names: list[str]) -> None:
    save: Callable[..., None] = np.savez_compressed  # its stub types **arrays as its keyword options
    with atomic_open(path) as f:
        save(f, **encode_identifiers(names))


def read_identifier_file(path: str | Path) -> list[str]:
    """A list written by write_identifier_file (no pickles: allow_pickle=False)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return decode_identifiers(z, str(path))
    except FileNotFoundError:
        raise ArcKitError(f"{path}: identifier file not found") from None
    except (OSError, ValueError) as e:
        raise ArcKitError(f"{path}: not a compact identifier file ({' '.join(str(e).split())[:120]})") from None


def shipped_identifiers(name: str) -> list[str]:
    """The identifier list of a published build (`arc1`: 876,406 names, `arc2`: 1,191,730)."""
    if name not in SHIPPED:
        raise ArcKitError(f"{name}: no shipped identifier list (shipped: {', '.join(SHIPPED)})")
    return read_identifier_file(DATA_DIR / SHIPPED[name])


def load_identifier_list(spec: str) -> list[str]:
    """A shipped list's name (`arc1`, `arc2`), a compact .npz, or an identifiers.json[.gz] path."""
    if spec in SHIPPED:
        return shipped_identifiers(spec)
    if spec.endswith(".npz"):
        return read_identifier_file(spec)
    return read_identifiers(spec)


if __name__ == "__main__":  # regenerate: python -m arc_kit.shipped_identifiers IN.json[.gz] OUT.npz
    from arc_kit.identifiers import read_identifiers

    src, dst = sys.argv[1:3]
    ids = read_identifiers(src)
    write_identifier_file(dst, ids)
    assert read_identifier_file(dst) == ids
    print(f"{src}: {len(ids):,} names -> {dst} ({Path(dst).stat().st_size:,} bytes)", file=sys.stderr)
