"""Placeholder: commands are added by the owning work item."""


def add_commands(subparsers) -> None:
    pass
