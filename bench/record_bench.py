"""Live recording benchmark: PitBox's recorder against two pyirsdk peers, in the same run.

The iRacing emulator (a separate process, as iRacing is) plays a real ``.ibt`` into a
memory map with iRacing's live layout (every channel of a ~8 KB live row, ``CarIdx*``
arrays of 64, float[6] channels); every reader goes through unmodified pyirsdk, and each is
started before the emulator, as a recorder waiting for iRacing would be:

* **pitbox**: the recorder (``freeze_var_buffer_latest()``, one structured dtype, rows
  handed to the writer threads that write crash-safe segments and the final Parquet session);
* **pyirsdk dict** (peer 1): what tools commonly do: ``freeze_var_buffer_latest()`` and one
  ``ir[name]`` per channel into a dict per tick, kept in a list;
* **pyirsdk -> numpy** (peer 2, the fast obvious thing): ``freeze_var_buffer_latest()`` and one
  copy of the row into a preallocated numpy array per tick, looking every 1 ms for a new tick.

Columns: the tick loop's own cost per tick (from seeing the new tick to the row being
buffered), and the **whole CPU per tick**: the process's CPU time (every thread: the tick
loop, the segment writer, decoding, Parquet buffering; sampled every 0.1 s, first to last
tick, less the sampler thread's own CPU time) divided by the ticks recorded. It is also
split by thread (on Unix, each thread's own CPU clock): the tick loop, the segment writer, the
finalizer, and the stream's threads with ``--publish``. The final Parquet merge at the session's end is shown
apart (it happens once per session). Also: ticks the sim published before each reader's
first tick (the sim starts after the readers), and the emulator's own lateness (its publish
time minus the time the tick was due, from its ground truth), so that a dropped tick can be
told from a late sim. Then: direct replay throughput (x real time), and drops over
``--minutes`` emulated minutes at real time (``--minutes 10`` for the product goal).

Goals (brief): whole CPU per tick under 100 us; no dropped tick; the sim's first tick recorded.

A last row is not a peer but this machine's floor: the whole CPU per tick of a process that
does nothing but wake at each 60 Hz deadline and copy one live row into a numpy array (no sim,
no decoding, no storage). A goal below it cannot be met by any reader that wakes once per tick.
A second floor row wakes every second tick and copies two rows: what a reader that takes two
ticks per wake-up would pay (it then has one tick of slack before iRacing's three buffers
overwrite an unread row, instead of two).

``--live-coach`` adds a row: the recorder with the stream and the live coach in front of it
(``pitbox.livecoach.LiveCoachService``, its pump thread in this process, its analyst in
another), whose tick loop must cost what the stream's alone does (run with ``--publish``).

    .venv/bin/python bench/record_bench.py [--source FILE.ibt] [--seconds 15] [--minutes 1]
"""

from __future__ import annotations

import argparse
import csv
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

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


def emulator(source: Path, memmap: Path, truth: Path, speed: float = 1.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pitbox.cli", "emulate", str(source), "--memmap", str(memmap),
                             "--speed", str(speed), "--ground-truth", str(truth)], cwd=ROOT, stdout=subprocess.DEVNULL)


