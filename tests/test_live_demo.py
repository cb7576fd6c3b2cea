"""``pitbox live-demo`` end to end: it simulates a session, starts the recorder with the
stream, JupyterLab on the live notebook, prints the URL, plays the session through the
emulator, and stops everything cleanly on Ctrl-C (SIGINT), storing the session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.name == "nt", reason="sends SIGINT to a child process (POSIX)")]


def test_live_demo_serves_the_dashboard_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    from pitbox.live import LiveFeed
    from pitbox.store import Store

    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "pitbox.cli", "live-demo", "--speed", "8", "--laps", "1",
                             "--no-wait", "--json", "--duration", "600", "--data", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    info = None
    feed = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("{"):
                info = json.loads(line)
            if line.startswith("session started"):
                break
        assert info is not None, "".join(lines)
        emulator = int(line.split("emulator pid ")[1].split(")")[0])
        # the printed URL opens the notebook, whose parameters point at the recorder's stream
        with urllib.request.urlopen(info["lab"], timeout=60) as r:  # noqa: S310 - loopback
            assert r.status == 200
        nb = json.loads(Path(info["notebook"]).read_text())
        assert info["stream"] in "".join("".join(c["source"]) for c in nb["cells"])
        feed = LiveFeed(info["stream"], channels=["Lap", "LapDistPct", "Speed"], rate=10).start()
        assert feed.wait(frames=20, timeout=120), "no frames from the demo's stream"
        pids = [info["pids"]["recorder"], info["pids"]["jupyter"], emulator]
        assert all(psutil.pid_exists(p) for p in pids)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = proc.communicate(timeout=120)
        lines.append(rest)
    finally:
        if feed is not None:
            feed.stop()
        if proc.poll() is None:  # the test failed midway: the demo's children run in sessions of their own
            children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for pid in children:
                try:
                    psutil.Process(pid).kill()
                except psutil.NoSuchProcess:
                    pass
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "stopping: emulator, recorder, JupyterLab" in out
    deadline = time.monotonic() + 30
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.monotonic() < deadline, f"processes left running: {pids}\n{out}"
        time.sleep(0.1)  # polls process exit, which no event announces to a non-parent
    sessions = Store(data).sessions()
    assert len(sessions) == 1, out  # the part of the session played before Ctrl-C is stored
