"""Small file helpers shared by every stage: atomic writes and JSON reads with one-line errors."""

import contextlib
import gzip
import json
import os
import stat
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from arc_kit.base.errors import ArcKitError


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write (or stream) into that replaces `path` only once the block succeeds:
    readers see the old file or the new one, never half of one."""
    path = Path(path)
    check_writable_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # read-only folder, no space, a parent that is a file: the user's setup, not a bug
        raise ArcKitError(f"{path}: cannot write: {e.strerror or e}") from None
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


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_read(path: str | Path, what: str = "file") -> BinaryIO:
    """Open `path` for binary reading; a missing file, a directory, a FIFO or device (which would block or
    never end) or an unreadable file becomes an ArcKitError naming it."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None  # the open below reports what is wrong
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise ArcKitError(f"{path}: expected {_article(what)} {what}, found {_file_type(mode)}")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise ArcKitError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ArcKitError(f"{path}: expected {_article(what)} {what}, found a directory") from None
    except NotADirectoryError:
        raise ArcKitError(f"{path}: {what} not found (a parent is a file)") from None
    except OSError as e:
        raise ArcKitError(f"{path}: cannot read {what}: {e.strerror or e}") from None


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file's content, with open_read's one-line errors."""
    with open_read(path, what) as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ArcKitError(f"{path}: cannot read {what}: not UTF-8 text") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a key given twice is an error (json's default keeps the last one silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return obj


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def parse_json_text(text: str, where: str) -> Any:
    """json.loads with one-line errors prefixed by `where`: malformed JSON (line, column), nesting deeper
    than the parser can follow, and duplicate object keys."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise ArcKitError(f"{where}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except _DuplicateKey as e:
        raise ArcKitError(f"{where}: duplicate key {e.key!r} in a JSON object (each key may appear once)") from None
    except RecursionError:
        raise ArcKitError(f"{where}: JSON nested too deeply to read") from None


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
    return parse_json_text(text, str(path))


# -----------------------------------------------------------------------------
# Output paths: checked before any work, so a bad one costs nothing and never replaces an input.


def path_exists(path: str | Path) -> bool:
    """Path.exists() that answers False for a name the system cannot even look up (too long, a loop)."""
    try:
        return Path(path).exists()
    except OSError:
        return False


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable_file(path: str | Path, option: str = "") -> None:
    """An output file must not be a directory or sit under a file."""
    path = Path(path)
    name = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise ArcKitError(f"{name}: is a directory, expected a file name")
    anchor = _nearest_existing(path.parent)
    if anchor.exists() and not anchor.is_dir():
        raise ArcKitError(f"{name}: cannot write under {anchor}, which is a file")


def check_writable_dir(path: str | Path, option: str = "") -> None:
    """An output folder must not be a file or sit under a file."""
    path = Path(path)
    name = f"{option} {path}" if option else str(path)
    anchor = _nearest_existing(path)
    if anchor.exists() and not anchor.is_dir():
        what = "is a file" if anchor == path else f"sits under {anchor}, which is a file"
        raise ArcKitError(f"{name}: {what}, expected a folder")


def same_path(a: str | Path, b: str | Path) -> bool:
    """The same file or folder after resolving links (and for paths that do not exist yet, the same name)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def is_within(path: str | Path, folder: str | Path) -> bool:
    """`path` is `folder` or lies inside it, after resolving links."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def refuse_input_as_output(output: str | Path, inputs: Iterable[str | Path | None], option: str = "-o") -> None:
    """Writing `output` must not replace one of the command's inputs (same file after resolving links)."""
    for inp in inputs:
        if inp is not None and str(inp) != "" and same_path(output, inp):
            raise ArcKitError(f"{option} {output}: is also an input ({inp}); choose another output path")


def first_line(path: str | Path) -> bytes:
    """The first line of a file (at most 1 MiB): enough to tell a submission from a predictions file."""
    with open_read(path, "submission or predictions file") as f:
        return f.readline(1 << 20)
