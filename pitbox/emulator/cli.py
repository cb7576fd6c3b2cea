"""``pitbox emulate SOURCE... --memmap PATH``: play ``.ibt`` files as iRacing's live memory."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pitbox.emulator.transitions import TRANSITIONS
from pitbox.errors import ConfigError
from pitbox.signals import stop_on_signals

if TYPE_CHECKING:
    from pitbox.emulator.core import Emulator

# The emulator (numpy) is imported inside the commands: see pitbox/cli.py.


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "emulate", help="play .ibt files into iRacing's live memory layout (a file pyirsdk reads)",
        description="Write iRacing's live shared-memory layout into PATH, which unmodified pyirsdk reads with "
                    "IRSDK().startup(test_file=PATH), at 60 Hz x speed. Several SOURCEs play one after another "
                    "(a new session, the driver leaving and re-entering the car, or a sim restart). "
                    "Ctrl-C or SIGTERM stops cleanly and sets the header status to 0.")
    p.add_argument("sources", nargs="+", metavar="SOURCE", type=Path, help=".ibt files to play, in order")
    p.add_argument("--memmap", required=True, type=Path, metavar="PATH", help="the memory-map file to write")
    p.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="playback speed: 1 = real time (default), inf = as fast as possible")
    p.add_argument("--loop", action="store_true", help="start again after the last SOURCE, until stopped")
    p.add_argument("--stall-at", type=int, metavar="TICK", help="stall when this tick_count is due ...")
    p.add_argument("--stall-for", type=float, default=0.0, metavar="S", help="... for S wall-clock seconds")
    p.add_argument("--skip-every", type=int, default=0, metavar="N",
                   help="drop ticks after every N published (tick_count jumps; default 0: never)")
    p.add_argument("--skip-count", type=int, default=1, metavar="K", help="ticks dropped each time (default 1)")
    p.add_argument("--transition", default="auto", metavar="KIND",
                   help=f"between SOURCEs: one of {', '.join(TRANSITIONS)}, or a comma list, one per boundary")
    p.add_argument("--exit-gap", type=float, default=2.0, metavar="S",
                   help="emulated seconds out of the car at an 'exit' transition (default 2)")
    p.add_argument("--restart-gap", type=float, default=2.0, metavar="S",
                   help="emulated seconds with status 0 at a 'restart' transition (default 2)")
    p.add_argument("--ground-truth", type=Path, metavar="CSV",
                   help="write every published tick (tick_count, source, row, ...) here when done")
    p.set_defaults(func=run_emulate)


def emulator_from_args(args: argparse.Namespace) -> Emulator:
    if (args.stall_at is None) != (args.stall_for == 0.0):
        raise ConfigError("emulate: --stall-at and --stall-for go together")
    from pitbox.emulator.core import Emulator

    transitions = [t.strip() for t in args.transition.split(",")]
    return Emulator(args.sources, args.memmap, speed=args.speed, loop=args.loop, stall_at=args.stall_at,
                    stall_for=args.stall_for, skip_every=args.skip_every, skip_count=args.skip_count,
                    transitions=transitions, exit_gap_s=args.exit_gap, restart_gap_s=args.restart_gap,
                    keep_ground_truth=args.ground_truth is not None)


def write_ground_truth(emu: Emulator, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["layout_id", "tick_count", "buf_index", "source_index", "source_row", "kind", "session_num",
                    "wall_s", "due_s"])
        for r in emu.ticks:
            w.writerow([r.layout_id, r.tick_count, r.buf_index, r.source_index,
                        "" if r.source_row is None else r.source_row, r.kind, r.session_num, f"{r.wall_s:.6f}",
                        f"{r.due_s:.6f}"])


def run_emulate(args: argparse.Namespace) -> int:
    emu = emulator_from_args(args)
    print(f"emulating {len(emu.sources)} source(s) into {args.memmap} at {args.speed:g}x; Ctrl-C stops", flush=True)
    try:
        with stop_on_signals(emu.request_stop):
            emu.run()
    finally:
        emu.close()
    if args.ground_truth:
        write_ground_truth(emu, args.ground_truth)
    last = emu.events[-1].kind if emu.events else "-"
    print(f"{emu.published} ticks published, {emu.dropped} dropped on purpose; ended: {last}; status 0")
    return 0
