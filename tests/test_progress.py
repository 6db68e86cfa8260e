"""Progress off a terminal: plain status lines at most every interval (fake clock), a small log for a long run."""

import io

from arc_kit.base.progress import StatusLine, progress


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_file_gets_status_lines_a_terminal_gets_a_bar():
    assert isinstance(progress(10, "x", stream=io.StringIO()), StatusLine)
    bar = progress(10, "x", stream=Tty())
    assert not isinstance(bar, StatusLine) and type(bar).__name__ == "tqdm"
    bar.close()
    quiet = progress(10, "x", enabled=False, stream=io.StringIO())
    quiet.update(5)
    quiet.close()


def test_ten_minute_training_log_stays_small_and_shows_progress():
    """10 minutes at 8 steps/s with a loss on every step: 4,800 updates -> one line per 30 s of the clock."""
    out, clock = io.StringIO(), Clock()
    bar = progress(4800, "train", unit="step", stream=out, clock=clock)
    for i in range(4800):
        clock.t += 0.125  # exact in binary: no drift
        bar.update(1)
        bar.set_postfix(loss=f"{1.0 / (1 + i):.4f}", refresh=False)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 600 // 30 + 1  # one per 30 s (the last at 600 s), and the closing line
    assert len(out.getvalue().encode()) < 50_000
    first = lines[0]
    assert first.startswith("train: 240/4800 step (5%), 8 step/s, loss ")
    assert "min left" in first and "elapsed" in first
    assert lines[-1].startswith("train: 4800/4800 step (100%)") and lines[-1].endswith("(done)")


def test_interval_and_changing_total():
    out, clock = io.StringIO(), Clock()
    bar = StatusLine(None, "infer", "view", stream=out, interval=5.0, clock=clock)
    bar.update(3)  # no time passed: silent
    assert out.getvalue() == ""
    clock.t += 5.0
    bar.update(2)
    assert out.getvalue() == "infer: 5 view, 1 view/s, 5s elapsed\n"
    bar.total = 10  # the trainer re-plans its total as the deadline nears
    clock.t += 5.0
    bar.update(0)
    assert "5/10 view (50%)" in out.getvalue().splitlines()[-1] and "0.5 view/s, 10s left" in out.getvalue()


def test_short_task_stays_silent():
    out, clock = io.StringIO(), Clock()
    with progress(4, "identifiers", stream=out, clock=clock) as bar:
        for _ in range(4):
            clock.t += 1.0
            bar.update(1)
    assert out.getvalue() == ""
