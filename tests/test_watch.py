"""The telemetry-folder watcher and one stint stored once (live recording + .ibt linked)."""

from __future__ import annotations

import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_recorder import W13, Running, column, lockstep, pyirsdk_columns, wait_until

from pitbox.cli import main
from pitbox.emulator import Emulator
from pitbox.ibt.layout import HEADER_SIZE
from pitbox.recorder import IrsdkSource, merged_view
from pitbox.recorder.watch import Watcher, ibt_finished
from pitbox.store import Store, read_meta

from conftest import need

RECORD_COUNT_AT = HEADER_SIZE + 28  # disk sub-header: session_record_count (int32)


class Clock:
    """A hand-driven monotonic clock for the watcher's stability window."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def write_partial(dest: Path, full: bytes, n_bytes: int, record_count: int) -> None:
    """The first ``n_bytes`` of a real file, with the record count iRacing has written so far."""
    data = bytearray(full[:n_bytes])
    struct.pack_into("<i", data, RECORD_COUNT_AT, record_count)
    dest.write_bytes(bytes(data))


def test_a_file_still_being_written_is_not_imported_and_a_finished_one_is_imported_once(tmp_path: Path) -> None:
    full = need(W13).read_bytes()
    folder, data = tmp_path / "telemetry", tmp_path / "data"
    folder.mkdir()
    f = folder / "mercedesw13_spielberg gp 2024-08-18 12-00-00.ibt"
    clock = Clock()
    w = Watcher(folder, data, stable_s=5.0, clock=clock)
    row0 = len(full) - 390 * 1072  # header, variables and YAML; then 390 rows of 1072 bytes
    write_partial(f, full, row0 + 100 * 1072, 0)  # iRacing mid-stint: rows arriving, record count 0
    assert not ibt_finished(f)
    assert w.scan() == []
    clock.t += 6
    assert w.scan() == []  # size stable for 6 s, but the record count says it is not finished
    write_partial(f, full, row0 + 200 * 1072, 0)
    clock.t += 6
    assert w.scan() == []
    f.write_bytes(full)  # iRacing closes the file: all rows and the record count
    assert ibt_finished(f)
    assert w.scan() == []  # just changed: not stable yet
    clock.t += 4.9
    assert w.scan() == []
    clock.t += 0.2
    (r,) = w.scan()
    assert r.status == "imported" and len(r.sessions) == 1
    clock.t += 60
    assert w.scan() == []  # once
    assert Watcher(folder, data, stable_s=0).scan() == []  # a restarted watcher remembers
    sessions = Store(data).sessions()
    assert len(sessions) == 1 and sessions.samples[0] == 390


def test_watch_cli_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "telemetry"
    folder.mkdir()
    shutil.copy(need(W13), folder / "a.ibt")
    (folder / "b.ibt").write_bytes(W13.read_bytes()[:5000])  # a file iRacing has just begun
    assert main(["watch", str(folder), "--data", str(tmp_path / "data"), "--once", "--stable-s", "0"]) == 0
    out = capsys.readouterr().out
    assert "imported" in out and "a.ibt" in out and "b.ibt" not in out
    assert len(Store(tmp_path / "data").sessions()) == 1


def record_live(tmp_path: Path, source: Path) -> list[Path]:
    """Record one source through the emulator and pyirsdk (lockstep: every tick)."""
    emu = Emulator([source], tmp_path / "irsdk.bin", speed=math.inf).open()
    src = IrsdkSource(emu.memmap_path)
    run = Running(src, tmp_path / "data")
    assert src.mapped.wait(10)
    lockstep(emu, run.rec)
    emu.close()
    wait_until(lambda: not run.rec.session_open and len(run.rec.stored) == 1, 30, "the session to be stored")
    return run.stop()


@pytest.mark.parametrize("ibt_first", [False, True], ids=["live-then-ibt", "ibt-then-live"])
def test_live_recording_and_ibt_of_the_same_stint_become_one_session(tmp_path: Path, ibt_first: bool) -> None:
    src = need(W13)
    folder, data = tmp_path / "telemetry", tmp_path / "data"
    folder.mkdir()
    ibt = folder / src.name
    if ibt_first:
        shutil.copy(src, ibt)
        assert Watcher(folder, data, stable_s=0).scan()[0].status == "imported"
    (live_path,) = record_live(tmp_path, src)
    live_id = read_meta(live_path)["id"] if live_path.exists() else live_path.stem
    if not ibt_first:
        assert not pq.read_schema(live_path).get_field_index("Lat") >= 0  # live memory has no GPS
        shutil.copy(src, ibt)
        assert Watcher(folder, data, stable_s=0).scan()[0].status == "imported"
    store = Store(data)
    sessions = store.sessions()
    assert len(sessions) == 1, "one stint is stored once"
    meta = store.meta(sessions.id[0])
    assert meta["source_kind"] == "ibt" and meta["linked_live"] == [live_id]
    assert [s["kind"] for s in meta["sources"]] == ["ibt", "live"]
    # importing the .ibt again finds it present; nothing is duplicated
    assert main(["import", str(ibt), "--data", str(data)]) == 0
    assert len(store.sessions()) == 1
    # the merged view: GPS from the .ibt, CarIdx traffic from the live recording, on SessionTime
    for key in (sessions.id[0], live_id):
        df = merged_view(store, key, columns=["Lat", "Lon", "LFspeed", "CarIdxLapDistPct", "Speed"])
        assert df.attrs["channel_source"]["Lat"] == "ibt" and df.attrs["channel_source"]["CarIdxLapDistPct"] == "live"
        assert len(df) == 390
    truth = pyirsdk_columns(src, ["Lat", "SessionTime"])
    np.testing.assert_array_equal(df["Lat"].to_numpy(), truth["Lat"])
    np.testing.assert_array_equal(df["SessionTime"].to_numpy(), truth["SessionTime"])
    hidden = data / meta["sources"][1]["path"]
    live = pq.read_table(hidden, columns=["SessionTime", "CarIdxLapDistPct"])
    expect = column(live, "CarIdxLapDistPct")
    got = np.stack(df["CarIdxLapDistPct"].to_numpy())
    assert got.shape == (390, 64)
    np.testing.assert_array_equal(got, expect)  # every .ibt row found its live tick
    assert Path(sessions.path[0]).name.startswith(meta["id"])


def test_launchers_record_and_watch(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    folder, data = tmp_path / "telemetry", tmp_path / "data"
    folder.mkdir()
    env = {**os.environ, "PITBOX_TELEMETRY": str(folder), "PITBOX_DATA": str(data)}
    out = subprocess.run([sys.executable, str(root / "recorders" / "record_iracing.py"), "replay", str(need(W13)),
                          "--speed", "0", "--no-fsync"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"watching {folder}" in out.stdout and "1 session(s) stored, 390 ticks recorded, 0 dropped" in out.stdout
    shutil.copy(W13, folder / "stint.ibt")
    out = subprocess.run([sys.executable, str(root / "recorders" / "watch_telemetry.py"), "--once", "--stable-s", "0"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "imported" in out.stdout and "stint.ibt" in out.stdout
    assert len(Store(data).sessions()) == 1  # the replay and the .ibt are one stint
