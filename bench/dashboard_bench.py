"""Live dashboard benchmark: sample-to-paint lag measured in the page, PitBox's anywidget
canvas against a plotly ``FigureWidget`` updated per frame, in the same run.

A :class:`~pitbox.live.StreamServer` in this process plays a simulated lap (the lap
simulator's channels, with ``pitbox_lap_dist_m`` and a ``pitbox_delta_s``) at 10, 30 or
60 Hz real time. A private JupyterLab runs a generated notebook in headless Chromium:

* ``pitbox``: ``Dashboard(url, rate=R)`` (the live canvas fed by the latest-state pump);
* ``plotly`` (the peer): a ``LiveFeed`` whose ``on_message`` appends each frame and updates
  a ``FigureWidget`` (the same six lanes by distance: speed, throttle, brake, steering,
  gear, delta; and the car on a map) in one ``batch_update`` per frame, the plain way a
  skilled user would write it.

Lag: from the kernel receiving the sample (``time.time()`` in the kernel, stamped on the
update) to the page having drawn it (``Date.now()`` after drawing in
``requestAnimationFrame`` for PitBox; plotly's ``plotly_afterplot`` event for the peer);
the same machine clock. For PitBox an update carrying several samples is counted at its
oldest one (an upper bound). Each scenario runs ``--minutes`` (default 5) after a warm-up;
the trend is the p50 and p99 of the first and the last minute and the slope of a line
through every lag. CPU: the kernel, the Jupyter server (without its kernels) and every
Chromium process, in % of one core over the measured window. Late open: the kernel starts
streaming the moment its cell runs, while the page is still loading the widget's JavaScript
(the case where plotly builds a backlog); the time to the first paint and the lag over the
first 30 s after the cell ran (and in its last 5 s) show whether a backlog builds and
drains. One JupyterLab server and one browser per scenario.

Run: ``.venv/bin/python bench/dashboard_bench.py [--minutes 5] [--rates 10 30 60]``
(``--quick``: 30 Hz for half a minute, to check the bench runs end to end).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from pitbox.dashboard.testing import JS_KERNEL_IDLE, JupyterServer, open_browser, run_all_cells
from pitbox.live import StreamServer

STARTUP_S = 30.0
WARMUP_S = 10.0

PITBOX_NB = """\
from pitbox.dashboard import Dashboard
dash = Dashboard(URL, rate=RATE, lap_chart=False)
dash
"""

PEER_NB = """\
import threading, time, math
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from pitbox.live import LiveFeed
from pitbox.dashboard.state import SUBSCRIBE_CHANNELS, TRACE_CHANNELS, scalar

LANES = list(TRACE_CHANNELS)
SCALE = {"Speed": 3.6, "Throttle": 100, "Brake": 100, "SteeringWheelAngle": 57.29578, "Gear": 1, "pitbox_delta_s": 1}
spec = [[{}, {"rowspan": len(LANES)}]] + [[{}, None] for _ in LANES[1:]]
base = make_subplots(rows=len(LANES), cols=2, shared_xaxes=True, column_widths=[0.7, 0.3], specs=spec,
                     vertical_spacing=0.02)
for i, name in enumerate(LANES):
    base.add_trace(go.Scattergl(x=[], y=[], mode="lines", name=name), row=i + 1, col=1)
a = [2 * math.pi * k / 200 for k in range(201)]
base.add_trace(go.Scatter(x=[math.cos(v) for v in a], y=[math.sin(v) for v in a], mode="lines",
                          line={"color": "#bbb", "width": 6}), row=1, col=2)
base.add_trace(go.Scatter(x=[], y=[], mode="markers", marker={"color": "#ff2d55", "size": 12}), row=1, col=2)
base.update_layout(height=560, width=1100, showlegend=False, margin={"l": 40, "r": 10, "t": 10, "b": 20})
fig = go.FigureWidget(base)
buf = {k: [] for k in ["d", *LANES]}

