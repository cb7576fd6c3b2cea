"""Start once and forget: record every iRacing session live, and import the .ibt files
iRacing writes (one stint stored once).

    python recorders/record_iracing.py [--data D:\\pitbox-data] [--stream] [any 'pitbox record' option]

Waits for iRacing, records while it runs, survives it restarting, and recovers an
interrupted recording at start. Same as ``pitbox record --watch``; every option of
``pitbox record`` works here (see ``pitbox record --help`` and docs/recorder.md).
Ctrl-C stops and finishes the open session.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too

from pitbox.cli import main  # noqa: E402


def argv(args: list[str]) -> list[str]:
    """``record`` with the telemetry-folder watcher on unless the caller set ``--watch``."""
    extra = [] if any(a == "--watch" or a.startswith("--watch=") for a in args) else ["--watch"]
    return ["record", *args, *extra]


if __name__ == "__main__":
    sys.exit(main(argv(sys.argv[1:])))
