"""Devices: the one rule that turns a device name (auto | cpu | cuda[:N]) into a torch device, with clear errors."""

from arc_kit.base.errors import ArcKitError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | None, where: str = "--device"):
    """`auto` (or None): CUDA when available, else the CPU; `cpu`; `cuda`/`cuda:N` only on a machine with CUDA
    (an ArcKitError naming `where` otherwise, never a torch traceback)."""
    import torch

    name = (name or "auto").strip()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ArcKitError(f"{where} {name}: unknown device (expected auto, cpu or cuda[:N])") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ArcKitError(f"{where} {name}: this machine has no CUDA GPU (use cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ArcKitError(f"{where} {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ArcKitError(f"{where} {name}: unsupported device (expected auto, cpu or cuda[:N])")
    return device


def bf16_supported(device) -> bool:
    """Whether bfloat16 autocast is worth it on `device`: CUDA GPUs with native bfloat16 (not T4-class)."""
    import torch

    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