def on_message(msg):
    if msg.get("type") != "frame":
        return
    t_ms = time.time() * 1000.0
    v = msg["values"]
    d = scalar(v.get("pitbox_lap_dist_m"))
    if buf["d"] and d < buf["d"][-1] - 50:
        for k in buf:
            buf[k].clear()
    buf["d"].append(d)
    for k in LANES:
        buf[k].append(scalar(v.get(k)) * SCALE[k])
    pct = scalar(v.get("LapDistPct"))
    with fig.batch_update():
        for i, k in enumerate(LANES):
            fig.data[i].x = buf["d"]
            fig.data[i].y = buf[k]
        fig.data[len(LANES) + 1].x = [math.cos(2 * math.pi * pct)]
        fig.data[len(LANES) + 1].y = [math.sin(2 * math.pi * pct)]
        fig.layout.meta = {"t": t_ms}

feed = LiveFeed(URL, channels=SUBSCRIBE_CHANNELS, rate=RATE, on_message=on_message, max_frames=100).start()
fig
"""

MINIMAL_NB = '''\
import time
import anywidget
import numpy as np
import traitlets
from pitbox.live import LiveFeed
from pitbox.dashboard.state import SUBSCRIBE_CHANNELS, scalar

class Mini(anywidget.AnyWidget):
    ack = traitlets.Bool(False).tag(sync=True)
    _esm = """
