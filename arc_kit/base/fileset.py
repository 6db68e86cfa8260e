"""A set of files in a folder replaced as one: a crash at any moment leaves the old set or the new one.

A checkpoint is several files (weights, table, optimiser state, config.yaml) that only make sense together; a
process killed half-way through saving must neither lose the last checkpoint nor leave step 100's weights beside
step 90's optimiser. The folder may hold other files (an `arc-kit train -o DIR` folder has metrics.jsonl), so
the folder itself cannot simply be swapped. Instead, a small journal:

    DIR/.fileset.saving/   the new set is written here; a crash now leaves DIR's old set untouched
    DIR/.fileset.commit/   renamed from .saving once complete (the commit point), with a manifest of its names;
                           its files are then moved into DIR one by one and the folder removed

    DIR/.fileset.done/     the emptied commit folder, renamed before it is removed (a crash while removing it
                           must not look like a commit whose manifest is lost)

`finish_interrupted` rolls a committed set forward; readers call it first, so a crash during the moves costs
nothing: the next read completes the save. Rolling forward holds an exclusive lock on DIR (flock on the folder
itself, where the platform has it), so data-parallel ranks that resume together finish the save once.
"""

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from arc_kit.base.errors import ArcKitError

SAVING, COMMIT, DONE, MANIFEST = ".fileset.saving", ".fileset.commit", ".fileset.done", ".fileset.json"

try:
    import fcntl
except ImportError:  # Windows: no flock; a single process per folder is assumed there
    fcntl = None  # type: ignore[assignment]


def _fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
    """Hold an exclusive lock on folder `d` (flock on the folder's own descriptor: no lock file left behind)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        fd = -1
    try:
        if fd >= 0 and fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # closing the descriptor releases the lock


def _roll_forward(d: Path, owned: Sequence[str], last: str) -> None:
    """Move a committed set's files into `d` (the caller holds the lock)."""
    commit = d / COMMIT
    shutil.rmtree(d / DONE, ignore_errors=True)  # a crash while removing a finished commit folder
    if not commit.is_dir():
        return
    if not (commit / MANIFEST).is_file():
        # The manifest is written before the commit rename, so a commit folder without one is a finished
        # save whose removal an older kit had begun: its files are in `d` already.
        shutil.rmtree(commit)
        return
    names = json.loads((commit / MANIFEST).read_text())
    if last not in names or (commit / last).exists():  # else `last` moved in, after every other file: only
        # the removal was cut short
        (d / last).unlink(missing_ok=True)  # until the set is whole, it does not look whole
        for name in owned:
            if name not in names:
                (d / name).unlink(missing_ok=True)  # e.g. an optimizer state the new set does not have
        for name in sorted(names, key=lambda n: n == last):
            if (commit / name).exists():  # moved already by an earlier, interrupted attempt
                os.replace(commit / name, d / name)  # a hard link onto its own file stays: removed below
        _fsync_dir(d)
    os.replace(commit, d / DONE)
    shutil.rmtree(d / DONE)


def finish_interrupted(directory: str | Path, owned: Sequence[str], last: str) -> None:
    """Complete a save that committed but was interrupted while moving its files in (idempotent). `owned`: the
    names the set manages (those the new set lacks are removed); `last`: the file moved last (its presence
    marks the set complete)."""
    d = Path(directory)
    if not (d / COMMIT).is_dir() and not (d / DONE).is_dir():
        return  # the common case: nothing to finish, no lock, works on read-only folders
    try:
        with _locked(d):
            _roll_forward(d, owned, last)
    except (OSError, ValueError) as e:
        raise ArcKitError(f"{d}: cannot finish an interrupted save in {COMMIT}: {e}") from None


def carry_over(path: Path, staging: Path) -> None:
    """Keep an existing file of the set in the new one (a hard link: no copy of a large file where possible)."""
    if not path.is_file():
        return
    try:
        os.link(path, staging / path.name)
    except OSError:
        shutil.copy2(path, staging / path.name)


@contextlib.contextmanager
def file_set(directory: str | Path, owned: Sequence[str], last: str) -> Iterator[Path]:
    """A folder to write a new set of files into; when the block succeeds they replace the set in `directory`."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        finish_interrupted(d, owned, last)
        staging = d / SAVING
        shutil.rmtree(staging, ignore_errors=True)  # a save that crashed before its commit point
        staging.mkdir()
    except OSError as e:
        raise ArcKitError(f"{d}: cannot write: {e.strerror or e}") from None
    try:
        yield staging
        names = sorted(os.listdir(staging))
        unknown = [n for n in names if n not in owned]
        if unknown:
            raise ValueError(f"{d}: files outside the set were written: {unknown}")
        with open(staging / MANIFEST, "w") as f:  # durable before the commit: it is what the roll-forward reads
            json.dump(names, f)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(staging)
        with _locked(d):
            os.replace(staging, d / COMMIT)  # the commit point
            _fsync_dir(d)
            _roll_forward(d, owned, last)
    except OSError as e:  # a full disk, a folder gone read-only: the previous set is intact
        shutil.rmtree(staging, ignore_errors=True)
        raise ArcKitError(f"{d}: cannot save: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
