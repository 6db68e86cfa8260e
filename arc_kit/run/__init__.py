"""`arc-kit run` and `arc-kit predict`: run directory, stages, planning, watchdog, report."""
