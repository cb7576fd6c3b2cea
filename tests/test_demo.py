"""``make demo`` end to end, as a user runs it: its output and what it leaves in the store.

The expected tips come from the faults the demo injects (the simulator's ground truth),
not from the coaching code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pitbox.demo import DEMO_FAULTS
from pitbox.store import Store, read_meta


@pytest.mark.timeout(1200)  # a safety net: the demo takes about a minute, much longer on a loaded machine
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-m", "pitbox.demo", "--data", str(data)],
                          capture_output=True, text=True, timeout=1100)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    frames = int(re.search(r"received (\d+) frames", out).group(1))
    assert frames > 100  # 1 Hz over a ~15-minute session
    cat = Store(data).sessions()
    assert len(cat) == 1, "the live recording and the .ibt of the same stint are one session"
    meta = read_meta(cat.path.iloc[0])
    assert {s["kind"] for s in meta["sources"]} >= {"ibt", "live"}
    tips = out.split("== 5. coaching", 1)[1]
    for spec in DEMO_FAULTS:
        lap, corner, fault, _ = spec.split(":")
        assert re.search(rf"lap {lap} .*{corner}:.*\({fault}, costs", tips), (spec, tips)
    report = Path(re.search(r"HTML report: (\S+)", out).group(1))
    assert report.is_file() and report.stat().st_size > 100_000
