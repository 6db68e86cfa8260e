"""Watchdog: each stage runs as a child process in its own process group, killed at its deadline."""

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class StageResult:
    name: str
    status: str  # done | failed | timeout | skipped
    seconds: float = 0.0
    returncode: int | None = None
    message: str = ""


def _die_with_parent() -> None:
    """preexec_fn: the kernel SIGKILLs this child when the parent dies (Linux), so a killed run leaves no orphans."""
    with contextlib.suppress(Exception):  # not Linux, or no libc: the watch_parent thread still covers it
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def watch_parent(interval: float = 1.0) -> None:
    """In a child: exit as soon as the parent is gone (covers platforms and launchers without PDEATHSIG)."""
    parent = os.getppid()

    def loop():
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=loop, daemon=True, name="watch-parent").start()


def kill_group(proc: subprocess.Popen, sig: int) -> None:
    """Send `sig` to the process group of `proc` (started with start_new_session=True); gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def watch_child(
    name: str,
    cmd: list[str],
    deadline: float,
    *,
    grace_seconds: float = 10.0,
    env: dict | None = None,
    cwd: str | None = None,
    poll: Callable[[], None] | None = None,
    poll_every: float = 30.0,
    log: Callable[[str], None] = lambda s: None,
    output: Callable[[str], None] | None = None,
) -> StageResult:
    """Run `cmd` in its own process group and own its deadline (epoch seconds).

    At the deadline the group gets SIGTERM, and SIGKILL `grace_seconds` later: a stuck GPU call or a
    step that never returns cannot overrun the budget. `poll` runs every `poll_every` seconds while the
    child works (the pipeline re-votes submission.json there); its exceptions are logged, never raised.
    `output`: when given, gets each line the child prints (stdout and stderr, newline stripped) from a
    reader thread, so a silent child cannot hold up the deadline; else the child shares our stdout/stderr.
    """
    t0 = time.time()
    if time.time() >= deadline:
        return StageResult(name, "skipped", 0.0, None, "no time left")
    pipe: dict[str, Any] = (
        {} if output is None else dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    )
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent, **pipe)
    reader = None
    if output is not None:

        def relay():
            for line in proc.stdout:
                output(line.rstrip("\n"))

        reader = threading.Thread(target=relay, daemon=True, name=f"{name}-output")
        reader.start()
    last_poll = time.time()
    status, message = None, ""
    try:
        while True:
            try:
                rc = proc.wait(timeout=max(0.05, min(1.0, deadline - time.time())))
                break
            except subprocess.TimeoutExpired:
                pass
            if time.time() >= deadline:
                log(f"{name}: deadline reached, stopping the stage (SIGTERM)")
                kill_group(proc, signal.SIGTERM)
                try:
                    rc = proc.wait(timeout=grace_seconds)
                except subprocess.TimeoutExpired:
                    log(f"{name}: still running {grace_seconds:.0f}s after SIGTERM, killing it (SIGKILL)")
                    kill_group(proc, signal.SIGKILL)
                    rc = proc.wait()
                status, message = "timeout", "stopped at its deadline"
                break
            if poll is not None and time.time() - last_poll >= poll_every:
                last_poll = time.time()
                try:
                    poll()
                except Exception as e:  # the poll (re-vote) must never take the watchdog down
                    log(f"{name}: periodic update failed: {type(e).__name__}: {e}")
    finally:
        if proc.poll() is None:  # an exception or Ctrl-C in the parent: never leave the child behind
            kill_group(proc, signal.SIGKILL)
            proc.wait()
    # Whatever the child did, its whole process group goes (stray grandchildren of a launcher).
    kill_group(proc, signal.SIGKILL)
    if reader is not None:
        reader.join(5)  # the last lines; a grandchild holding the pipe open cannot keep us here
    if status is None:
        status = "done" if rc == 0 else "failed"
        message = "" if rc == 0 else f"exit status {rc}"
    return StageResult(name, status, time.time() - t0, rc, message)
