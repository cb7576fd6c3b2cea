"""Import each new .ibt from iRacing's telemetry folder once iRacing has finished it.

    python recorders/watch_telemetry.py [FOLDER] [--data D:\\pitbox-data] [--stable-s 5]

FOLDER defaults to $PITBOX_TELEMETRY or ~/Documents/iRacing/telemetry. Same as
``pitbox watch``; see docs/recorder.md. Ctrl-C stops.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too

from pitbox.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["watch", *sys.argv[1:]]))
