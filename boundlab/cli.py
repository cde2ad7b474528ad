"""Command-line entry point: ``boundlab <command> ...``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Each module in boundlab.commands defines ``register(subparsers)``, which adds one
# subcommand and sets its ``func(args) -> int`` default.
COMMANDS = (
    "boundlab.commands.demo",
    "boundlab.commands.data",
    "boundlab.commands.verify",
    "boundlab.commands.audit",
    "boundlab.commands.reproduce",
    "boundlab.commands.train",
    "boundlab.commands.evaluate",
    "boundlab.commands.sweep",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per command module."""
    parser = argparse.ArgumentParser(
        prog="boundlab",
        description="Measure how tightly recommendation losses bound ranking metrics.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError) as error:
        # Invalid input (bad spec, missing file, corrupt checkpoint) gets one line, not a
        # traceback; -v shows the traceback for debugging.
        if args.verbose:
            raise
        print(f"boundlab {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
