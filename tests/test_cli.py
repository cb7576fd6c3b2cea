"""The core CLI, called as ``main([...])`` on the real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pitbox.cli import main

from conftest import INVALID_IBT, LANGLEY, REAL_IBT, missing_real, need


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not REAL_IBT:
        missing_real("*.ibt")
    data = tmp_path_factory.mktemp("store")
    assert main(["import", *map(str, REAL_IBT), "--data", str(data)]) == 0
    return data


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_sessions_json_fields(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, ["sessions", "--data", str(store)])
    assert len(rows) == len(REAL_IBT)
    for key in ("id", "track", "car", "driver", "start", "samples", "laps", "best_lap_s", "truncated", "path"):
        assert key in rows[0]
    langley = next(r for r in rows if r["source_name"] == LANGLEY.name)
    assert (langley["track"], langley["car"], langley["samples"], langley["laps"]) == ("langley", "skmodified", 5476, 2)
    assert abs(langley["best_lap_s"] - 15.1959) < 0.002  # iRacing's LapLastLapTime for lap 184


def test_laps_by_id_prefix(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sessions = run_json(capsys, ["sessions", "--data", str(store)])
    sid = next(r["id"] for r in sessions if r["source_name"] == LANGLEY.name)
    laps = run_json(capsys, ["laps", sid[:17], "--data", str(store)])
    assert [r["lap"] for r in laps] == [183, 184, 185, 186, 186, 187]
    assert [r["complete"] for r in laps] == [False, True, True, False, False, False]
    assert laps[0]["time_s"] is None and abs(laps[1]["time_s"] - 15.1959) < 0.002
    for key in ("lap_index", "lap", "start_s", "end_s", "time_s", "complete", "reason"):
        assert key in laps[0]


def test_reimport_is_idempotent(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p: p.read_bytes() for p in store.rglob("*.parquet")}
    out = run_json(capsys, ["import", str(need(LANGLEY)), "--data", str(store)])
    assert out[0]["status"] == "present"
    assert {p: p.read_bytes() for p in store.rglob("*.parquet")} == before


def test_store_reads_as_a_hive_dataset(store: Path) -> None:
    table = ds.dataset(store, format="parquet", partitioning="hive").to_table(columns=["track", "car", "Speed"])
    assert set(table.column("track").to_pylist()) >= {"langley", "martinsville"}


def test_info_reads_header_and_channels(capsys: pytest.CaptureFixture[str]) -> None:
    info = run_json(capsys, ["info", str(need(LANGLEY))])
    assert info["kind"] == "ibt" and info["rows"] == 5476 and info["num_vars"] == 143
    assert info["yaml"]["track"] == "langley"
    speed = next(c for c in info["channels"] if c["name"] == "Speed")
    assert speed == {"name": "Speed", "type": "float", "count": 1, "unit": "m/s", "desc": "GPS vehicle speed"}


def test_failed_file_listed_while_others_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(need(INVALID_IBT), src / "broken.ibt")  # a copy in tmp, never in the project
    shutil.copy(need(LANGLEY), src / "good.ibt")
    code = main(["import", str(src), "--data", str(tmp_path / "d")])
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert code == 1
    assert "failed" in err and "broken.ibt" in err and "header.ver" in err
    assert "imported" in out and len(list((tmp_path / "d").glob("track=*/car=*/*.parquet"))) == 1  # one session (and its index)


@pytest.mark.parametrize("argv", [["laps", "nope"], ["info", "/no/such/file.ibt"], ["import", "/no/such/dir"]])
def test_expected_errors_exit_nonzero_without_traceback(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*argv, "--data", str(tmp_path)] if argv[0] != "info" else argv)
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
