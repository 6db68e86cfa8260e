"""Time budget: the run's hard deadline, a watchdog that runs each stage as a child process, and train/infer planning."""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


class Budget:
    """Wall-clock deadline of one invocation. Times are epoch seconds (time.time) so child processes share them."""

    def __init__(self, total_minutes: float, safety_margin_minutes: float = 0.0, start: float | None = None):
        self.start = time.time() if start is None else start
        self.end = self.start + 60.0 * total_minutes                 # the hard limit the user gave
        self.deadline = self.end - 60.0 * safety_margin_minutes       # stages must be over by then

    def left(self, now: float | None = None) -> float:
        return self.deadline - (time.time() if now is None else now)

    def elapsed(self) -> float:
        return time.time() - self.start

    def expired(self) -> bool:
        return self.left() <= 0


@dataclass
class Plan:
    """How the time left is split, decided from measured throughput (seconds; counts after trimming)."""
    train_seconds: float
    infer_seconds: float
    train_steps: int
    ttt_augmentations: int
    infer_views: int
    notes: list[str] = field(default_factory=list)
    expected_train_seconds: float = 0.0  # time the planned steps should take at the measured rate


def plan_run(time_left: float, *, n_test_inputs: int, infer_views: int, infer_seq_per_s: float,
             train_seq_per_s: float, batch_size: int, max_steps: int, n_demo_pairs: int,
             ttt_augmentations: int, train_share: float = 0.8, min_infer_share: float = 0.1,
             min_epochs: float = 2.0, startup_seconds: float = 15.0) -> Plan:
    """Split `time_left` between training and inference.

    Inference needs n_test_inputs * views / rate seconds (+ a child start-up). It gets what it needs,
    at least `min_infer_share` and at most `1 - train_share` of the time; when that is not enough the
    view count is trimmed. Training gets the rest (its deadline), and as many steps as fit, capped by
    `max_steps`. When the steps that fit cannot
    show each training example `min_epochs` times, the TTT augmentation count is trimmed.
    """
    notes = []
    time_left = max(0.0, time_left)
    infer_rate = max(infer_seq_per_s, 1e-9)
    views = max(1, infer_views)
    need = startup_seconds + n_test_inputs * views / infer_rate
    floor = time_left * min_infer_share          # kept for inference even when the estimate says less
    cap = max(time_left * (1.0 - train_share), floor)
    infer_s = max(need, floor)
    if infer_s > cap:
        infer_s = cap
        fit = int((infer_s - startup_seconds) * infer_rate / max(1, n_test_inputs))
        new_views = max(1, min(views, fit))
        notes.append(f"inference views trimmed {views} -> {new_views} (need {need:.0f}s, have {infer_s:.0f}s)")
        views = new_views
    train_s = max(0.0, time_left - infer_s - startup_seconds)
    steps_fit = int(train_s * max(train_seq_per_s, 0.0) / max(1, batch_size))
    steps = min(max_steps, steps_fit)
    if steps < max_steps:
        notes.append(f"training steps limited by time: {steps} of {max_steps}")
    # train_s stays the training deadline; when max_steps ends training sooner, inference simply starts
    # sooner and runs until the end of the budget.
    expected = min(train_s, steps * batch_size / max(train_seq_per_s, 1e-9))
    augs = max(1, ttt_augmentations)
    if n_demo_pairs > 0 and steps > 0:
        epochs = steps * batch_size / (n_demo_pairs * augs)
        if epochs < min_epochs:
            new_augs = max(1, min(augs, int(steps * batch_size / (n_demo_pairs * min_epochs))))
            if new_augs < augs:
                notes.append(f"TTT augmentations trimmed {augs} -> {new_augs} ({epochs:.2f} epochs < {min_epochs})")
                augs = new_augs
    views = min(views, augs + 1)  # views come from the trained puzzles: identity + augs
    return Plan(train_seconds=train_s, infer_seconds=infer_s, train_steps=steps,
                ttt_augmentations=augs, infer_views=views, notes=notes, expected_train_seconds=expected)


