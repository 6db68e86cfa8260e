"""The one place that turns an architecture config into a model: TRM or HRM by `TRMConfig.kind`."""

from arc_kit.model.config import TRMConfig
from arc_kit.model.hrm import HRM
from arc_kit.model.trm import TRM


def build_model(arch: TRMConfig) -> TRM:
    """A freshly initialised model of `arch` (the global torch RNG seeds its weights): an HRM for kind "hrm",
    else a TRM. HRM subclasses TRM, so everything typed `TRM` (trainer, inference, checkpoints) takes either."""
    return HRM(arch) if arch.kind == "hrm" else TRM(arch)
