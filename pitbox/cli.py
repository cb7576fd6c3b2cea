"""The ``pitbox`` command line: ``main(argv=None)`` with subcommands.

Each feature module that adds commands exposes ``register(subparsers)``, which adds its
parsers and sets ``func``: a function taking the parsed args and returning an exit code, or
the text ``"package.module:function"`` naming one, imported only when that command runs.
Expected errors (:class:`~pitbox.errors.PitboxError`) print one line and exit 2, no traceback.

**Start-up rule** (``pitbox --help`` and every ``pitbox CMD --help`` answer in under 0.15 s):
building the parser imports every module in :data:`COMMAND_MODULES`, and with it its
package's ``__init__``, so these import nothing heavy at their top: no numpy, pandas,
pyarrow, scipy, sklearn, plotly, websockets, jwt, yaml, pyirsdk, duckdb, dask, PIL,
imageio, elevenlabs, pocketsphinx, playwright, tqdm (the list is ``HEAVY`` in
``tests/test_cli_startup.py``, which checks every module listed here). Put the work in
functions that import what they need, or in another module named by ``func="mod:fn"``;
a package ``__init__`` that exports heavy names loads them on first use with
``lazy_loader.attach`` (see ``pitbox/live/__init__.py``); constants the help text needs live
in a module that imports nothing (``pitbox/live/constants.py``). ``bench/cli_bench.py``
times it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from pitbox.errors import PitboxError

#: Modules that add subcommands, in the order they appear in ``pitbox --help``.
COMMAND_MODULES = [
    "pitbox.commands",  # import, sessions, laps, info
    "pitbox.sim.cli",  # simulate, tracks
    "pitbox.emulator.cli",  # emulate
    "pitbox.recorder.cli",  # record, watch, recover
    "pitbox.analysis.cli",  # compare, coach, report, export
    "pitbox.live.cli",  # relay, token, listen
    "pitbox.dashboard.cli",  # live-demo
    "pitbox.voice.cli",  # voice say, hear, listen
    "pitbox.video.cli",  # video compare, overlay, clips
    "pitbox.team.cli",  # team, index, import-laps
]

#: Commands whose start-up a user waits for on every run, and the module that registers each:
#: ``pitbox import ...`` builds only that module's parsers (the whole parser imports every
#: module above). Other commands, ``--help`` and mistakes build the whole parser.
COMMAND_HOME = {"import": "pitbox.commands"}

EXIT_ERROR = 2
_leave_now = False  #: set by main() when the command asked to skip the interpreter's teardown


def build_parser(modules: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``pitbox`` parser with the commands of ``modules`` (default: every one)."""
    parser = argparse.ArgumentParser(prog="pitbox", description="Record, analyse and learn from iRacing telemetry.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if modules is None else modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # feature not built yet
            raise
        module.register(sub)
    return parser


def command_function(func: Callable[[argparse.Namespace], int | None] | str) -> Callable[[argparse.Namespace], int | None]:
    """``func`` as set by a ``register``: a function, or ``"module:function"`` imported now."""
    if not isinstance(func, str):
        return func
    module, _, name = func.partition(":")
    return getattr(importlib.import_module(module), name)


def _command_modules(argv: Sequence[str]) -> list[str] | None:
    """Just the module of the command in ``argv`` when it is in :data:`COMMAND_HOME` and no
    help is asked for; else None (the whole parser)."""
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] not in COMMAND_HOME or "-h" in argv or "--help" in argv:
        return None
    return [COMMAND_HOME[words[0]]]


def main(argv: Sequence[str] | None = None) -> int:
    global _leave_now
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_modules(argv))
    args = parser.parse_args(argv)
    import logging  # after parsing: `--help` needs none of it

    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        code = int(command_function(args.func)(args) or 0)
        _leave_now = code == 0 and getattr(args, "teardown", True) is False
        return code
    except PitboxError as exc:
        print(f"pitbox {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pitbox coach ... | head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def run() -> None:
    """The ``pitbox`` console script: :func:`main`, then exit. A command that sets
    ``teardown=False`` in its parser's defaults (``pitbox import``: every file it wrote is
    closed and renamed into place before it returns, and nothing runs after it) leaves
    without the interpreter's teardown (unloading numpy and pyarrow, ~40 ms) once it
    succeeded: logging is shut down and the output flushed first. Any other outcome exits
    normally."""
    code = main()
    if _leave_now:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
