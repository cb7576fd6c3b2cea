"""Live coach benchmark: the core's cost per tick, and the after-lap latency.

A simulated practice (out lap, timed laps with an injected fault) is the input; its rows are
the frames (``np.void`` rows, as the recorder hands them over).

1. **Per tick**: :class:`pitbox.livecoach.LiveCoach.feed` (lap split as the lap table does,
   delta by distance to the reference, predicted lap, per-corner delta, fuel, tyre snapshot,
   the rows kept for the after-lap analysis, the coach message once a second) against the
   plain numpy way a skilled user would write the same running delta: read ``Lap``,
   ``LapDistPct`` and ``SessionTime`` from the row, restart the lap clock when ``Lap``
   changes, and ``np.interp`` the reference's time at this distance.
2. **After-lap latency**: the live coach beside a stream server (its analyst in its own
   process, warm), frames published at real time around the lap's end, a WebSocket client
   receiving the ``tip``: from the line crossing, and from the tick at which the coach cut
   the lap (its last corner segment ended on the next lap) to the tip on the client. The peer
   is what a user does without a live coach: ``pitbox coach`` (a fresh process) on the
   session recorded up to the same tick.

    .venv/bin/python bench/livecoach_bench.py [--laps 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pitbox.ibt.reader import open_telemetry  # noqa: E402
from pitbox.ibt.writer import write_ibt  # noqa: E402
from pitbox.livecoach import LiveCoach  # noqa: E402
from pitbox.livecoach.analyst import Analyst, run_jobs  # noqa: E402
from pitbox.sim import simulate_session  # noqa: E402

FAULT_LAP = 4


def frames_of(ibt: Path) -> tuple[list[tuple[int, float, np.void]], dict, str, list, np.ndarray]:
    with open_telemetry(ibt) as tf:
        rows = tf.read_rows()
        ticks = tf.read(["SessionTick"])["SessionTick"]
        return ([(int(ticks[i]), float(rows[i]["SessionTime"]), rows[i]) for i in range(len(rows))],
                tf.session_info, tf.session_info_text, tf.variables, rows)


def per_tick(frames: list, info: dict, repeat: int) -> tuple[float, float, float]:
    """Median CPU µs per tick (``process_time``: what the work costs, not how long a loaded
    machine made it wait) over the whole session, the reference known from the start: ours
    (``feed``; the analyst's work is elsewhere) and the numpy peer."""
    # the reference both use: the analysis' trace of the first timed lap
    coach, analyst = LiveCoach(), Analyst(None)
    coach.set_session_info(info)
    for f in frames:
        coach.feed(*f)
        run_jobs(coach, analyst)
    ref = coach.reference
    ref_d, ref_t, length = np.asarray(ref.distance_m), np.asarray(ref.time_at_m), ref.length_m
    ours, peer = [], []
    for _ in range(repeat):
        c = LiveCoach()
        c.set_session_info(info)
        c.use_reference(ref)
        t0 = time.process_time()
        for f in frames:
            c.feed(*f)
            c.jobs()  # handed to the analyst process in the service: a deque append
            c.messages()
        ours.append((time.process_time() - t0) / len(frames) * 1e6)
        t0 = time.process_time()
        lap, start, out = None, None, 0.0
        for _tick, t, row in frames:
            n = row["Lap"]
            if n != lap:
                lap, start = n, t
            out = (t - start) - np.interp(row["LapDistPct"] * length, ref_d, ref_t)
        peer.append((time.process_time() - t0) / len(frames) * 1e6)
    return float(np.median(ours)), float(np.median(peer)), out


def latency(frames: list, info: dict, yaml_text: str, variables: list, rows: np.ndarray, tmp: Path) -> dict:
    """Frames as fast as possible up to 3 s before the faulted lap's line, then at real time
    until the tip reaches a WebSocket client."""
    from pitbox.live import StreamServer
    from pitbox.live.testing import open_log
    from pitbox.livecoach.service import LiveCoachService

    server = StreamServer("127.0.0.1", 0).start()
    svc = LiveCoachService([server], lossless=True).start()
    svc.wait_ready(120)
    svc.publish_session_info(info)
    lap = np.array([int(f[2]["Lap"]) for f in frames])
    cross = int(np.flatnonzero(np.diff(lap) == 1)[FAULT_LAP]) + 1  # first frame of the lap after the faulted one
    fast_until = cross - 180
    got: dict = {}

    async def client() -> None:
        log = await open_log(server.url, subscribe={"channels": ["pitbox_delta_s"], "rate": 1})
        sent = {}
        for f in frames[:fast_until]:
            svc.publish_frame(*f)
        svc.wait_idle(300)
        t_next = time.perf_counter()
        i = fast_until
        while not log.of("tip"):
            if i < len(frames):
                svc.publish_frame(*frames[i])
                sent[frames[i][0]] = time.perf_counter()
                i += 1
            t_next += 1 / 60
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
            if i - fast_until > 60 * 120:
                raise RuntimeError("no tip within 120 s")
        tip = log.of("tip")[0]
        now = log.arrival_ns[log.messages.index(tip)] / 1e9
        got.update(tip=tip, from_line_s=now - sent[frames[cross][0]], from_cut_s=now - sent[tip["cut_tick"]],
                   cut_tick=tip["cut_tick"],
                   drive_s=frames[[f[0] for f in frames].index(tip["cut_tick"])][1] - frames[cross][1])
        await log.close()

    from pitbox.live.testing import run

    try:
        run(client(), timeout=600)
    finally:
        svc.stop()
    # peer: pitbox coach in a fresh process on the session up to the same tick
    k = [f[0] for f in frames].index(got["cut_tick"]) + 1
    cut = write_ibt(tmp / "cut.ibt", {v.name: rows[v.name][:k] for v in variables}, yaml_text, variables=variables)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pitbox.cli", "coach", str(cut), "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    got["peer_s"] = time.perf_counter() - t0
    peer_tips = [t for t in json.loads(out.stdout)["tips"] if t["lap_index"] == got["tip"]["lap_index"]]
    got["same_tips"] = [(t["corner"], t["fault"], t["time_loss_s"]) for t in peer_tips][:1] == \
        [(got["tip"]["corner"], got["tip"]["fault"], got["tip"]["time_loss_s"])]
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--laps", type=int, default=5, help=f"timed laps of the simulated practice (default 5, at least {FAULT_LAP + 1})")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the per-tick loop (median; default 3)")
    args = ap.parse_args(argv)
    if args.laps < FAULT_LAP + 1:
        ap.error(f"--laps must be at least {FAULT_LAP + 1} (the fault is on lap {FAULT_LAP}, and a lap follows it)")
    with tempfile.TemporaryDirectory(prefix="pitbox-livecoach-bench-") as d:
        tmp = Path(d)
        sim = simulate_session("pitboxsim_demo", args.laps, [f"{FAULT_LAP}:T3:brake_early:20"], 7, in_lap=False,
                               out=tmp / "practice.ibt")
        frames, info, yaml_text, variables, rows = frames_of(sim.ibt_path)
        print(f"simulated practice: {len(frames)} ticks, {args.laps} timed laps, fault on lap {FAULT_LAP}; "
              f"load average {_load()}", flush=True)
        ours, peer, _ = per_tick(frames, info, args.repeat)
        print(f"\n{'per tick (CPU, median of runs)':44} {'µs':>8}")
        print(f"{'pitbox LiveCoach.feed (everything)':44} {ours:8.1f}")
        print(f"{'numpy peer (lap clock + np.interp delta)':44} {peer:8.1f}")
        print(f"{'ratio (ours / peer)':44} {ours / peer:7.2f}x")
        lat = latency(frames, info, yaml_text, variables, rows, tmp)
        print(f"\n{'after-lap latency (lap ' + str(FAULT_LAP) + ')':44} {'s':>8}")
        print(f"{'line crossing -> tip on the client':44} {lat['from_line_s']:8.2f}  "
              f"(of which driving to the cut: {lat['drive_s']:.2f} s of session time)")
        print(f"{'cut -> tip on the client (analyst process)':44} {lat['from_cut_s']:8.2f}")
        print(f"{'peer: pitbox coach, fresh process, same cut':44} {lat['peer_s']:8.2f}")
        print(f"{'ratio (peer / ours, from the cut)':44} {lat['peer_s'] / lat['from_cut_s']:7.1f}x")
        print(f"tip: {lat['tip']['corner']} {lat['tip']['fault']} {lat['tip']['time_loss_s']} s; "
              f"same as the peer's: {lat['same_tips']}")
    return 0


def _load() -> str:
    try:
        import os

        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        return "n/a"


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
