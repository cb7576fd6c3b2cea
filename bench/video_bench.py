"""Video benchmark: ``pitbox video compare`` against matplotlib's FuncAnimation + FFMpegWriter.

A session is simulated on the Glen circuit (``pitbox.sim``, laps of about 88.5 s, the
closest of the simulator's tracks to a 90-second lap; an early brake on lap 1) and imported
into a store under ``bench/out/`` (reused when present). Both sides then make the same
1280x720, 30 fps H.264 video (libx264 ``-preset veryfast -crf 23``, the same bundled ffmpeg
from imageio-ffmpeg) of lap 1 against lap 2, synchronised by distance, each in a fresh
process started by this script and timed from start to exit (interpreter start-up, imports,
loading the laps, drawing, encoding; CPU of the process and its ffmpeg child included):

==============  ==========================================================================
step            what runs
==============  ==========================================================================
pitbox video    ``pitbox video compare S:1 S:2 --out ...`` (the CLI): Pillow frames in
                YUV, static parts once, drawing threads ahead of the ffmpeg encoder
matplotlib      this file with ``--peer``: the same laps from ``pitbox.analysis``
                (``compare_laps``, ``lap_xy``), one figure with the same content (timers,
                running delta, track map coloured by gain/loss with both cars, delta
                ribbon, speed/throttle/brake/steering/gear traces with a cursor and the
                current values), ``FuncAnimation(fig, update, frames=n)`` saved with
                ``FFMpegWriter`` (which pipes each redrawn frame to ffmpeg)
==============  ==========================================================================

The real-time ratio is seconds of video per second of wall time; the goal is at least 2
(a 90 s lap in 45 s or less) on the 2-core development machine. matplotlib is in the
``dev`` extra (``pip install matplotlib``); without it the peer is skipped.

Run: ``.venv/bin/python bench/video_bench.py [--repeat 3] [--skip-peer] [--peer-frames N] [--quick]``
(``--quick``: one run each, the peer on its first 300 frames).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
TRACK = "pitboxsim_glen"
SIZE = (1280, 720)
FPS = 30
X264 = ["-preset", "veryfast", "-crf", "23"]


def build() -> tuple[Path, str]:
    """The store and the session id (simulated and imported once, then reused)."""
    from pitbox.sim import simulate_session
    from pitbox.store import Store, import_paths

    OUT.mkdir(parents=True, exist_ok=True)
    ibt = OUT / "video_bench_glen.ibt"
    data = OUT / "video_store"
    if not ibt.exists():
        simulate_session(track=TRACK, laps=3, faults=["1:T1:brake_early:20"], seed=7, out=ibt)
    import_paths([ibt], data)
    cat = Store(data).sessions()
    return data, str(cat[cat.track == TRACK].id.iloc[0])


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (the process and its children) of a command."""
    before = os.times()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu


def load() -> str:
    return os.getloadavg()[0].__format__(".2f") if hasattr(os, "getloadavg") else "n/a"


# -- the matplotlib peer -------------------------------------------------------------------

