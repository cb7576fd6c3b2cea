"""The ``pitbox`` command line: ``main(argv=None)`` with subcommands.

Each feature module that adds commands exposes ``register(subparsers)``, which adds its
parsers and sets ``func`` (taking the parsed args, returning an exit code). Expected
errors (:class:`~pitbox.errors.PitboxError`) print one line and exit 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from pitbox.errors import PitboxError

#: Modules that add subcommands, in the order they appear in ``pitbox --help``.
COMMAND_MODULES = [
    "pitbox.commands",  # import, sessions, laps, info
    "pitbox.sim.cli",  # simulate, tracks
    "pitbox.emulator.cli",  # emulate
    "pitbox.recorder.cli",  # record, watch, recover
    "pitbox.analysis.cli",  # compare, coach, report, export
    "pitbox.live.cli",  # relay, token
    "pitbox.voice.cli",  # voice say, hear, listen
]

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pitbox", description="Record, analyse and learn from iRacing telemetry.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # feature not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(args.func(args) or 0)
    except PitboxError as exc:
        print(f"pitbox {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pitbox coach ... | head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
