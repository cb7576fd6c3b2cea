"""``make demo``: the main job, end to end, on the embedded default store (``data/``).

1. The lap simulator drives a practice session on the demo circuit (out lap, 8 timed laps
   with three injected faults, in lap) and writes a genuine ``.ibt`` with its ground truth.
2. The ``.ibt`` is imported, as the telemetry-folder watcher would import it.
3. The same session is played through the iRacing emulator into a memory map, read live
   by unmodified pyirsdk, recorded by ``pitbox record`` with the live stream on; the
   Python client prints a few frames it received. The live recording and the ``.ibt``
   are one stint, stored once (one session, two sources).
4. The session and its lap table are printed, then the coach's top tips and the path of
   the HTML report.

Every step is deterministic (fixed seed); running the demo again re-records the live
session, which links to the same stint again and adds no session to the catalogue.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from pitbox.cli import main as cli_main

DEMO_TRACK = "pitboxsim_demo"
DEMO_LAPS = 8
DEMO_SEED = 7
DEMO_FAULTS = ("3:T3:brake_early:20", "5:T6:late_throttle:20", "7:T2:low_min_speed:8")
STREAM_CHANNELS = ["Lap", "LapDistPct", "Speed", "Throttle", "Brake", "Gear"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def simulate(data: Path) -> Path:
    from pitbox.sim import simulate_session

    out = data / "_demo" / f"{DEMO_TRACK}_practice_seed{DEMO_SEED}.ibt"
    out.parent.mkdir(parents=True, exist_ok=True)
    _banner(f"1. simulating a practice session on {DEMO_TRACK}: {DEMO_LAPS} timed laps, faults {' '.join(DEMO_FAULTS)}")
    result = simulate_session(track=DEMO_TRACK, laps=DEMO_LAPS, faults=list(DEMO_FAULTS), seed=DEMO_SEED, out=out)
    faults = {f["lap"]: f"{f['corner']} {f['fault']} {f['size']:g} {f['unit']} (costs {f['cost_s']:.3f} s)"
              for f in result.faults}
    for lap, time_s in sorted(result.lap_times_s.items(), key=lambda kv: int(kv[0])):
        note = "in lap" if int(lap) == DEMO_LAPS + 1 else faults.get(int(lap), "")
        print(f"  lap {int(lap):2d}  {time_s:8.3f} s  {note}")
    print(f"  -> {out} (+ ground truth {result.truth_path.name})")
    return out


def record_live(ibt: Path, data: Path, speed: str) -> int:
    from pitbox.live.client import LiveFeed

    port = _free_port()
    url = f"ws://127.0.0.1:{port}"
    _banner(f"3. live: emulator -> pyirsdk -> pitbox record (speed {speed}), streaming on {url}")
    feed = LiveFeed(url, channels=STREAM_CHANNELS, rate=1, backoff_s=0.05, backoff_max_s=0.2).start()
    try:
        code = cli_main(["record", "replay", str(ibt), "--via-emulator", "--speed", speed, "--until-gone",
                         "--stream", "--stream-port", str(port), "--data", str(data)])
        frames = feed.frames()
        laps = feed.laps()
    finally:
        feed.stop()
    print(f"\nthe Python client (pitbox.live.LiveFeed, 1 Hz) received {len(frames)} frames and {len(laps)} lap messages; "
          "a few of them:")
    if not frames.empty:
        step = max(len(frames) // 6, 1)
        print(frames.iloc[::step].head(6).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return code


def show(data: Path, ibt: Path) -> str:
    from pitbox.store import Store

    _banner(f"4. sessions in {data}")
    cli_main(["sessions", "--data", str(data)])
    cat = Store(data).sessions()
    mine = cat[cat.source_name == ibt.name]
    sid = str(mine.id.iloc[0]) if len(mine) else str(cat.id.iloc[-1])
    _banner(f"lap table of {sid}")
    cli_main(["laps", sid, "--data", str(data)])
    return sid


def coach(data: Path, sid: str) -> None:
    from pitbox.analysis import demo_summary

    _banner("5. coaching")
    print(demo_summary(data, sid))


def run(data: Path, source: Path | None = None, speed: str = "inf") -> int:
    ibt = simulate(data)
    _banner(f"2. importing {ibt.name} (as the folder watcher does)")
    code = cli_main(["import", str(ibt), "--data", str(data)])
    if source is not None:
        _banner(f"   and every .ibt below {source}")
        cli_main(["import", str(source), "--data", str(data)])
    code |= record_live(ibt, data, speed)
    sid = show(data, ibt)
    coach(data, sid)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pitbox.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="store folder (default: data)")
    parser.add_argument("--source", default=None, help="also import every .ibt below this folder")
    parser.add_argument("--speed", default="inf", help="live replay speed: inf (as fast as the recorder takes it) or a factor")
    args = parser.parse_args(argv)
    source = Path(args.source) if args.source else None
    if source is not None and not source.is_dir():
        source = None
    return run(Path(args.data), source, args.speed)


if __name__ == "__main__":
    sys.exit(main())
