"""Progress on stderr: the one progress-bar factory, and durations for humans."""

import sys


def progress(total: int | None, desc: str, enabled: bool = True, unit: str = "it", initial: int = 0):
    """A tqdm progress bar on stderr with rate and time left (a no-op object when disabled)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not enabled,
        initial=initial,
        mininterval=1.0,
        dynamic_ncols=True,
        leave=False,
    )


def fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.2f}h"
