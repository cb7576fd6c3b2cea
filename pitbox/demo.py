"""``make demo``: the main job on the embedded default store (``data/``).

Today: import every ``.ibt`` from ``--source`` (default ``../shared/data/real`` when it
exists) and print the sessions and their lap tables.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pitbox.cli import main as cli_main


def run(data: Path, source: Path | None) -> int:
    if source is not None and source.is_dir():
        print(f"== importing .ibt files from {source}")
        cli_main(["import", str(source), "--data", str(data)])
    print(f"\n== sessions in {data}")
    code = cli_main(["sessions", "--data", str(data)])
    from pitbox.store import Store

    for sid in Store(data).sessions().id:
        print(f"\n== laps of {sid}")
        code |= cli_main(["laps", sid, "--data", str(data)])
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pitbox.demo")
    parser.add_argument("--data", default="data")
    parser.add_argument("--source", default=None)
    args = parser.parse_args(argv)
    return run(Path(args.data), Path(args.source) if args.source else None)


if __name__ == "__main__":
    sys.exit(main())
