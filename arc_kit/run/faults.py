"""Fault injection for tests: ARC_KIT_FAULT makes a named point of a stage raise, hang, exit or slow down."""

import os
import time


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