def measure_train_rate(model, canvas: int, batch_size: int, device, autocast, repeats: int = 2) -> float:
    """Sequences per second of one training supervision step (forward + backward, no optimiser update)."""
    import contextlib

    import numpy as np
    import torch

    from arc_kit.model.loss import compute_loss
    B, L = batch_size, canvas * canvas
    batch = {"inputs": torch.full((B, L), 2, dtype=torch.int32, device=device),
             "labels": torch.full((B, L), 2, dtype=torch.int32, device=device),
             "puzzle_identifiers": torch.zeros(B, dtype=torch.int32, device=device)}
    model.train()
    ctx = (lambda: torch.autocast("cuda", dtype=autocast)) if autocast is not None else contextlib.nullcontext
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        with ctx():
            carry = model.initial_carry(batch)
            carry, outputs = model(carry, batch)
            loss, _ = compute_loss(outputs, carry.current_data["labels"], carry.halted, carry.steps)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    emb = getattr(model, "puzzle_emb", None)
    if emb is not None:
        emb.local_weights = emb.local_ids = None
    model.eval()
    return B / float(np.median(times[1:]))


# ---------------------------------------------------------------- watchdog

@dataclass
class StageResult:
    name: str
    status: str            # done | failed | timeout | skipped
    seconds: float = 0.0
    returncode: int | None = None
    message: str = ""


def _die_with_parent() -> None:
    """preexec_fn: the kernel SIGKILLs this child when the parent dies (Linux), so a killed run leaves no orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


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
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_child(name: str, cmd: list[str], deadline: float, *, grace_seconds: float = 10.0,
              env: dict | None = None, cwd: str | None = None, poll: Callable[[], None] | None = None,
              poll_every: float = 30.0, log: Callable[[str], None] = lambda s: None,
              output: Callable[[str], None] | None = None) -> StageResult:
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
    pipe = {} if output is None else dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
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
        reader.join(5)   # the last lines; a grandchild holding the pipe open cannot keep us here
    if status is None:
        status = "done" if rc == 0 else "failed"
        message = "" if rc == 0 else f"exit status {rc}"
    return StageResult(name, status, time.time() - t0, rc, message)


def inject_fault(point: str) -> None:
    """Test hook: ARC_KIT_FAULT="train", "infer:hang", "train:nan,infer" ... makes that point fail.

    Kinds: raise (default) -> RuntimeError; oom -> MemoryError; hang -> sleep forever (the watchdog
    must kill it); exit -> the process dies at once; sleepS -> sleep S seconds each time (slow stage).
    "nan" is handled by the training stage itself (the weights become NaN a few steps in).
    """
    spec = os.environ.get("ARC_KIT_FAULT", "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        where, _, kind = item.partition(":")
        if where != point or kind == "nan":
            continue
        if kind in ("", "raise"):
            raise RuntimeError(f"injected fault at {point} (ARC_KIT_FAULT)")
        if kind == "oom":
            raise MemoryError(f"injected out-of-memory at {point} (ARC_KIT_FAULT)")
        if kind == "hang":
            while True:
                time.sleep(3600)
        if kind == "exit":
            os._exit(9)
        if kind.startswith("sleep"):  # slow every call down, e.g. "infer:sleep0.5"
            time.sleep(float(kind[5:] or 1))


def fault_requested(point: str, kind: str) -> bool:
    spec = os.environ.get("ARC_KIT_FAULT", "")
    return f"{point}:{kind}" in [s.strip() for s in spec.split(",")]


def free_cores() -> int:
    """CPU cores this process may use (affinity) minus those other processes keep busy (1-minute load), at least 1.

    On a shared machine more threads than idle cores is much slower than fewer (a TRM step ran ~8x
    slower with 2 threads than with 1 when the other core was busy).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, cores - busy)


def progress(total: int | None, desc: str, enabled: bool = True, unit: str = "it"):
    """A tqdm progress bar on stderr with rate and time left (a no-op object when disabled)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled,
                mininterval=1.0, dynamic_ncols=True, leave=False)


def fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.2f}h"


def ceil_div(a: int, b: int) -> int:
    return -(-a // b) if b else 0


__all__ = ["Budget", "Plan", "plan_run", "StageResult", "run_child", "kill_group", "watch_parent", "free_cores",
           "inject_fault", "fault_requested", "measure_train_rate",
           "progress", "fmt_seconds", "ceil_div"]