export default { render({ model, el }) {
  const c = document.createElement("canvas"); c.width = 900; c.height = 240; el.appendChild(c);
  const ctx = c.getContext("2d");
  const st = window.__miniStats = window.__miniStats || { lags: [], times: [], paints: 0 };
  let todo = [], last = null, scheduled = false;
  function paint() {
    scheduled = false;
    ctx.strokeStyle = "#ff2d55"; ctx.beginPath();
    for (const [t, d, v] of todo) {
      const x = (d / 4000) * 900, y = 230 - v * 3;
      if (last && d >= last[0]) { ctx.moveTo(last[0] / 4000 * 900, 230 - last[1] * 3); ctx.lineTo(x, y); }
      else ctx.clearRect(0, 0, 900, 240);
      last = [d, v];
    }
    ctx.stroke();
    const now = Date.now();
    for (const [t] of todo) { st.lags.push(now - t); st.times.push(now); }
    st.paints++; todo = [];
    if (model.get("ack")) model.send({ type: "ack" });
  }
  model.on("msg:custom", (msg, buffers) => {
    const b = buffers[0];
    const a = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    todo.push([msg.t, a[0], a[1]]);
    if (!scheduled) { scheduled = true; requestAnimationFrame(paint); }
  });
} };
"""

w = Mini(ack=ACK)

def on_message(msg):
    if msg.get("type") != "frame":
        return
    t_ms = time.time() * 1000.0
    v = msg["values"]
    row = np.asarray([scalar(v.get("pitbox_lap_dist_m")), scalar(v.get("Speed"))], dtype=np.float32)
    w.send({"t": t_ms}, [row.tobytes()])

feed = LiveFeed(URL, channels=SUBSCRIBE_CHANNELS, rate=RATE, on_message=on_message, max_frames=100).start()
w
'''

#: Installed in the peer's page: every plotly redraw records the lag of the sample it shows.
PEER_HOOK = """() => {
  const st = window.__peerStats = window.__peerStats || {lags: [], times: [], hooked: new Set()};
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    if (st.hooked.has(gd) || !gd.on) continue;
    st.hooked.add(gd);
    gd.on('plotly_afterplot', () => {
      const m = gd.layout && gd.layout.meta;
      if (m && m.t && m.t !== st.lastT) { const now = Date.now(); st.lags.push(now - m.t); st.times.push(now); st.lastT = m.t; }
    });
  }
  return st.hooked.size > 0;
}"""


def lap_frames(rate: int) -> list[dict[str, Any]]:
    """Two simulated laps as frame values at ``rate`` Hz (with the live coach's derived channels)."""
    from pitbox.sim import load_track, simulate_to_channels

    sim = simulate_to_channels("pitboxsim_demo", laps=2, seed=1, in_lap=False)
    ch = sim.channels
    length = load_track("pitboxsim_demo").length_m
    t = np.asarray(ch["SessionTime"], dtype=float)
    lap = np.asarray(ch["Lap"])
    keep = np.flatnonzero(lap >= 1)
    out = []
    next_t = -1.0
    for i in keep:
        if t[i] + 1e-9 < next_t:
            continue
        next_t = t[i] + 1.0 / rate
        pct = float(ch["LapDistPct"][i])
        out.append({"Lap": int(lap[i]), "LapDistPct": pct, "pitbox_lap_dist_m": pct * length,
                    "Speed": float(ch["Speed"][i]), "Throttle": float(ch["Throttle"][i]),
                    "Brake": float(ch["Brake"][i]), "SteeringWheelAngle": float(np.asarray(ch["SteeringWheelAngle"][i]).ravel()[-1]),
                    "Gear": int(ch["Gear"][i]), "pitbox_delta_s": 0.4 * math.sin(pct * 2 * math.pi),
                    "pitbox_predicted_lap_s": 84.0, "FuelLevel": float(ch["FuelLevel"][i])})
    return out


class Publisher:
    """Plays frames at ``rate`` Hz real time into a stream server, looping, until stopped."""

    def __init__(self, server: StreamServer, frames: list[dict[str, Any]], rate: int):
        self.server, self.frames, self.rate = server, frames, rate
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        period = 1.0 / self.rate
        due = time.perf_counter()
        tick = 0
        while not self.stop.is_set():
            values = dict(self.frames[tick % len(self.frames)])
            values["Lap"] += 2 * (tick // len(self.frames))
            self.server.publish_frame(tick, tick * period, values)
            tick += 1
            due += period
            delay = due - time.perf_counter()
            if delay > 0:
                self.stop.wait(delay)
            elif delay < -1.0:
                due = time.perf_counter()


def write_notebook(path: Path, url: str, rate: int, body: str) -> None:
    cells = [{"cell_type": "code", "execution_count": None, "id": "p", "metadata": {"tags": ["parameters"]},
              "outputs": [], "source": f"URL = {url!r}\nRATE = {rate}"},
             {"cell_type": "code", "execution_count": None, "id": "b", "metadata": {}, "outputs": [], "source": body}]
    nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                      "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")


class Cpu:
    """CPU seconds of a set of processes between two snapshots."""

    def __init__(self, procs: list[psutil.Process]):
        self.procs = procs
        self.t0 = time.monotonic()
        self.c0 = self._cpu()

    def _cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            try:
                c = p.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
        return total

    def percent(self) -> float:
        return 100.0 * (self._cpu() - self.c0) / max(1e-9, time.monotonic() - self.t0)


def browser_procs() -> list[psutil.Process]:
    me = psutil.Process(os.getpid())
    return [p for p in me.children(recursive=True) if "chrom" in (p.name() or "").lower()]


def summary(lags: np.ndarray, times: np.ndarray) -> dict[str, Any]:
    if not len(lags):
        return {"n": 0}
    minutes = (times - times[0]) / 60000.0
    first = lags[minutes < 1.0]
    last = lags[minutes >= minutes[-1] - 1.0]
    slope = float(np.polyfit(minutes, lags, 1)[0]) if len(lags) > 10 and minutes[-1] > 0 else 0.0
    return {"n": int(len(lags)), "p50": float(np.percentile(lags, 50)), "p99": float(np.percentile(lags, 99)),
            "max": float(lags.max()), "first_p50": float(np.percentile(first, 50)),
            "first_p99": float(np.percentile(first, 99)), "last_p50": float(np.percentile(last, 50)),
            "last_p99": float(np.percentile(last, 99)), "slope_ms_per_min": slope, "minutes": float(minutes[-1])}


def breakdown(page: Any, since_ms: float) -> dict[str, Any]:
    """Where PitBox's lag goes, per paint: kernel wait (oldest sample to send), transport (send
    to the page's handler), page (handler to painted); and every sample's own lag [ms]."""
    got = page.evaluate("() => { const s = window.__pitboxDashboardStats; return [s.times, s.kwait, s.transport, "
                        "s.page, s.sampleLags, s.sampleTimes]; }")
    times = np.asarray(got[0], dtype=float)
    out: dict[str, Any] = {}
    for name, arr in zip(("kwait", "transport", "page"), got[1:4], strict=True):
        a = np.asarray(arr, dtype=float)
        a = a[times[: len(a)] >= since_ms] if len(a) == len(times) else a
        if len(a):
            out[f"{name}_p50"], out[f"{name}_p99"] = float(np.percentile(a, 50)), float(np.percentile(a, 99))
    sl, st = np.asarray(got[4], dtype=float), np.asarray(got[5], dtype=float)
    sl = sl[st >= since_ms]
    if len(sl):
        out["sample_p50"], out["sample_p99"] = float(np.percentile(sl, 50)), float(np.percentile(sl, 99))
    return out


def read_lags(page: Any, impl: str, since_ms: float) -> tuple[np.ndarray, np.ndarray]:
    key = {"pitbox": "__pitboxDashboardStats", "minimal": "__miniStats", "minimal_ack": "__miniStats"}.get(
        impl, "__peerStats")
    got = page.evaluate(f"() => {{ const s = window.{key}; return s ? [s.lags, s.times] : [[], []]; }}")
    lags, times = np.asarray(got[0], dtype=float), np.asarray(got[1], dtype=float)
    keep = times >= since_ms
    return lags[keep], times[keep]


def run_scenario(impl: str, rate: int, minutes: float, work: Path, frames: list[dict[str, Any]]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    stream = StreamServer("127.0.0.1", 0).start()
    pub = Publisher(stream, frames, rate)
    pub.thread.start()
    root = work / f"{impl}-{rate}"
    root.mkdir(parents=True)
    write_notebook(root / "bench.ipynb", stream.url, rate,
                   {"pitbox": PITBOX_NB, "minimal": MINIMAL_NB.replace("ACK)", "False)"),
                    "minimal_ack": MINIMAL_NB.replace("ACK)", "True)")}.get(impl, PEER_NB))
    server = JupyterServer(root, root / "home").start()
    result: dict[str, Any] = {"impl": impl, "rate": rate}
    try:
        with sync_playwright() as p:
            browser = open_browser(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(server.lab_url("bench.ipynb"))
            # start-up: the kernel streams from the moment the cell runs, while the page is still
            # loading the widget's JavaScript (plotly.js, about 3.5 MB): the page opens "late"
            page.wait_for_function(JS_KERNEL_IDLE, timeout=300_000)
            opened = time.time() * 1000.0
            run_all_cells(page)
            if impl in ("pitbox", "minimal", "minimal_ack"):
                key = "__pitboxDashboardStats" if impl == "pitbox" else "__miniStats"
                page.wait_for_function(f"() => window.{key} && window.{key}.paints > 0", timeout=300_000)
            else:
                page.wait_for_function(PEER_HOOK, timeout=300_000, polling=50)
            result["late_first_paint_s"] = (time.time() * 1000.0 - opened) / 1000.0
            page.wait_for_timeout(STARTUP_S * 1000)  # the bench's start-up window is a fixed span of time
            lags, times = read_lags(page, impl, opened)
            result["late_p50"] = float(np.percentile(lags, 50)) if len(lags) else math.nan
            result["late_p99"] = float(np.percentile(lags, 99)) if len(lags) else math.nan
            result["late_max"] = float(lags.max()) if len(lags) else math.nan
            last = lags[times >= times[-1] - 5000] if len(lags) else lags
            result["late_end_p50"] = float(np.percentile(last, 50)) if len(last) else math.nan
            page.wait_for_timeout(WARMUP_S * 1000)
            kernel = [psutil.Process(pid) for pid in server.kernel_pids().values()]
            srv = [psutil.Process(server.proc.pid)] if server.proc else []
            cpus = {"kernel": Cpu(kernel), "server": Cpu(srv), "browser": Cpu(browser_procs())}
            since = time.time() * 1000.0
            page.wait_for_timeout(minutes * 60_000)  # the measured window is a fixed span of time
            result.update({k: c.percent() for k, c in cpus.items()})
            result.update(summary(*read_lags(page, impl, since)))
            if impl == "pitbox":
                result.update(breakdown(page, since))
            browser.close()
    finally:
        server.stop()
        pub.stop.set()
        pub.thread.join(5)
        stream.stop()
    return result


def fmt(v: Any, spec: str = ".0f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def table(results: list[dict[str, Any]]) -> str:
    head = ("| view | Hz | lag p50 ms | p99 ms | max ms | 1st min p50/p99 | last min p50/p99 | trend ms/min | "
            f"CPU kernel / server / browser % | late open: first paint s, {STARTUP_S:.0f} s lag p50/p99/max, "
            "last 5 s p50 ms |")
    lines = [head, "| --- " * 10 + "|"]
    for r in results:
        lines.append(
            f"| {r['impl']} | {r['rate']} | {fmt(r.get('p50'))} | {fmt(r.get('p99'))} | {fmt(r.get('max'))} | "
            f"{fmt(r.get('first_p50'))} / {fmt(r.get('first_p99'))} | {fmt(r.get('last_p50'))} / {fmt(r.get('last_p99'))} | "
            f"{fmt(r.get('slope_ms_per_min'), '+.1f')} | {fmt(r.get('kernel'))} / {fmt(r.get('server'))} / "
            f"{fmt(r.get('browser'))} | {fmt(r.get('late_first_paint_s'), '.1f')}, {fmt(r.get('late_p50'))} / "
            f"{fmt(r.get('late_p99'))} / {fmt(r.get('late_max'))}, {fmt(r.get('late_end_p50'))} |")
    by = {(r["impl"], r["rate"]): r for r in results}
    lines.append("")
    lines.append("| Hz | p50 plotly / pitbox | p99 plotly / pitbox |")
    lines.append("| --- | --- | --- |")
    for rate in sorted({r["rate"] for r in results}):
        a, b = by.get(("plotly", rate)), by.get(("pitbox", rate))
        if a and b and b.get("p50") and b.get("p99"):
            lines.append(f"| {rate} | {a['p50'] / b['p50']:.1f}x | {a['p99'] / b['p99']:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="measured minutes per scenario (default 5)")
    ap.add_argument("--rates", type=int, nargs="+", default=[10, 30, 60])
    ap.add_argument("--impl", nargs="+", default=["pitbox", "plotly"], choices=["pitbox", "plotly", "minimal", "minimal_ack"],
                    help="views to run (minimal: the floor, a bare anywidget canvas sent every sample unpaced)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--quick", action="store_true",
                    help="a check that the bench runs end to end: 30 Hz, 0.5 min, 10 s start-up and 5 s warm-up "
                         "windows (not the numbers for the table)")
    args = ap.parse_args(argv)
    if args.quick:
        global STARTUP_S, WARMUP_S
        STARTUP_S, WARMUP_S = 10.0, 5.0
        args.minutes, args.rates = min(args.minutes, 0.5), [30]
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    results = []
    with tempfile.TemporaryDirectory(prefix="pitbox-dash-bench-") as tmp:
        for rate in args.rates:
            frames = lap_frames(rate)
            for impl in args.impl:
                t0 = time.monotonic()
                r = run_scenario(impl, rate, args.minutes, Path(tmp), frames)
                r["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
                results.append(r)
                print(f"{impl} {rate} Hz: p50 {fmt(r.get('p50'))} ms, p99 {fmt(r.get('p99'))} ms, "
                      f"trend {fmt(r.get('slope_ms_per_min'), '+.1f')} ms/min, late max {fmt(r.get('late_max'))} ms "
                      f"({time.monotonic() - t0:.0f} s, load {r['load']:.1f})", file=sys.stderr, flush=True)
    print(table(results))
    rows = [r for r in results if r["impl"] == "pitbox" and "page_p50" in r]
    if rows:
        print("\n| Hz | PitBox lag, p50 / p99 ms: kernel wait | transport | page | every sample's own lag |")
        print("| --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['rate']} | {fmt(r.get('kwait_p50'))} / {fmt(r.get('kwait_p99'))} | "
                  f"{fmt(r.get('transport_p50'))} / {fmt(r.get('transport_p99'))} | {fmt(r.get('page_p50'))} / "
                  f"{fmt(r.get('page_p99'))} | {fmt(r.get('sample_p50'))} / {fmt(r.get('sample_p99'))} |")
    loads = ", ".join(f"{r['load']:.1f}" for r in results)
    print(f"\nload average at start {load0[0]:.1f}, after each run {loads} (2 cores shared with other work)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
