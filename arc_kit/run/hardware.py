"""Hardware of a stage process: free cores, torch threads, device and autocast, and a description for reports."""

import os
import time
from collections.abc import Callable

from arc_kit.model.device import bf16_supported, resolve_device


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


def setup_torch(cfg, world: int, accelerator=None):
    """Threads, device and autocast dtype of this process. The one precision rule, for training and inference:
    bfloat16 autocast on a CUDA device that supports it, float32 everywhere else."""
    import torch

    threads = cfg.runtime.threads or max(1, free_cores() // max(1, world))
    torch.set_num_threads(threads)
    device = accelerator.device if accelerator is not None else resolve_device(cfg.runtime.device, "runtime.device")
    autocast = torch.bfloat16 if cfg.runtime.precision == "bfloat16" and bf16_supported(device) else None
    return device, autocast, threads


def hardware(device, threads: int) -> dict:
    """What a report says about the machine a stage ran on."""
    import platform

    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_cores": os.cpu_count(),
        "cores_free": free_cores(),
        "threads": threads,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpus"] = torch.cuda.device_count()
    return info


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def choose_threads(measure: Callable[[], float], candidates: list[int]) -> tuple[int, dict[int, float]]:
    """Time `measure` (a rate: higher is better) under each torch thread count and keep the fastest (fewer on a tie).

    The start-up guess from the load average lags: right after another heavy process ends it still counts a core
    as busy, and on a busy core two threads run a TRM step several times slower than one. Measuring decides."""
    import torch

    rates: dict[int, float] = {}
    for n in candidates:
        torch.set_num_threads(n)
        rates[n] = measure()
    best = max(rates, key=lambda n: (rates[n], -n))
    torch.set_num_threads(best)
    return best, rates


class ThreadRetuner:
    """Re-checks the torch thread count while a CPU run trains, on its own step times (no extra steps).

    The start-up probe picks the fastest count for the machine as it was then. When the step time later rises
    well above what that count gave (another process took a core), or every `recheck_seconds` while fewer than
    the most threads are in use (a core may have come back), each candidate count runs a short trial window of
    real training steps and the fastest is kept. Call it before every step with the steps' seconds so far."""

    def __init__(
        self,
        candidates: list[int],
        current: int,
        window: int = 20,
        trial: int = 8,
        slower: float = 1.3,
        recheck_seconds: float = 90.0,
        log: Callable[[str], None] | None = None,
    ):
        self.candidates = sorted(set(candidates))
        self.current = current
        self.window, self.trial, self.slower, self.recheck_seconds = window, trial, slower, recheck_seconds
        self.log = log
        self.baseline: float | None = None  # median step seconds of the chosen count when it was chosen
        self.trials: list[tuple[int, int]] = []  # (threads, first step index) of the trial in progress
        self.mark = 0  # step index where the current watch window started
        self.last_check = time.monotonic()
        self.changes: list[dict] = []  # every re-check: when, why, the trial medians and the choice

    @staticmethod
    def _median(xs: list[float]) -> float:
        s = sorted(xs)
        return s[len(s) // 2]

    def _set(self, n: int) -> None:
        import torch

        torch.set_num_threads(n)

    def __call__(self, step_seconds: list[float]) -> None:
        n_steps = len(step_seconds)
        if self.trials:
            threads, start = self.trials[-1]
            if n_steps - start < self.trial:
                return
            done = len(self.trials)
            if done < len(self.candidates):  # next candidate's window
                self.trials.append((self.candidates[done], n_steps))
                self._set(self.candidates[done])
                return
            medians = {
                t: self._median(step_seconds[s + 1 : s + self.trial] or step_seconds[s : s + self.trial])
                for t, s in self.trials
            }
            best = min(medians, key=lambda t: (medians[t], t))  # the first step after a switch is skipped
            self.changes[-1].update(trial_seconds=medians, threads=best)
            if self.log and best != self.current:
                self.log(f"train: threads {self.current} -> {best} (re-check: {self.changes[-1]['why']})")
            self.current, self.baseline, self.trials = best, medians[best], []
            self._set(best)
            self.mark, self.last_check = n_steps, time.monotonic()
            return
        if n_steps - self.mark < self.window:
            return
        recent = self._median(step_seconds[-self.window :])
        self.mark = n_steps
        if self.baseline is None:
            self.baseline = recent
            return
        why = None
        if recent > self.slower * self.baseline:
            why = f"step {recent * 1e3:.0f} ms vs {self.baseline * 1e3:.0f} ms"
        elif self.current < self.candidates[-1] and time.monotonic() - self.last_check > self.recheck_seconds:
            why = "periodic, fewer threads than cores"
        if why is None:
            return
        self.changes.append({"step": n_steps, "why": why})
        self.trials = [(self.candidates[0], n_steps)]
        self._set(self.candidates[0])
