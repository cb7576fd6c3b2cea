"""Live recording benchmark: PitBox's recorder against the common pyirsdk way.

The iRacing emulator (a separate process, as iRacing is) plays a real ``.ibt`` into a
memory map with iRacing's live layout (every channel of a ~8 KB live row, ``CarIdx*``
arrays of 64, float[6] channels); both readers go through unmodified pyirsdk:

* **pitbox**: the recorder's tick loop (``freeze_var_buffer_latest()``, one structured
  dtype, rows handed to the writer threads that write crash-safe segments and the final
  Parquet session);
* **pyirsdk dict**: what tools commonly do: ``freeze_var_buffer_latest()`` and one
  ``ir[name]`` per channel into a dict per tick, kept in a list.

Per-tick cost is from seeing the new tick to the row being buffered. Then: direct replay
throughput (× real time), and a drop count over ``--minutes`` emulated minutes at real time
(``--minutes 10`` for the product goal; the default is short).

    .venv/bin/python bench/record_bench.py [--source FILE.ibt] [--seconds 15] [--minutes 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pitbox.ibt import open_telemetry, write_ibt  # noqa: E402
from pitbox.recorder import IrsdkSource, Recorder, ReplaySource  # noqa: E402
from pitbox.recorder.sources import _HEADER, _TICKS  # noqa: E402
from pitbox.store import read_meta  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
DEFAULT_SOURCE = REAL / "mercedesamggt4_spielberg-gp_itelem.ibt"


def tiled(src: Path, dest: Path, seconds: float) -> Path:
    """The source repeated to ``seconds``, with ``SessionTime``/``SessionTick`` running on."""
    with open_telemetry(src) as tf:
        ch = tf.read()
        n, rate = tf.n_rows, tf.tick_rate
        reps = max(1, int(np.ceil(seconds * rate / n)))
        out = {}
        for name, v in ch.items():
            parts = []
            for k in range(reps):
                if name == "SessionTime":
                    parts.append(v + k * n / rate)
                elif name == "SessionTick":
                    parts.append(v + k * n)
                else:
                    parts.append(v)
            out[name] = np.concatenate(parts)[: int(seconds * rate)]
        return write_ibt(dest, out, tf.session_info_raw, variables=tf.variables, buf_len=tf.header.buf_len,
                         tick_rate=rate, start_date=tf.disk.session_start_date)


def emulator(source: Path, memmap: Path, speed: float = 1.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pitbox.cli", "emulate", str(source), "--memmap", str(memmap),
                             "--speed", str(speed)], cwd=ROOT, stdout=subprocess.DEVNULL)


def run_pitbox(source: Path, tmp: Path, publish: bool = False) -> dict:
    memmap, data = tmp / "pitbox.bin", tmp / "data"
    server = None
    if publish:
        from pitbox.live import StreamServer

        server = StreamServer("127.0.0.1", 0).start()
    src = IrsdkSource(memmap)
    rec = Recorder(src, data, measure=True, publisher=server)
    emu = emulator(source, memmap)
    try:
        paths = rec.run(until_gone=True)
    finally:
        emu.wait(30)
        if server is not None:
            server.stop()
    cost = np.array(rec.stats.tick_cost_ns[1:]) / 1e3  # the first includes the session's start
    metas = [read_meta(p) for p in paths]
    gaps = [g for m in metas for g in m["tick_gaps"]]
    return {"ticks": rec.stats.ticks, "dropped": sum(m["dropped_ticks"] for m in metas), "cost_us": cost,
            "gaps": gaps, "stall_ms": rec.stats.max_stall_ms,
            "channels": len(src._layout_cache[2]) if src._layout_cache else 0,
            "row_bytes": src._layout_cache[3] if src._layout_cache else 0}


def run_pyirsdk_dict(source: Path, tmp: Path) -> dict:
    """The common way: freeze, then ``ir[name]`` for every channel into a dict per tick."""
    import irsdk

    memmap = tmp / "pyirsdk.bin"
    emu = emulator(source, memmap)
    ir = irsdk.IRSDK()
    deadline = time.monotonic() + 30
    while not (memmap.exists() and ir.startup(test_file=str(memmap))):
        if time.monotonic() > deadline:
            raise RuntimeError("emulator did not start")
        time.sleep(0.01)
    mm = ir._shared_mem
    while _HEADER.unpack_from(mm, 0)[1] != 1:
        time.sleep(0.0005)
    names = ir.var_headers_names
    rows, cost, last, dropped = [], [], None, 0
    try:
        while True:
            head = _HEADER.unpack_from(mm, 0)
            t = max(head[_TICKS][:3])
            if head[1] != 1 and (last is None or t <= last):
                break
            if last is not None and t <= last:
                time.sleep(0.00025)
                continue
            t0 = time.perf_counter_ns()
            ir.freeze_var_buffer_latest()
            rows.append({name: ir[name] for name in names})
            cost.append(time.perf_counter_ns() - t0)
            if last is not None:
                dropped += t - last - 1
            last = t
    finally:
        ir.shutdown()
        emu.wait(30)
    return {"ticks": len(rows), "dropped": dropped, "cost_us": np.array(cost[1:]) / 1e3, "channels": len(names)}


def replay_speed(source: Path, tmp: Path) -> tuple[float, int]:
    with open_telemetry(source) as tf:
        seconds = tf.n_rows / tf.tick_rate
    rec = Recorder(ReplaySource(source, speed=0), tmp / "replay", fsync=True)
    t0 = time.perf_counter()
    rec.run()
    wall = time.perf_counter() - t0
    return seconds / wall, rec.stats.ticks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="an .ibt to play (default: a real 2023 file)")
    ap.add_argument("--seconds", type=float, default=15.0, help="emulated seconds for the per-tick cost (default 15)")
    ap.add_argument("--minutes", type=float, default=1.0,
                    help="emulated minutes at real time for the drop count (default 1; the goal is stated for 10)")
    ap.add_argument("--publish", action="store_true", help="also publish every tick to a StreamServer (pitbox.live)")
    args = ap.parse_args(argv)
    if not args.source.is_file():
        print(f"record_bench: {args.source}: not found (give --source FILE.ibt)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="pitbox-record-bench-"))
    try:
        short = tiled(args.source, tmp / "short.ibt", args.seconds)
        print(f"source: {args.source.name}, {args.seconds:g} s at 60 Hz through the emulator (separate process) "
              f"and pyirsdk; {os.cpu_count()} CPUs", flush=True)
        ours = run_pitbox(short, tmp / "a", publish=args.publish)
        peer = run_pyirsdk_dict(short, tmp / "b")
        med_o, med_p = np.median(ours["cost_us"]), np.median(peer["cost_us"])
        p99_o, p99_p = np.percentile(ours["cost_us"], 99), np.percentile(peer["cost_us"], 99)
        print(f"\nlive row: {ours['channels']} channels, {ours['row_bytes']} bytes\n")
        print(f"{'per tick':34} {'median µs':>10} {'p99 µs':>10} {'ticks':>7} {'dropped':>8}")
        label = "pitbox recorder" + (" + stream" if args.publish else "")
        print(f"{label:34} {med_o:10.1f} {p99_o:10.1f} {ours['ticks']:7d} {ours['dropped']:8d}")
        print(f"{'pyirsdk ir[name] -> dict (peer)':34} {med_p:10.1f} {p99_p:10.1f} {peer['ticks']:7d} {peer['dropped']:8d}")
        print(f"{'ratio (peer / pitbox)':34} {med_p / med_o:9.1f}x {p99_p / p99_o:9.1f}x")
        print(f"goal: median under 100 µs: {'met' if med_o < 100 else 'NOT met'}")
        x, n = replay_speed(args.source, tmp)
        print(f"\nreplay (direct, every channel, to Parquet): {n} ticks at {x:.0f}x real time "
              f"(goal 50x: {'met' if x >= 50 else 'NOT met'})", flush=True)
        if args.minutes > 0:
            long_src = tiled(args.source, tmp / "long.ibt", args.minutes * 60)
            t0 = time.monotonic()
            r = run_pitbox(long_src, tmp / "c", publish=args.publish)
            print(f"\nreal time, {args.minutes:g} emulated min: {r['ticks']} ticks recorded, {r['dropped']} dropped "
                  f"(wall {time.monotonic() - t0:.0f} s; median {np.median(r['cost_us']):.1f} µs, "
                  f"p99 {np.percentile(r['cost_us'], 99):.1f} µs, max {r['cost_us'].max() / 1e3:.1f} ms; "
                  f"longest stall between two polls {r['stall_ms']:.1f} ms)")
            if r["gaps"]:
                print(f"gaps [row, ticks missing]: {r['gaps'][:20]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
