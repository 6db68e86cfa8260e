"""Hardware of a stage process: free cores, torch threads, device and autocast, and a description for reports."""

import os
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
