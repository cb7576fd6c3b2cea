"""``pitbox simulate`` and ``pitbox tracks`` through ``pitbox.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import irsdk
import numpy as np
import pytest

from pitbox.cli import main


def test_simulate_json_writes_the_file_and_its_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.ibt"
    rc = main(["simulate", "--track", "pitboxsim_glen", "--laps", "2", "--faults", "2:T5:late_throttle:10",
               "--seed", "5", "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ibt"] == str(out) and summary["track"] == "pitboxsim_glen" and summary["seed"] == 5
    truth = json.loads((tmp_path / "run.truth.json").read_text())
    assert (tmp_path / "run.truth.npz").is_file()
    assert truth["faults"][0]["spec"] == "2:T5:late_throttle:10" and truth["faults"][0]["cost_s"] > 0.1
    assert summary["faults"] == truth["faults"]
    ib = irsdk.IBT()
    ib.open(str(out))
    try:
        lap = np.array(ib.get_all("Lap"))
        assert lap.max() == 2 + 2 and summary["rows"] == len(lap)
    finally:
        ib.close()
    assert set(summary["lap_times_s"]) == {"1", "2", "3"}


def test_simulate_prints_a_lap_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", "--laps", "1", "--faults", "1:T6:coasting:0.8", "--out", str(tmp_path / "a.ibt")])
    text = capsys.readouterr().out
    assert rc == 0
    assert "T6 coasting 0.8 s" in text and "in lap" in text


def test_tracks_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tracks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert {"pitboxsim_demo", "pitboxsim_ring", "pitboxsim_glen"} <= set(by_name)
    assert by_name["pitboxsim_ring"]["config"] == "Grand Prix" and len(by_name["pitboxsim_ring"]["corners"]) == 10
    assert main(["tracks"]) == 0
    assert "pitboxsim_demo" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "needle"), [
    (["--track", "monza"], "unknown track 'monza'"),
    (["--faults", "3:T99:lockup:0.5"], "no corner 'T99'"),
    (["--faults", "3:T1:lockup"], "expected LAP:CORNER:FAULT:SIZE"),
    (["--laps", "0"], "laps must be a whole number"),
])
def test_simulate_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                              needle: str) -> None:
    rc = main(["simulate", *args, "--out", str(tmp_path / "x.ibt")])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and err.count("\n") == 1
    assert not (tmp_path / "x.ibt").exists()


def test_simulate_refuses_a_non_ibt_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--out", str(tmp_path / "x.csv")]) == 2
    assert "expected a path ending in .ibt" in capsys.readouterr().err
