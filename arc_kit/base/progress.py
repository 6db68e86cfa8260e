"""Progress on stderr: the one progress factory (a bar on a terminal, a plain status line elsewhere), durations."""

import sys
import time
from collections.abc import Callable
from typing import IO, Any

# Seconds between two status lines when stderr is not a terminal (a redirected log, a Kaggle notebook, CI):
# a bar redraws every second and would write one frame per update into the file; a status line every 30 s
# keeps a 10-minute run's log to a few KB.
STATUS_INTERVAL = 30.0


def fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.2f}h"


class StatusLine:
    """The part of tqdm's interface the kit uses (update, set_postfix, total, n, close), printing one plain line
    `desc: n/total unit (pct%), rate, postfix, time left` at most every `interval` seconds of `clock`, and a
    closing line when it printed any."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        initial: int = 0,
        stream: IO[str] | None = None,
        interval: float = STATUS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.stream, self.interval, self.clock = stream, interval, clock
        self.postfix: dict[str, Any] = {}
        self.lines = 0  # status lines printed so far
        self._n0, self._t0 = initial, clock()
        self._last = self._t0
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._print(self.line(now))

    def set_postfix(self, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = dict(kwargs)

    def line(self, now: float | None = None) -> str:
        """The status line at clock time `now` (default: the clock's now)."""
        now = self.clock() if now is None else now
        elapsed = max(now - self._t0, 1e-9)
        rate = (self.n - self._n0) / elapsed
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if self.total:
            parts[0] += f" ({100.0 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"{fmt_seconds((self.total - self.n) / rate)} left")
        parts.append(f"{fmt_seconds(elapsed)} elapsed")
        return f"{self.desc}: " + ", ".join(parts)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.lines:  # a long task said where it was: say where it ended too
            self._print(self.line() + " (done)")

    def _print(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        print(text, file=stream, flush=True)
        self.lines += 1

    def __enter__(self) -> "StatusLine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    total: int | None,
    desc: str,
    enabled: bool = True,
    unit: str = "it",
    initial: int = 0,
    stream: IO[str] | None = None,
    interval: float = STATUS_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Progress on stderr (or `stream`): a tqdm bar with rate and time left on a terminal; elsewhere (a file,
    a pipe) a StatusLine printing a plain line at most every `interval` seconds. Disabled: a silent no-op."""
    stream = stream if stream is not None else sys.stderr
    if enabled and not _isatty(stream):
        return StatusLine(total, desc, unit, initial, stream, interval, clock)
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=stream,
        disable=not enabled,
        initial=initial,
        mininterval=1.0,
        dynamic_ncols=True,
        leave=False,
    )


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
