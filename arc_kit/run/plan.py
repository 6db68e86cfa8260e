"""Planning: the run's hard deadline and the split of the time left between training and inference."""

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from arc_kit.base.files import read_json


class Budget:
    """Wall-clock deadline of one invocation. Times are epoch seconds (time.time) so child processes share them."""

    def __init__(self, total_minutes: float, safety_margin_minutes: float = 0.0, start: float | None = None):
        self.start = time.time() if start is None else start
        self.end = self.start + 60.0 * total_minutes  # the hard limit the user gave
        self.deadline = self.end - 60.0 * safety_margin_minutes  # stages must be over by then

    def left(self, now: float | None = None) -> float:
        return self.deadline - (time.time() if now is None else now)

    def elapsed(self) -> float:
        return time.time() - self.start

    def expired(self) -> bool:
        return self.left() <= 0


@dataclass
class Plan:
    """How the time left is split, decided from measured throughput (seconds; counts after trimming)."""

    train_seconds: float = 0.0
    infer_seconds: float = 0.0
    train_steps: int = 0
    ttt_augmentations: int = 0
    infer_views: int = 0
    notes: list[str] = field(default_factory=list)
    expected_train_seconds: float = 0.0  # time the planned steps should take at the measured rate
    # What the training stage measured and decided around the split; saved as OUT/plan.json (these keys).
    created: float = 0.0  # epoch seconds
    canvas: int = 0  # the square side the probe measured (with crops: of the mean bucket length)
    crops: bool = False  # the model runs on per-task crops
    train_seq_per_s: float = 0.0  # measured, all processes together
    infer_seq_per_s: float = 0.0
    train_until: float = 0.0  # epoch seconds: the training deadline of this invocation
    threads: int = 0  # torch threads per process (the measured choice on a CPU)
    thread_rates: dict[str, float] = field(default_factory=dict)  # threads -> measured train sequences/s

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Plan":
        """A saved plan.json (keys this version does not know are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def read_plan(path: Path) -> Plan | None:
    """OUT/plan.json, or None when training has not planned (yet)."""
    return Plan.from_json(read_json(path, "plan")) if path.is_file() else None


def plan_run(
    time_left: float,
    *,
    n_test_inputs: int,
    infer_views: int,
    infer_seq_per_s: float,
    train_seq_per_s: float,
    batch_size: int,
    max_steps: int,
    n_demo_pairs: int,
    ttt_augmentations: int,
    train_share: float = 0.8,
    min_infer_share: float = 0.1,
    min_epochs: float = 2.0,
    startup_seconds: float = 15.0,
    infer_passes: float = 1.0,
) -> Plan:
    """Split `time_left` between training and inference.

    Inference needs n_test_inputs * views / rate seconds (+ a child start-up). It gets what it needs,
    at least `min_infer_share` and at most `1 - train_share` of the time; when that is not enough the
    view count is trimmed. Training gets the rest (its deadline), and as many steps as fit (capped by
    `max_steps` when > 0; 0: no cap). When the steps that fit cannot
    show each training example `min_epochs` times, the TTT augmentation count is trimmed.
    `infer_passes`: model passes per view (one per training snapshot, doubled by consistency scoring).
    """
    notes = []
    time_left = max(0.0, time_left)
    infer_rate = max(infer_seq_per_s, 1e-9)
    views = max(1, infer_views)
    passes = max(1.0, infer_passes)
    need = startup_seconds + n_test_inputs * views * passes / infer_rate
    floor = time_left * min_infer_share  # kept for inference even when the estimate says less
    cap = max(time_left * (1.0 - train_share), floor)
    infer_s = max(need, floor)
    if infer_s > cap:
        infer_s = cap
        fit = int((infer_s - startup_seconds) * infer_rate / (max(1, n_test_inputs) * passes))
        new_views = max(1, min(views, fit))
        notes.append(f"inference views trimmed {views} -> {new_views} (need {need:.0f}s, have {infer_s:.0f}s)")
        views = new_views
    train_s = max(0.0, time_left - infer_s - startup_seconds)
    steps_fit = int(train_s * max(train_seq_per_s, 0.0) / max(1, batch_size))
    steps = min(max_steps, steps_fit) if max_steps > 0 else steps_fit
    if max_steps > 0 and steps < max_steps:
        notes.append(f"training steps limited by time: {steps} of {max_steps}")
    # train_s stays the training deadline; when a max_steps cap ends training sooner, inference simply starts
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
    return Plan(
        train_seconds=train_s,
        infer_seconds=infer_s,
        train_steps=steps,
        ttt_augmentations=augs,
        infer_views=views,
        notes=notes,
        expected_train_seconds=expected,
    )
