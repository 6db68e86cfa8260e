"""Training snapshots: saved by the training stage at fractions of its planned steps, run by the inference stage."""

import logging
import os
import shutil
from pathlib import Path

from arc_kit.run.directory import SNAPSHOTS_DIR

MODEL_FILE = "model.safetensors"  # a snapshot directory is complete once this is in place (saved, then renamed)


def snapshot_dir(out: Path, fraction: float) -> Path:
    """OUT/ttt/snapshots/<fraction>/: the same checkpoint layout as OUT/ttt/model (model only, no training state)."""
    return out / SNAPSHOTS_DIR / f"{fraction:g}"


def infer_passes(cfg) -> float:
    """Model passes per view the plan must reserve time for: one per snapshot, two with consistency scoring."""
    from arc_kit.consistency import consistency_wanted

    return len(cfg.inference.snapshots) * (2.0 if consistency_wanted(cfg) else 1.0)


class SnapshotSaver:
    """Called by the training loop after each re-plan: saves the (EMA) model into snapshot_dir(fraction) when the
    steps done pass `fraction` of the planned total (the total follows the time left, so a deadline-bound run
    reaches every fraction). A snapshot saved before (resumed run) is not saved again."""

    def __init__(self, out: Path, fractions: list[float], is_main: bool, log: logging.Logger):
        self.out, self.is_main, self.log = out, is_main, log
        self.pending = sorted(f for f in fractions if f < 1.0 and not (snapshot_dir(out, f) / MODEL_FILE).is_file())
        self.saved: list[float] = []

    def __call__(self, trainer, steps_done: int, planned_total: int) -> None:
        progress = steps_done / max(1, planned_total)
        while self.pending and progress >= self.pending[0]:
            fraction = self.pending.pop(0)
            if self.is_main:
                self._save(trainer, fraction)
            self.saved.append(fraction)
            self.log.info(f"train: snapshot {fraction:g} saved at step {steps_done} of ~{planned_total}")

    def _save(self, trainer, fraction: float) -> None:
        from arc_kit.model.checkpoint import save_checkpoint

        final = snapshot_dir(self.out, fraction)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_checkpoint(tmp, trainer.ema_model(), trainer.data.puzzle_names)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # a crash leaves a .tmp folder, never a half-written snapshot

    def finish(self) -> list[float]:
        """Fractions training never reached (it stopped early): logged; their views are not run."""
        for f in self.pending:
            self.log.info(f"train: snapshot {f:g} not reached before training stopped")
        return list(self.pending)


def snapshot_sources(out: Path, fractions: list[float], final: Path | None, log: logging.Logger):
    """[(fraction, model directory)] to run, the final model (1.0) first, then earlier snapshots latest first: a
    deadline cuts the least trained ones. A fraction whose snapshot was never saved is logged and left out."""
    sources: list[tuple[float, Path]] = []
    for f in sorted(fractions, reverse=True):
        src = final if f == 1.0 else snapshot_dir(out, f)
        if src is None or not (f == 1.0 or (src / MODEL_FILE).is_file()):
            if f != 1.0:
                log.info(f"infer: snapshot {f:g}: no model saved at {src}: skipped")
            continue
        sources.append((f, src))
    return sources