def lateness_ms(truth: Path) -> np.ndarray:
    """How late the emulator published each tick [ms] (its ground truth: wall_s - due_s)."""
    with open(truth, newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([(float(r["wall_s"]) - float(r["due_s"])) * 1e3 for r in rows])


class CpuSampler:
    """Samples the process's CPU time and a tick counter every 0.1 s; the sampler's own CPU
    time (its wake-ups) is taken out, so the instrument stays out of the figure. The CPU per
    tick is taken between the first and the last sample with new ticks."""

    def __init__(self, ticks) -> None:
        self.ticks = ticks
        self.samples: list[tuple[int, float]] = []  # (ticks, process CPU less the sampler's own) [s]
        self.own_s = 0.0  #: the sampler thread's own CPU time so far [s]
        self.by_thread: list[dict[str, float]] = []  #: per sample: thread name -> its CPU time [s]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.own_s = time.thread_time()
            self.samples.append((self.ticks(), time.process_time() - self.own_s))
            self.by_thread.append(_threads_cpu_s())

    def process_time(self) -> float:
        """The process's CPU time now [s], less the sampler's own so far (as in the samples)."""
        return time.process_time() - self.own_s

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _window(self) -> tuple[int, int] | None:
        """Indices of the sample before the first tick and of the last sample with new ticks
        (None before any tick)."""
        s = self.samples
        first = next((k for k in range(1, len(s)) if s[k][0] > 0), None)
        if first is None:
            return None
        return first - 1, max(k for k in range(first, len(s)) if s[k][0] > s[k - 1][0])

    def us_per_tick(self) -> tuple[float, float]:
        """CPU per tick [us] over :meth:`_window`, and the CPU time [s] of its last sample."""
        w = self._window()
        if w is None:
            return float("nan"), float("nan")
        (n0, c0), (n1, c1) = self.samples[w[0]], self.samples[w[1]]
        return (c1 - c0) / max(n1 - n0, 1) * 1e6, c1

    def us_per_tick_by_thread(self) -> dict[str, float]:
        """The same window split by thread [us per tick] (Unix: each thread's own CPU clock);
        empty where threads' clocks cannot be read."""
        w = self._window()
        if not self.by_thread or w is None:
            return {}
        a, b = w
        n = max(self.samples[b][0] - self.samples[a][0], 1)
        before, after = self.by_thread[a], {}
        for sample in self.by_thread[a:b + 1]:  # a thread that ended at the session's end: its last sample
            after.update(sample)
        return {name: (cpu - before.get(name, 0.0)) / n * 1e6 for name, cpu in after.items()
                if name != self._thread.name}


def _threads_cpu_s() -> dict[str, float]:
    """CPU time of every live thread of this process [s], by name (empty where unsupported)."""
    if not hasattr(time, "pthread_getcpuclockid"):
        return {}
    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            out[t.name] = out.get(t.name, 0.0) + time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        except (OSError, TypeError):  # gone, or not started
            pass
    return out


def run_pitbox(source: Path, tmp: Path, publish: bool = False, coach: bool = False) -> dict:
    memmap, data, truth = tmp / "pitbox.bin", tmp / "data", tmp / "truth.csv"
    tmp.mkdir(parents=True, exist_ok=True)
    server: Any = None
    if publish or coach:
        from pitbox.live import StreamServer

        server = StreamServer("127.0.0.1", 0).start()
    if coach:  # the live coach in front of the stream, as pitbox record runs it
        from pitbox.livecoach.service import LiveCoachService

        server = LiveCoachService([server], data=data).start()
        server.wait_ready(60)
    src = IrsdkSource(memmap)
    finalized: list[float] = []
    cpu = CpuSampler(lambda: rec.stats.ticks)
    rec = Recorder(src, data, measure=True, publisher=server, on_session=lambda p: finalized.append(cpu.process_time()))
    emu: subprocess.Popen | None = None

    def start_sim() -> None:  # the sim starts while the recorder waits for it
        nonlocal emu
        emu = emulator(source, memmap, truth)

    threading.Timer(0.5, start_sim).start()
    try:
        with cpu:
            paths = rec.run(until_gone=True)
            ended = cpu.process_time()
    finally:
        while emu is None:
            time.sleep(0.01)
        emu.wait(60)
        if server is not None:
            server.stop()
    cost = np.array(rec.stats.tick_cost_ns[1:]) / 1e3  # the first includes the session's start
    cpu_us, cpu_last = cpu.us_per_tick()
    metas = [read_meta(p) for p in paths]
    gaps = [g for m in metas for g in m["tick_gaps"]]
    return {"ticks": rec.stats.ticks, "dropped": sum(m["dropped_ticks"] for m in metas), "cost_us": cost,
            "cpu_us": cpu_us, "finalize_cpu_s": (finalized[-1] if finalized else ended) - cpu_last,
            "gaps": gaps, "stall_ms": rec.stats.max_stall_ms, "first_tick": rec.stats.first_tick,
            "joined": rec.stats.joined_at_tick, "late_ms": lateness_ms(truth),
            "channels": len(src._layout_cache[2]) if src._layout_cache else 0,
            "row_bytes": src._layout_cache[3] if src._layout_cache else 0, "by_thread": cpu.us_per_tick_by_thread()}


def _wait_for_sim(ir, memmap: Path, poll_s: float) -> object:
    """Start pyirsdk once the emulator's file exists, then wait for status 1 (plain polling)."""
    deadline = time.monotonic() + 60
    while not (memmap.exists() and memmap.stat().st_size > 0 and ir.startup(test_file=str(memmap))):
        if time.monotonic() > deadline:
            raise RuntimeError("emulator did not start")
        time.sleep(0.01)
    mm = ir._shared_mem
    while _HEADER.unpack_from(mm, 0)[1] != 1:
        time.sleep(poll_s)
    return mm


def run_peer(source: Path, tmp: Path, kind: str) -> dict:
    """A pyirsdk reader started before the sim. ``dict``: ``ir[name]`` for every channel into
    a dict per tick, polling every 0.25 ms; ``numpy``: one copy of the frozen row into a
    preallocated array per tick, polling every 1 ms."""
    import irsdk

    tmp.mkdir(parents=True, exist_ok=True)
    memmap, truth = tmp / "peer.bin", tmp / "truth.csv"
    poll_s = 0.00025 if kind == "dict" else 0.001
    ir = irsdk.IRSDK()
    emu: subprocess.Popen | None = None

    def start_sim() -> None:
        nonlocal emu
        emu = emulator(source, memmap, truth)

    threading.Timer(0.5, start_sim).start()
    ticks = {"n": 0}
    rows: list = []
    cost: list[int] = []
    last, dropped, first = None, 0, None
    try:
        with CpuSampler(lambda: ticks["n"]) as cpu:
            mm = _wait_for_sim(ir, memmap, poll_s)
            names = ir.var_headers_names
            buf_len = ir._header.buf_len
            table = np.empty((4 * 60 * 60 * 60, buf_len), np.uint8) if kind == "numpy" else None
            while True:
                head = _HEADER.unpack_from(mm, 0)
                t = max(head[_TICKS][:3])
                if head[1] != 1 and (last is None or t <= last):
                    break
                if last is not None and t <= last:
                    time.sleep(poll_s)
                    continue
                t0 = time.perf_counter_ns()
                ir.freeze_var_buffer_latest()
                if table is not None:
                    table[ticks["n"]] = np.frombuffer(ir._var_buffer_latest.get_memory(), np.uint8, buf_len)
                else:
                    rows.append({name: ir[name] for name in names})
                cost.append(time.perf_counter_ns() - t0)
                if last is not None:
                    dropped += t - last - 1
                else:
                    first = t
                last = t
                ticks["n"] += 1
    finally:
        ir.shutdown()
        while emu is None:
            time.sleep(0.01)
        emu.wait(60)
    return {"ticks": ticks["n"], "dropped": dropped, "cost_us": np.array(cost[1:]) / 1e3, "cpu_us": cpu.us_per_tick()[0],
            "first_tick": first, "late_ms": lateness_ms(truth), "channels": len(names)}


def run_floor(seconds: float, row_bytes: int, per_wake: int = 1) -> float:
    """This machine's floor, not a peer: the whole CPU per tick [us] of a process that only
    wakes at each 60 Hz deadline and copies one row of ``row_bytes`` from a memory map into a
    preallocated numpy array: no sim to look at, no decoding, no storage. What any recorder
    that wakes once per tick pays before doing any work. ``per_wake`` 2: it wakes every
    second deadline and copies two rows (what reading two ticks per wake-up would cost)."""
    mm = mmap.mmap(-1, row_bytes + 4096)
    n = int(seconds * 60) // per_wake * per_wake
    table = np.empty((n, row_bytes), np.uint8)
    ticks = {"n": 0}
    with CpuSampler(lambda: ticks["n"]) as cpu:
        due = time.monotonic()
        for i in range(0, n, per_wake):
            due += per_wake / 60
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for k in range(i, i + per_wake):
                table[k] = np.frombuffer(mm, np.uint8, row_bytes, 4096)
            ticks["n"] += per_wake
    mm.close()
    return cpu.us_per_tick()[0]


def replay_speed(source: Path, tmp: Path) -> tuple[float, int]:
    with open_telemetry(source) as tf:
        seconds = tf.n_rows / tf.tick_rate
    rec = Recorder(ReplaySource(source, speed=0), tmp / "replay", fsync=True)
    t0 = time.perf_counter()
    rec.run()
    wall = time.perf_counter() - t0
    return seconds / wall, rec.stats.ticks


def _row(label: str, r: dict) -> str:
    late = r["late_ms"]
    return (f"{label:34} {np.median(r['cost_us']):9.1f} {np.percentile(r['cost_us'], 99):9.1f} {r['cpu_us']:10.1f} "
            f"{r['ticks']:7d} {r['dropped']:8d} {r['first_tick'] - 1:9d} "
            f"{np.median(late):7.2f} {np.percentile(late, 99):7.2f} {late.max():7.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="an .ibt to play (default: a real 2023 file)")
    ap.add_argument("--seconds", type=float, default=15.0, help="emulated seconds for the per-tick cost (default 15)")
    ap.add_argument("--minutes", type=float, default=1.0,
                    help="emulated minutes at real time for the drop count (default 1; the goal is stated for 10)")
    ap.add_argument("--publish", action="store_true", help="also publish every tick to a StreamServer (pitbox.live)")
    ap.add_argument("--live-coach", action="store_true",
                    help="add a row: the recorder with the stream and the live coach in front of it")
    args = ap.parse_args(argv)
    if not args.source.is_file():
        print(f"record_bench: {args.source}: not found (give --source FILE.ibt)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="pitbox-record-bench-"))
    try:
        short = tiled(args.source, tmp / "short.ibt", args.seconds)
        print(f"source: {args.source.name}, {args.seconds:g} s at 60 Hz through the emulator (separate process, "
              f"started 0.5 s after each reader) and pyirsdk; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}",
              flush=True)
        ours = run_pitbox(short, tmp / "a", publish=args.publish)
        dict_peer = run_peer(short, tmp / "b", "dict")
        np_peer = run_peer(short, tmp / "c", "numpy")
        print(f"\nlive row: {ours['channels']} channels, {ours['row_bytes']} bytes\n")
        print(f"{'':34} {'tick loop':>9} {'':>9} {'whole CPU':>10} {'':>7} {'':>8} {'ticks':>9} "
              f"{'emulator late ms':>23}")
        print(f"{'per tick':34} {'p50 us':>9} {'p99 us':>9} {'us/tick':>10} {'ticks':>7} {'dropped':>8} "
              f"{'before 1st':>9} {'p50':>7} {'p99':>7} {'max':>7}")
        label = "pitbox recorder" + (" + stream" if args.publish else "")
        print(_row(label, ours))
        if ours["by_thread"]:
            print(f"{'  by thread, us/tick':34} " + ", ".join(
                f"{'tick loop' if name == 'bench' else name} {us:.1f}"
                for name, us in sorted(ours["by_thread"].items(), key=lambda kv: -kv[1]) if us >= 0.05))
        if args.live_coach:  # the whole CPU includes the coach's pump thread; its analyst is another process
            print(_row("pitbox recorder + stream + coach", run_pitbox(short, tmp / "lc", coach=True)))
        print(_row("pyirsdk ir[name] -> dict (peer 1)", dict_peer))
        print(_row("pyirsdk freeze -> numpy (peer 2)", np_peer))
        for name, peer in (("peer 1", dict_peer), ("peer 2", np_peer)):
            print(f"{'ratio ' + name + ' / pitbox':34} {np.median(peer['cost_us']) / np.median(ours['cost_us']):8.2f}x "
                  f"{'':9} {peer['cpu_us'] / ours['cpu_us']:9.2f}x")
        floor = run_floor(args.seconds, ours["row_bytes"])
        print(f"{'floor: 60 wake-ups/s + row copy':34} {'':9} {'':9} {floor:10.1f}   (this machine's least; not a peer)")
        floor2 = run_floor(args.seconds, ours["row_bytes"], per_wake=2)
        print(f"{'floor: 30 wake-ups/s, 2 rows each':34} {'':9} {'':9} {floor2:10.1f}   "
              "(two ticks per wake-up: one tick of slack in iRacing's three buffers, not two)")
        print(f"final Parquet merge of the session (once, after the last tick): {ours['finalize_cpu_s']:.2f} s CPU "
              f"({ours['finalize_cpu_s'] / max(ours['ticks'], 1) * 1e6:.0f} us per tick of this {args.seconds:g} s session)")
        print(f"goal: whole CPU under 100 us per tick: {'met' if ours['cpu_us'] < 100 else 'NOT met'}; "
              f"first tick recorded: {'yes' if ours['first_tick'] == 1 else 'NO (' + str(ours['first_tick']) + ')'}")
        x, n = replay_speed(args.source, tmp)
        print(f"\nreplay (direct, every channel, to Parquet): {n} ticks at {x:.0f}x real time "
              f"(goal 50x: {'met' if x >= 50 else 'NOT met'})", flush=True)
        if args.minutes > 0:
            long_src = tiled(args.source, tmp / "long.ibt", args.minutes * 60)
            t0 = time.monotonic()
            r = run_pitbox(long_src, tmp / "d", publish=args.publish)
            late = r["late_ms"]
            print(f"\nreal time, {args.minutes:g} emulated min: {r['ticks']} ticks recorded, {r['dropped']} dropped, "
                  f"{r['first_tick'] - 1} before the first (wall {time.monotonic() - t0:.0f} s; tick loop median "
                  f"{np.median(r['cost_us']):.1f} us, p99 {np.percentile(r['cost_us'], 99):.1f} us, max "
                  f"{r['cost_us'].max() / 1e3:.1f} ms; whole CPU {r['cpu_us']:.1f} us per tick; longest stall between "
                  f"two looks {r['stall_ms']:.1f} ms; emulator late p99 {np.percentile(late, 99):.2f} ms, "
                  f"max {late.max():.1f} ms, {int((late > 1000 / 60).sum())} ticks more than a tick late)")
            if r["gaps"]:
                print(f"gaps [row, ticks missing]: {r['gaps'][:20]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