def peer(data: Path, sid: str, out: Path, max_frames: int | None) -> None:
    """The same video with matplotlib (FuncAnimation + FFMpegWriter)."""
    import imageio_ffmpeg
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.animation import FFMpegWriter, FuncAnimation
    from matplotlib.collections import LineCollection

    import pitbox.analysis as pa

    plt.rcParams["animation.ffmpeg_path"] = imageio_ffmpeg.get_ffmpeg_exe()
    s = pa.load_session(sid, data)
    lap, ref = s.lap(1), s.lap(2)
    res = pa.compare_laps(lap, ref, data)
    lt, rt = res["traces"]
    delta = res["delta"]
    xl = pa.lap_xy(s, lt, data=data)
    xr = pa.lap_xy(s, rt, data=data)
    k = rt.length_m / lt.length_m
    hold = 1.0
    n = int(np.ceil(lt.lap_time_s * FPS - 1e-9)) + 1 + int(hold * FPS)
    if max_frames:
        n = min(n, max_frames)
    t_lap = np.minimum(np.arange(n) / FPS, lt.lap_time_s)
    d_lap = np.interp(t_lap, lt.time_s, lt.distance_m)
    d_ref = d_lap * k
    t_ref = np.interp(d_ref, rt.distance_m, rt.time_s)
    run_delta = np.interp(d_ref, delta.distance_m, delta.delta_s)

    bg, panel, fg, muted = "#101216", "#1c1f25", "#e6e8ec", "#8c929c"
    c_lap, c_ref = "#ff9614", "#28aaff"
    fig = plt.figure(figsize=(SIZE[0] / 100, SIZE[1] / 100), dpi=100, facecolor=bg)
    timer_a = fig.text(0.01, 0.9, "", color=fg, fontsize=28, family="monospace")
    timer_b = fig.text(0.99, 0.9, "", color=fg, fontsize=28, family="monospace", ha="right")
    fig.text(0.01, 0.965, f"Lap {int(lap.row.lap)}", color=c_lap, fontsize=14, weight="bold")
    fig.text(0.99, 0.965, f"Reference: lap {int(ref.row.lap)}", color=c_ref, fontsize=14, weight="bold", ha="right")
    fig.text(0.5, 0.965, "delta (sync by distance)", color=muted, fontsize=11, ha="center")
    delta_text = fig.text(0.5, 0.9, "", fontsize=32, family="monospace", ha="center", weight="bold")

    ax_map = fig.add_axes((0.01, 0.02, 0.43, 0.84), facecolor=panel)
    ax_map.set_aspect("equal")
    ax_map.set_xticks([])
    ax_map.set_yticks([])
    x, y = xr.x_m.to_numpy(), xr.y_m.to_numpy()
    rate = np.gradient(np.interp(rt.distance_m, delta.distance_m, delta.delta_s)) * 1000
    colours = np.where(rate > 0.4, "#e13737", np.where(rate < -0.4, "#28be5a", "#60646c"))
    segs = np.stack([np.column_stack([x[:-1], y[:-1]]), np.column_stack([x[1:], y[1:]])], axis=1)
    ax_map.add_collection(LineCollection(segs, colors=colours[:-1], linewidths=5))
    ax_map.autoscale()
    for c in res["corners"]:
        cx, cy = np.interp(c["apex_m"], rt.distance_m, x), np.interp(c["apex_m"], rt.distance_m, y)
        ax_map.text(cx, cy, " " + c["name"], color=muted, fontsize=10, weight="bold")
    (dot_ref,) = ax_map.plot([], [], "o", ms=16, mfc="none", mec=c_ref, mew=3)
    (dot_lap,) = ax_map.plot([], [], "o", ms=10, color=c_lap)

    names = ["Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear"]
    factors = {"Speed": 3.6, "Throttle": 100, "Brake": 100, "SteeringWheelAngle": 180 / np.pi, "Gear": 1}
    heights = [1.3, 1.5, 0.9, 0.9, 1.0, 0.8]
    top, bottom, left, width = 0.86, 0.05, 0.455, 0.535
    total = sum(heights)
    axes, cursors, readouts = [], [], []
    ytop = top
    for i, h in enumerate(heights):
        hh = (top - bottom) * h / total
        ax = fig.add_axes((left, ytop - hh + 0.004, width, hh - 0.008), facecolor=panel)
        ytop -= hh
        ax.set_xlim(0, lt.length_m)
        ax.tick_params(colors=muted, labelsize=8)
        if i < len(heights) - 1:
            ax.set_xticklabels([])
        if i == 0:
            dd = delta.distance_m / k
            ax.fill_between(dd, delta.delta_s, 0, where=delta.delta_s >= 0, color="#e13737", lw=0)
            ax.fill_between(dd, delta.delta_s, 0, where=delta.delta_s < 0, color="#28be5a", lw=0)
            ax.plot(dd, delta.delta_s, color=fg, lw=1)
            ax.set_ylabel("delta s", color=muted, fontsize=9)
            readouts.append((ax.text(0.99, 0.85, "", transform=ax.transAxes, ha="right", color=fg, fontsize=11,
                                     family="monospace"), None, None))
        else:
            name = names[i - 1]
            f = factors[name]
            ds = "steps-post" if name == "Gear" else "default"
            ax.plot(rt.distance_m / k, rt.channels[name] * f, color=c_ref, lw=1.5, drawstyle=ds)
            ax.plot(lt.distance_m, lt.channels[name] * f, color=c_lap, lw=1.5, drawstyle=ds)
            ax.set_ylabel(name.replace("SteeringWheelAngle", "Steering"), color=muted, fontsize=9)
            va = np.interp(d_lap, lt.distance_m, lt.channels[name]) * f
            vb = np.interp(d_ref, rt.distance_m, rt.channels[name]) * f
            readouts.append((ax.text(0.99, 0.8, "", transform=ax.transAxes, ha="right", color=fg, fontsize=11,
                                     family="monospace"), va, vb))
        cursors.append(ax.axvline(0, color="white", lw=2))
        axes.append(ax)

    def update(i: int) -> list:
        timer_a.set_text(_mmss(t_lap[i]))
        timer_b.set_text(_mmss(t_ref[i]))
        delta_text.set_text(f"{run_delta[i]:+.3f}")
        delta_text.set_color("#e13737" if run_delta[i] > 0 else "#28be5a")
        dot_lap.set_data([np.interp(d_lap[i], lt.distance_m, xl.x_m)], [np.interp(d_lap[i], lt.distance_m, xl.y_m)])
        dot_ref.set_data([np.interp(d_ref[i], rt.distance_m, x)], [np.interp(d_ref[i], rt.distance_m, y)])
        for c in cursors:
            c.set_xdata([d_lap[i], d_lap[i]])
        for j, (txt, va, vb) in enumerate(readouts):
            txt.set_text(f"{d_lap[i]:.0f} m" if j == 0 else f"{va[i]:.0f} | {vb[i]:.0f}")
        return []

    writer = FFMpegWriter(fps=FPS, codec="libx264", extra_args=[*X264, "-pix_fmt", "yuv420p"])
    FuncAnimation(fig, update, frames=n, blit=False).save(str(out), writer=writer, dpi=100)


