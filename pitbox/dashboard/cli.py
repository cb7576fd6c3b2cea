"""``pitbox live-demo``: a simulated practice session with faults, played live through the
emulator into the recorder (stream and live coach on), and JupyterLab on the live dashboard."""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

from pitbox.config import data_dir
from pitbox.errors import ConfigError
from pitbox.signals import stop_on_signals

ROOT_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
DEMO_FAULTS = ("2:T3:brake_early:20", "4:T6:late_throttle:20", "6:T2:low_min_speed:8")
#: The notebook written when the project's notebooks/ folder is not there (an installed package).
FALLBACK_NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "params", "metadata": {"tags": ["parameters"]},
         "outputs": [], "source": "import os\n\nURL = os.environ.get(\"PITBOX_LIVE_URL\", \"ws://127.0.0.1:8765\")\n"
                                  "TOKEN = os.environ.get(\"PITBOX_TOKEN\") or None\n"
                                  "REFERENCE = os.environ.get(\"PITBOX_REFERENCE\") or None"},
        {"cell_type": "code", "execution_count": None, "id": "dash", "metadata": {}, "outputs": [],
         "source": "from pitbox.dashboard import Dashboard\n\ndash = Dashboard(URL, token=TOKEN, reference=REFERENCE)\ndash"},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "live-demo", help="a simulated practice session live, with the live coach and the dashboard in JupyterLab",
        description="Simulate a practice session with injected faults, play it through the iRacing emulator at "
                    "real time (or --speed X) into `pitbox record` with the stream and the live coach on, start "
                    "JupyterLab on notebooks/live_dashboard.ipynb and print the URL to open. The session starts "
                    "when the notebook is opened (--no-wait: at once). Ctrl-C stops everything cleanly.")
    p.add_argument("--data", default=None, help="store folder (default: $PITBOX_DATA or ./data)")
    p.add_argument("--speed", type=float, default=1.0, metavar="X", help="times real time (default 1)")
    p.add_argument("--laps", type=int, default=8, help="timed laps (default 8)")
    p.add_argument("--track", default="pitboxsim_demo", help="simulated track (default pitboxsim_demo; see pitbox tracks)")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    p.add_argument("--faults", nargs="*", default=list(DEMO_FAULTS), metavar="LAP:CORNER:FAULT:SIZE",
                   help=f"injected faults (default {' '.join(DEMO_FAULTS)})")
    p.add_argument("--port", type=int, default=0, help="JupyterLab's port (default: a free one)")
    p.add_argument("--stream-port", type=int, default=0, help="the recorder's stream port (default: a free one)")
    p.add_argument("--no-wait", action="store_true", help="start the session at once, not when the notebook opens")
    p.add_argument("--loop", action="store_true", help="play the session again and again until stopped")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop everything after S seconds")
    p.add_argument("--json", action="store_true", help="print the URLs as one JSON line once ready")
    p.set_defaults(func=cmd_live_demo)


def _simulate(args: argparse.Namespace, folder: Path) -> Path:
    from pitbox.sim import simulate_session

    if args.laps < 1:
        raise ConfigError(f"live-demo: --laps {args.laps}: expected at least 1")
    if args.speed <= 0:
        raise ConfigError(f"live-demo: --speed {args.speed}: expected a positive factor of real time")
    out = folder / f"live-demo-{args.track}-seed{args.seed}.ibt"
    faults = [f for f in args.faults if int(f.split(":", 1)[0]) <= args.laps]
    simulate_session(track=args.track, laps=args.laps, faults=faults, seed=args.seed, out=out)
    return out


def _notebook(root: Path, url: str) -> Path:
    from pitbox.dashboard.jupyter import inject_parameters

    root.mkdir(parents=True, exist_ok=True)
    src = ROOT_NOTEBOOKS / "live_dashboard.ipynb"
    if not src.is_file():
        src = root / "_template.ipynb"
        src.write_text(json.dumps(FALLBACK_NOTEBOOK), encoding="utf-8")
    return inject_parameters(src, root / "live_dashboard.ipynb", URL=url)


def _notebook_open(server: Any, name: str) -> bool:
    """True once a browser has the notebook open (its kernel has a connection)."""
    import urllib.error

    try:
        sessions = server.api("sessions")
    except (OSError, urllib.error.URLError, ValueError):
        return False
    for s in sessions:
        if str(s.get("path", "")).endswith(name) and (s.get("kernel") or {}).get("connections", 0) >= 1:
            return True
    return False


def cmd_live_demo(args: argparse.Namespace) -> int:
    from pitbox.dashboard.jupyter import JupyterServer
    from pitbox.dashboard.practice import Practice

    data = data_dir(args.data)
    work = data / "_demo" / "live"
    work.mkdir(parents=True, exist_ok=True)
    print(f"simulating a practice session on {args.track}: {args.laps} timed laps, faults {' '.join(args.faults)}",
          flush=True)
    ibt = _simulate(args, work)
    stop = threading.Event()
    practice = Practice(ibt, data, work, speed=args.speed, stream_port=args.stream_port, loop=args.loop,
                        name="live-demo")
    server = JupyterServer(work / "notebooks", work / "jupyter", port=args.port)
    t0 = time.monotonic()
    try:
        with stop_on_signals(stop.set):
            practice.start()
            assert practice.url is not None
            print(f"recorder streaming on {practice.url} (live coach on), recording into {data}", flush=True)
            nb = _notebook(server.root, practice.url)
            server.extra_env["PITBOX_LIVE_URL"] = practice.url
            server.start()
            lab = server.lab_url(nb.name).replace("?reset&", "?")
            if args.json:
                pids = {"recorder": practice.recorder.pid if practice.recorder else None,
                        "jupyter": server.proc.pid if server.proc else None}
                print(json.dumps({"lab": lab, "stream": practice.url, "jupyter": server.url, "token": server.token,
                                  "notebook": str(nb), "pids": pids}), flush=True)
            print(f"\nopen the live dashboard:\n    {lab}\n", flush=True)
            if not args.no_wait:
                print("the session starts when the notebook is open (Run All to show the dashboard); Ctrl-C stops",
                      flush=True)
                while not stop.is_set() and not _notebook_open(server, nb.name):
                    if args.duration is not None and time.monotonic() - t0 > args.duration:
                        stop.set()
                    stop.wait(0.5)
            if not stop.is_set():
                practice.start_session()
                emulator = practice.emulator.pid if practice.emulator else None
                print(f"session started at {args.speed:g}x real time (emulator pid {emulator}); Ctrl-C stops",
                      flush=True)
            announced = False
            while not stop.is_set():
                if args.duration is not None and time.monotonic() - t0 > args.duration:
                    break
                if not announced and practice.emulator is not None and not practice.session_running:
                    announced = True
                    print("the session is over and stored; JupyterLab keeps running until Ctrl-C", flush=True)
                stop.wait(0.5)
    finally:
        print("stopping: emulator, recorder, JupyterLab", flush=True)
        practice.stop()
        server.stop()
    summary = practice.recorder_summary()
    if summary:
        print(summary, flush=True)
    return 0
