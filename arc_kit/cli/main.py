"""Command line: `arc-kit <command>`; each area registers its commands from its own module in this package."""

import argparse
import errno
import importlib
import os
import sys

from arc_kit import __version__
from arc_kit.base.errors import ArcKitError

# Each module defines `add_commands(subparsers)`; handlers return an exit code.
# Modules import heavy dependencies (torch) inside their handlers, so `arc-kit --help` stays fast.
COMMAND_MODULES = ("tasks", "eval", "report", "model", "predict", "train", "run", "kaggle")

# OSErrors that describe the user's machine or paths (exit 2 naming the file), never the kit's code.
_ENVIRONMENT_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.ENOSPC,
    errno.EROFS,
    errno.ENAMETOOLONG,
    errno.EDQUOT,
    errno.ELOOP,
    errno.EIO,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arc-kit", description="ARC-AGI submission kit around the Tiny Recursive Model."
    )
    parser.add_argument("--version", action="version", version=f"arc-kit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"arc_kit.cli.{name}").add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # argparse hands every positional to the first variadic argument, so `key=value` overrides
    # written after an option (`vote a.jsonl --config X k=v`) come back unrecognised: collect them.
    args, rest = parser.parse_known_args(argv)
    stray = [r for r in rest if r.startswith("-") or "=" not in r or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if rest:
        args.overrides = list(args.overrides or []) + rest
    try:
        return int(args.func(args) or 0)
    except ArcKitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the machine refused a named file (permissions, space, name length): not a kit bug
        if e.errno not in _ENVIRONMENT_ERRNOS or e.filename is None:
            return _internal_error(args, e)
        print(f"error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  (a bug, not bad input: exit 3, no traceback unless asked for)
        return _internal_error(args, e)


def _internal_error(args, e: Exception) -> int:
    if os.environ.get("ARC_KIT_DEBUG"):
        raise e
    msg = " ".join(str(e).split())
    print(
        f"error: internal error in '{args.command}': {type(e).__name__}: {msg} "
        f"(set ARC_KIT_DEBUG=1 for a traceback; please report it)",
        file=sys.stderr,
    )
    return 3


if __name__ == "__main__":
    sys.exit(main())