def _mmss(t: float) -> str:
    m, s = divmod(float(t), 60.0)
    return f"{int(m)}:{s:06.3f}"


# -- the run ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs of each step; the best is kept")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--peer-frames", type=int, help="peer: only the first N frames (its ratio then extrapolates)")
    ap.add_argument("--quick", action="store_true", help="one run of each, the peer on its first 300 frames")
    ap.add_argument("--peer", nargs=3, metavar=("DATA", "SESSION", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat, args.peer_frames = 1, args.peer_frames or 300
    if args.peer:
        peer(Path(args.peer[0]), args.peer[1], Path(args.peer[2]), args.peer_frames)
        return 0

    data, sid = build()
    import pitbox.analysis as pa
    from pitbox.video import probe

    s = pa.load_session(sid, data)
    lap_s = s.lap(1).time_s
    print(f"session {sid} on {TRACK}: lap 1 {lap_s:.3f} s against lap 2 {s.lap(2).time_s:.3f} s; "
          f"{SIZE[0]}x{SIZE[1]} at {FPS} fps, libx264 {' '.join(X264)}; {os.cpu_count()} CPUs")
    exe = Path(sys.executable).with_name("pitbox")
    ours_out, peer_out = OUT / "video_bench_pitbox.mp4", OUT / "video_bench_matplotlib.mp4"
    steps = {"pitbox video": [str(exe), "video", "compare", f"{sid}:1", f"{sid}:2", "--out", str(ours_out),
                              "--data", str(data), "--size", f"{SIZE[0]}x{SIZE[1]}", "--fps", str(FPS)]}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib, or the dev extra): peer skipped")
        args.skip_peer = True
    if not args.skip_peer:
        steps["matplotlib"] = [sys.executable, str(Path(__file__).resolve()), "--peer", str(data), sid, str(peer_out),
                               *(["--peer-frames", str(args.peer_frames)] if args.peer_frames else [])]
    rows = []
    for name, cmd in steps.items():
        best = None
        for _ in range(args.repeat if name == "pitbox video" else 1):  # the peer takes minutes: once
            la = load()
            wall, cpu = timed(cmd)
            if best is None or wall < best[0]:
                best = (wall, cpu, la, load())
        info = probe(ours_out if name == "pitbox video" else peer_out)
        rows.append((name, info.duration_s or 0.0, *best))
        print(f"{name}: {rows[-1][1]:.1f} s of video in {best[0]:.1f} s wall, {best[1]:.1f} s CPU "
              f"(load {best[2]} before, {best[3]} after)", flush=True)
    ours_ratio = rows[0][1] / rows[0][2]
    print("\n| step | video s | wall s | real-time ratio | CPU s | video s / CPU s | wall / pitbox | CPU / pitbox "
          "| load before / after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, dur, wall, cpu, la, lb in rows:
        print(f"| {name} | {dur:.1f} | {wall:.1f} | {dur / wall:.2f} | {cpu:.1f} | {dur / cpu:.2f} | "
              f"{(wall / dur) / (rows[0][2] / rows[0][1]):.2f} | {(cpu / dur) / (rows[0][3] / rows[0][1]):.2f} "
              f"| {la} / {lb} |")
    goal = "met" if ours_ratio >= 2.0 else "NOT met"
    print(f"\ngoal: at least 2x real time -> {ours_ratio:.2f}x ({goal}); "
          f"a {lap_s:.1f} s lap video in {rows[0][2]:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
