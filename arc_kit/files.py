"""Small file helpers shared by every stage: atomic writes and JSON reads with one-line errors."""

import gzip
import contextlib
import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from arc_kit.errors import ArcKitError


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write (or stream) into that replaces `path` only once the block succeeds:
    readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; give it the permissions a plain open() would (bundles, datasets).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see atomic_open)."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def open_read(path: str | Path, what: str = "file"):
    """Open `path` for binary reading; a missing file, a directory or an unreadable file becomes an
    ArcKitError naming it."""
    path = Path(path)
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise ArcKitError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ArcKitError(f"{path}: expected a {what}, found a directory") from None
    except OSError as e:
        raise ArcKitError(f"{path}: cannot read {what}: {e.strerror or e}") from None


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file (gzip-compressed when it ends in .gz); any failure becomes an ArcKitError naming
    the file (and line/column)."""
    path = Path(path)
    with open_read(path, what) as f:
        try:
            data = f.read()
            text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")
        except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:  # gzip.BadGzipFile is an OSError
            raise ArcKitError(f"{path}: cannot read {what}: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ArcKitError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
