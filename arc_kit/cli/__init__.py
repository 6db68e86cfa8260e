"""Command line: `arc-kit` and one module per command area (handlers named cmd_*)."""
