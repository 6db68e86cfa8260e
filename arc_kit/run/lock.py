"""The run directory's lock: one arc-kit command at a time writes into a directory (flock on OUT/.lock)."""

# Every command that writes into a run directory (`arc-kit run`, `predict --out`, `revote -o`, `kaggle
# simulate`) holds an exclusive fcntl.flock on OUT/.lock for its whole life; the file holds JSON naming the
# holder (pid, host, start time, command) so a refused second command can say who has the directory.
# The kernel drops a flock when its process dies, however it dies: a lock file whose flock can be taken
# was left by a process that is gone, and is taken over (with a notice). A clean release unlinks the file,
# so a leftover file always means a crash. docs/run-directory.md says what happens on NFS and macOS.
#
# The run's stage processes run under their parent's lock: the holder puts a random token in the
# environment (LOCK_ENV) that the processes it starts inherit, and a stage whose token matches the lock
# file's, while that flock is still held, is recognised as the holder's own (`stage_lock`).

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from arc_kit.base.errors import ArcKitError
from arc_kit.run.directory import LOCK_FILE

LOCK_ENV = "ARC_KIT_RUN_LOCK"  # the token of the lock held by the process that started this one


@dataclass
class Holder:
    """What a lock file says about the process that holds (or held) the lock."""

    pid: int
    host: str
    started: float  # epoch seconds
    command: str  # e.g. "arc-kit run"
    token: str = ""  # inherited by the holder's child processes through LOCK_ENV

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"{self.command}, pid {self.pid} on {self.host}, started {when}"


def _parse(raw: bytes) -> Holder | None:
    try:
        d = json.loads(raw)
        return Holder(int(d["pid"]), str(d["host"]), float(d["started"]), str(d["command"]), str(d.get("token", "")))
    except (ValueError, KeyError, TypeError):
        return None  # empty (a holder between open and write) or not ours


def _read(fd: int) -> bytes:
    return os.pread(fd, 1 << 16, 0)


def _same_file(fd: int, path: Path) -> bool:
    """Whether `fd` is still the file at `path`: a releasing holder unlinks it, and a flock on an unlinked
    file would lock nothing that the next command sees."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _notice(msg: str) -> None:
    print(f"notice: {msg}", file=sys.stderr, flush=True)


def read_holder(out: str | Path) -> Holder | None:
    """The holder named in OUT's lock file (None: no lock file, or one without a holder)."""
    try:
        return _parse((Path(out) / LOCK_FILE).read_bytes())
    except OSError:
        return None


def is_locked(out: str | Path) -> bool:
    """Whether a live process holds OUT's lock (tested by trying to take it, without keeping it)."""
    try:
        fd = os.open(Path(out) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        # shared: it conflicts with the holder's exclusive lock, and NFS (where flock is a POSIX lock) allows
        # it on a read-only descriptor
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False  # a filesystem without flock: nobody can hold it
    finally:
        os.close(fd)  # also drops the flock if we got it


class RunLock:
    """An exclusive lock on a run directory for one command: `with RunLock(out, "arc-kit run"): ...`.

    Entering makes OUT (and missing parents) and takes the lock, or raises ArcKitError naming OUT and the
    holder, having touched nothing. Leaving unlinks the lock file, releases the lock and removes the
    directories entering made when they are still empty (a command that failed before writing leaves nothing)."""

    def __init__(self, out: str | Path, command: str):
        self.out, self.command = Path(out), command
        self.path = self.out / LOCK_FILE
        self.fd: int | None = None
        self.holder: Holder | None = None  # ours, once taken
        self.previous: Holder | None = None  # a gone process's holder, when its lock was taken over
        self._made: list[Path] = []  # directories this lock created, deepest first
        self._env_before: str | None = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> "RunLock":
        if self.out.exists() and not self.out.is_dir():
            raise ArcKitError(f"{self.out}: exists and is not a directory")
        made = [p for p in (self.out, *self.out.parents) if not p.exists()]
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ArcKitError(f"{self.out}: cannot create the directory: {e.strerror or e}") from None
        self._made = made
        try:
            self._take()
        except BaseException:
            self._remove_made()
            raise
        return self

    def _take(self) -> None:
        for _ in range(20):  # each retry means a holder released between our open and our flock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise ArcKitError(f"{self.path}: cannot open the lock file: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = _parse(_read(fd))
                os.close(fd)
                who = other.describe() if other else "holder unknown: its lock file is being written"
                raise ArcKitError(
                    f"{self.out}: in use by another arc-kit command ({who}); "
                    "wait for it to end, or choose another directory"
                ) from None
            except OSError as e:  # ENOLCK, EOPNOTSUPP: a filesystem without flock (some NFS and FUSE mounts)
                os.close(fd)
                _notice(f"{self.out}: cannot be locked ({e.strerror}); running unlocked: start no second command here")
                return
            if _same_file(fd, self.path):
                break
            os.close(fd)
        else:
            raise ArcKitError(f"{self.path}: the lock file keeps being replaced; is another command starting here?")
        raw = _read(fd)
        if raw.strip():  # a clean release unlinks the file: this one was left by a process that is gone
            self.previous = _parse(raw)
            who = self.previous.describe() if self.previous else "holder unknown"
            _notice(f"{self.out}: taking over the lock left by a process that is no longer running ({who})")
        self.holder = Holder(os.getpid(), socket.gethostname(), time.time(), self.command, uuid.uuid4().hex)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(self.holder)) + "\n").encode(), 0)
        self.fd = fd
        self._env_before = os.environ.get(LOCK_ENV)
        os.environ[LOCK_ENV] = self.holder.token  # the processes we start run under this lock

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                if _same_file(self.fd, self.path):
                    self.path.unlink()  # before the flock goes: the next command makes a fresh file
            os.close(self.fd)
            self.fd = None
            if self._env_before is None:
                os.environ.pop(LOCK_ENV, None)
            else:
                os.environ[LOCK_ENV] = self._env_before
        self._remove_made()

    def _remove_made(self) -> None:
        for d in self._made:
            try:
                d.rmdir()  # only when empty: whatever the command wrote stays
            except OSError:
                break
        self._made = []


def stage_lock(out: str | Path, stage: str) -> RunLock | None:
    """In a stage process: None when it runs under the lock of the command that started it (the token in
    LOCK_ENV is the lock file's, and that lock is held); else a lock of its own (a stage started by hand), or
    ArcKitError when another command holds OUT or the parent that started it is gone."""
    token = os.environ.get(LOCK_ENV)
    holder = read_holder(out)
    if token and holder is not None and holder.token == token:
        if is_locked(out):
            return None
        raise ArcKitError(f"{out}: the command that started this stage ({holder.describe()}) is gone")
    if int(os.environ.get("RANK", "0")) != 0:  # a launcher's other ranks: rank 0 holds the lock for all
        return None
    return RunLock(out, f"arc-kit stage {stage}").acquire()
