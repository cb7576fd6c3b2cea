"""The coach's notebooks run top to bottom (with nbmake) on a small simulated store, taking
the store from PITBOX_DATA as their ``parameters`` cell says; they are committed without
outputs. The live notebooks (dashboard, team view) take the stream from PITBOX_LIVE_URL:
here they run against a real stream server on 127.0.0.1 (the dashboard connects in the
background, so the notebook completes); what they show is tested in a real browser by
tests/test_dashboard_browser.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {"sessions_and_laps.ipynb", "compare_laps.ipynb", "coaching.ipynb", "live_dashboard.ipynb",
            "team_dashboard.ipynb"}
LIVE = {"live_dashboard.ipynb", "team_dashboard.ipynb"}


def test_notebooks_are_committed_clean_with_a_parameters_cell() -> None:
    assert EXPECTED <= {p.name for p in NOTEBOOKS}
    for p in NOTEBOOKS:
        nb = json.loads(p.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert "parameters" in code[0].get("metadata", {}).get("tags", []), p.name
        assert ("PITBOX_LIVE_URL" if p.name in LIVE else "PITBOX_DATA") in "".join(code[0]["source"]), p.name
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"{p.name} has outputs"


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sim = pytest.importorskip("pitbox.sim", reason="the lap simulator (pitbox.sim) is not installed")
    from pitbox.store import import_paths

    root = tmp_path_factory.mktemp("nb")
    sim.simulate_session(track="pitboxsim_demo", laps=5, faults=["2:T3:brake_early:20", "4:T6:late_throttle:20"],
                         seed=31, out=root / "a.ibt")
    sim.simulate_session(track="pitboxsim_demo", laps=4, faults=["3:T1:lockup:1.0"], seed=32, out=root / "b.ibt")
    data = root / "data"
    assert all(r.status == "imported" for r in import_paths([root / "a.ibt", root / "b.ibt"], data))
    return data


@pytest.mark.slow
def test_notebooks_run_with_nbmake(small_store: Path, tmp_path: Path) -> None:
    from pitbox.live import StreamServer

    stream = StreamServer("127.0.0.1", 0).start()
    stream.publish_frame(1, 0.0, {"Lap": 1, "LapDistPct": 0.1, "Speed": 40.0})
    env = {**os.environ, "PITBOX_DATA": str(small_store), "PITBOX_PLOTLY_RENDERER": "json",
           "PITBOX_LIVE_URL": stream.url}
    cmd = [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=300", "-q", "-p", "no:cacheprovider",
           "--rootdir", str(tmp_path), *map(str, NOTEBOOKS)]
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    finally:
        stream.stop()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"{len(NOTEBOOKS)} passed" in proc.stdout
