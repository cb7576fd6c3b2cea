"""The iRacing emulator, tick by tick (deterministic, no clock): unmodified pyirsdk reads
the map, every frozen row equals its source row as pyirsdk reads the source, the layout and
the transitions look as iRacing shows them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import irsdk
import numpy as np
import pytest

from pitbox.catalogue import load_catalogue
from pitbox.cli import main
from pitbox.emulator import Emulator, EmulatorEvent, TickRecord
from pitbox.errors import ConfigError, IbtFormatError
from pitbox.ibt.layout import LIVE_MAP_SIZE

from conftest import REAL, need

PRACTICE = REAL / "skmodified_langley_iRacingTelemetry_2015-08-24_practice.ibt"  # 18 drivers, DriverCarIdx 11
STATIONARY = REAL / "skmodified_newsmyrna_iRacingTelemetry_stationary.ibt"  # 201 rows
W13_IBT = REAL / "mercedesw13_spielberg-gp_teamjorge-ibt_valid.ibt"
W13_LIVE = REAL / "mercedesw13_monza-full_teamjorge-ibt_livedump.bin"


@contextmanager
def pyirsdk_map(path: Path) -> Iterator[irsdk.IRSDK]:
    ir = irsdk.IRSDK()
    assert ir.startup(test_file=str(path))
    try:
        yield ir
    finally:
        ir.shutdown()


@contextmanager
def pyirsdk_ibt(path: Path) -> Iterator[irsdk.IBT]:
    ibt = irsdk.IBT()
    ibt.open(str(path))
    try:
        yield ibt
    finally:
        ibt.close()


def tick_counts(ir: irsdk.IRSDK) -> list[int]:
    return [b.tick_count for b in ir._header.var_buf]


def var_header_tuples(ir: irsdk.IRSDK) -> list[tuple]:
    return [(v.name, v.type, v.offset, v.count, v.count_as_time, v.unit, v.desc) for v in ir._var_headers]


def step_until(emu: Emulator, pred) -> TickRecord | EmulatorEvent | None:
    for _ in range(100_000):
        r = emu.step()
        if r is None or pred(r):
            return r
    raise AssertionError("never happened")


@pytest.fixture
def memmap(tmp_path: Path) -> Path:
    return tmp_path / "irsdk_memmap.bin"


# -- layout -----------------------------------------------------------------------------


def test_map_geometry_is_the_real_2024_dumps(memmap: Path) -> None:
    with Emulator([need(W13_IBT)], memmap) as emu:
        emu.step()
        assert memmap.stat().st_size == LIVE_MAP_SIZE == need(W13_LIVE).stat().st_size
        with pyirsdk_map(memmap) as ir, pyirsdk_map(W13_LIVE) as real:
            for field in ("version", "status", "tick_rate", "session_info_len", "session_info_offset", "num_vars",
                          "var_header_offset", "num_buf", "buf_len"):
                assert getattr(ir._header, field) == getattr(real._header, field), field
            assert [b._buf_offset for b in ir._header.var_buf] == [b._buf_offset for b in real._header.var_buf]


def test_2024_ibt_publishes_exactly_the_real_2024_live_variables(memmap: Path) -> None:
    """Disk-only channels dropped, live-only added, float[6] widened: iRacing's own 323 headers."""
    with Emulator([need(W13_IBT)], memmap) as emu:
        emu.step()
        with pyirsdk_map(memmap) as ir, pyirsdk_map(need(W13_LIVE)) as real:
            assert var_header_tuples(ir) == var_header_tuples(real)
            assert ir._header.buf_len == real._header.buf_len == 8154


def test_live_set_matches_the_catalogue(memmap: Path) -> None:
    cat = load_catalogue()
    with pyirsdk_ibt(need(PRACTICE)) as ibt:
        src = {n: ibt._var_headers_dict[n].count for n in ibt.var_headers_names}
    kept = {n for n in src if cat.loc[n, "availability"] != "disk"}
    live_only = {n for n in cat.index if cat.loc[n, "availability"] == "live" and not n.endswith("_ST")}
    sub = {n for n in cat.index if n.endswith("_ST") and n[:-3] in kept and n not in kept
           and cat.loc[n, "availability"] in ("live", "both")}
    with Emulator([PRACTICE], memmap) as emu:
        emu.step()
        with pyirsdk_map(memmap) as ir:
            live = {v.name: v.count for v in ir._var_headers}
    assert set(live) == kept | live_only | sub
    assert not {"Lat", "Lon", "Alt", "LFspeed", "LFtempL", "RRpressure"} & set(live)
    for n in live:
        if n.startswith("CarIdx"):
            assert live[n] == 64, n
        elif n in sub or (n in kept and cat.loc[n, "live_float6"]):
            assert live[n] == 6, n
        else:
            assert live[n] == src.get(n, cat.loc[n, "count_live"]), n


# -- ticks ------------------------------------------------------------------------------


def test_each_tick_changes_the_newest_buffers_tick_count_in_rotation(memmap: Path) -> None:
    with Emulator([need(STATIONARY)], memmap) as emu:
        first = emu.step()
        with pyirsdk_map(memmap) as ir:
            assert ir._header.status == 1
            assert max(tick_counts(ir)) == first.tick_count == 1
            newest = []
            for expected in range(2, 12):
                before = max(tick_counts(ir))
                rec = emu.step()
                counts = tick_counts(ir)
                assert max(counts) == before + 1 == rec.tick_count == expected
                newest.append(counts.index(max(counts)))
            # as in every real dump: tick T sits in buffer T % 3, the other two hold T-1 and T-2
            assert newest == [t % 3 for t in range(2, 12)]
            assert sorted(tick_counts(ir)) == [9, 10, 11]


def _check_row(ir: irsdk.IRSDK, ibt: irsdk.IBT, row: int, live_counts: dict[str, int]) -> int:
    checked = 0
    for name in ibt.var_headers_names:
        if name not in live_counts:
            continue
        want = ibt.get(row, name)
        got = ir[name]
        if live_counts[name] == 6 and ibt._var_headers_dict[name].count == 1:
            got = got[-1]  # the scalar rule: the last sub-sample is the tick's value
        assert got == want, (name, row)
        if name + "_ST" in live_counts and name + "_ST" not in ibt.var_headers_names:
            assert ir[name + "_ST"][-1] == want, name + "_ST"
        checked += 1
    return checked


def test_frozen_row_equals_the_source_row_of_that_tick(memmap: Path) -> None:
    """Every channel present in both, as pyirsdk reads the source .ibt, across chunk edges."""
    probe = {1, 2, 3, 511, 512, 513, 514, 1025, 2000, 4020}
    with Emulator([need(PRACTICE)], memmap) as emu, pyirsdk_ibt(PRACTICE) as ibt, pyirsdk_map(memmap) as ir:
        live_counts = {v.name: v.count for v in ir._var_headers}
        seen = 0
        while (rec := emu.step()) is not None:
            if rec.tick_count not in probe:
                continue
            ir.freeze_var_buffer_latest()
            tick = ir._var_buffer_latest.tick_count
            truth = emu.record_for(tick)
            assert truth.source_row == tick - 1
            both = set(ibt.var_headers_names) & set(live_counts)
            assert _check_row(ir, ibt, truth.source_row, live_counts) == len(both) > 100
            ir.unfreeze_var_buffer_latest()
            seen += 1
        assert seen == len(probe)


def test_subsamples_run_from_the_previous_row_to_this_one(memmap: Path) -> None:
    with Emulator([need(PRACTICE)], memmap) as emu, pyirsdk_ibt(PRACTICE) as ibt, pyirsdk_map(memmap) as ir:
        for _ in range(600):
            emu.step()
        ir.freeze_var_buffer_latest()
        row = emu.record_for(ir._var_buffer_latest.tick_count).source_row
        prev, cur = ibt.get(row - 1, "LatAccel"), ibt.get(row, "LatAccel")
        sub = np.array(ir["LatAccel"])
        assert sub[-1] == np.float32(cur)
        assert np.allclose(sub, prev + (cur - prev) * np.arange(1, 7) / 6, atol=1e-5)


def test_yaml_is_readable_and_equals_the_source(memmap: Path) -> None:
    with Emulator([need(PRACTICE)], memmap) as emu:
        emu.step()
        with pyirsdk_map(memmap) as ir, pyirsdk_map(PRACTICE) as src:
            for section in ("WeekendInfo", "SessionInfo", "CameraInfo", "RadioInfo", "DriverInfo", "SplitTimeInfo"):
                assert src[section] is not None, section
                assert ir[section] == src[section], section
            assert ir._header.session_info_update == 1


def test_caridx_arrays_place_the_player_and_the_other_cars(memmap: Path) -> None:
    with Emulator([need(PRACTICE)], memmap) as emu, pyirsdk_ibt(PRACTICE) as ibt, pyirsdk_map(memmap) as ir:
        drivers = {d["CarIdx"] for d in ir["DriverInfo"]["Drivers"]}
        me = ir["DriverInfo"]["DriverCarIdx"]
        assert me == 11
        pct = []
        for _ in range(240):
            rec = emu.step()
        for _ in range(2):
            ir.freeze_var_buffer_latest()
            row = emu.record_for(ir._var_buffer_latest.tick_count).source_row
            assert ir["CamCarIdx"] == me  # the camera follows the player
            assert ir["CarIdxLapDistPct"][me] == ibt.get(row, "LapDistPct")
            assert ir["CarIdxLap"][me] == ibt.get(row, "Lap")
            assert ir["CarIdxOnPitRoad"][me] == ibt.get(row, "OnPitRoad")
            assert ir["CarIdxRPM"][me] == ibt.get(row, "RPM")
            others = sorted(drivers - {me})
            assert others
            surf = ir["CarIdxTrackSurface"]
            assert all(surf[i] == 3 for i in others)
            assert all(0.0 <= ir["CarIdxLapDistPct"][i] < 1.0 for i in others)
            assert all(surf[i] == -1 and ir["CarIdxLapDistPct"][i] == -1 for i in set(range(64)) - drivers)
            pct.append(np.array(ir["CarIdxLapDistPct"])[others])
            ir.unfreeze_var_buffer_latest()
            for _ in range(60):
                rec = emu.step()
        # one second later every other car has moved on (less than a lap: lap time ~17 s)
        moved = (pct[1] - pct[0]) % 1.0
        assert np.all((moved > 0.03) & (moved < 0.2)), moved
        assert rec.kind == "row"


def test_skipped_ticks_advance_tick_count_and_source_row_together(memmap: Path) -> None:
    with Emulator([need(STATIONARY)], memmap, skip_every=10, skip_count=2) as emu, \
            pyirsdk_ibt(STATIONARY) as ibt, pyirsdk_map(memmap) as ir:
        recs = []
        while emu.step() is not None:
            ir.freeze_var_buffer_latest()
            recs.append((ir._var_buffer_latest.tick_count, ir["SessionTime"]))
            ir.unfreeze_var_buffer_latest()
        ticks = np.array([t for t, _ in recs])
        steps = np.diff(ticks)
        assert set(steps.tolist()) == {1, 3}
        assert np.all(steps[9::10] == 3) and np.sum(steps == 3) == len(steps[9::10])
        # the session time jumps with the ticks: row = tick - 1 always
        times = np.array([ibt.get(t - 1, "SessionTime") for t in ticks])
        assert np.array_equal(times, np.array([s for _, s in recs]))
        assert emu.dropped == 2 * np.sum(steps == 3)


# -- transitions ------------------------------------------------------------------------


def test_session_change_bumps_session_num_and_the_yaml(memmap: Path) -> None:
    with Emulator([need(STATIONARY), STATIONARY], memmap, transitions="session") as emu, pyirsdk_map(memmap) as ir:
        emu.step()
        assert ir["SessionInfo"]["Sessions"][0]["SessionNum"] == 0
        assert ir["SessionNum"] == 0 and ir._header.session_info_update == 1
        last = step_until(emu, lambda r: isinstance(r, TickRecord) and r.source_row == 0 and r.tick_count > 1)
        assert last.tick_count == 202  # no restart: the tick count goes on
        assert ir._header.session_info_update == 2
        ir.freeze_var_buffer_latest()
        assert ir["SessionNum"] == 1 and ir["ReplaySessionNum"] == 1
        assert ir["SessionInfo"]["Sessions"][0]["SessionNum"] == 1
        assert [e.kind for e in emu.events if e.kind in ("yaml", "session")] == ["yaml", "session"]


def test_driver_leaves_and_reenters_the_car(memmap: Path) -> None:
    with Emulator([need(STATIONARY), STATIONARY], memmap, transitions="exit", exit_gap_s=0.25) as emu, \
            pyirsdk_map(memmap) as ir:
        me = ir["DriverInfo"]["DriverCarIdx"]
        step_until(emu, lambda r: isinstance(r, TickRecord) and r.kind == "out_of_car")
        times = []
        while (rec := emu.step()).kind == "out_of_car":
            ir.freeze_var_buffer_latest()
            assert ir["IsOnTrack"] is False
            assert ir["CarIdxTrackSurface"][me] == -1 and ir["CarIdxLapDistPct"][me] == -1
            times.append(ir["SessionTime"])
            ir.unfreeze_var_buffer_latest()
        out = len(times)
        assert np.allclose(np.diff(times), 1 / 60)  # session time runs on while out of the car
        assert out == 14  # 15 ticks out of the car (0.25 s), the first consumed by step_until
        ir.freeze_var_buffer_latest()
        assert rec.kind == "row" and rec.source_row == 0 and ir["IsOnTrack"] is True
        assert ir._header.session_info_update == 1  # same session, same YAML: no update
        kinds = [e.kind for e in emu.events]
        assert kinds.index("exit") < kinds.index("enter")


def test_sim_restart_goes_offline_then_writes_a_new_header(memmap: Path) -> None:
    with Emulator([need(STATIONARY), need(W13_IBT)], memmap) as emu:
        with pyirsdk_map(memmap) as ir:
            emu.step()
            assert ir._header.status == 1
            old_vars = ir._header.num_vars
            ev = step_until(emu, lambda r: isinstance(r, EmulatorEvent))
            assert ev.kind == "offline" and ev.tick_count == 201
            assert ir._header.status == 0
            assert max(tick_counts(ir)) == 201  # the last data stays until the sim comes back
            rec = emu.step()
            assert rec.tick_count == 1 and rec.layout_id == 1 and rec.source_row == 0
            assert ir._header.status == 1
            assert ir._header.num_vars == 323 != old_vars
            assert tick_counts(ir) == [0, 1, 0]
        with pyirsdk_map(memmap) as fresh:  # a reader that starts again sees the new sim
            assert len(fresh.var_headers_names) == 323
            assert fresh["WeekendInfo"]["TrackName"] == "spielberg gp"
            assert fresh._header.session_info_update == 1
        kinds = [e.kind for e in emu.events]
        assert kinds == ["layout", "connected", "offline", "layout", "connected"]


def test_end_of_sources_sets_status_0(memmap: Path) -> None:
    emu = Emulator([need(STATIONARY)], memmap)
    n = 0
    while emu.step() is not None:
        n += 1
    assert n == 201 and emu.finished and emu.events[-1].kind == "finished"
    with pyirsdk_map(memmap) as ir:
        assert ir._header.status == 0 and max(tick_counts(ir)) == 201
    emu.close()


# -- errors and the command ---------------------------------------------------------------


def test_bad_arguments_raise_our_errors(memmap: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Emulator([], memmap)
    with pytest.raises(ConfigError, match="speed"):
        Emulator([need(STATIONARY)], memmap, speed=0)
    with pytest.raises(ConfigError, match="transition"):
        Emulator([STATIONARY], memmap, transitions="teleport")
    with pytest.raises(IbtFormatError, match="nothing there"):
        Emulator([tmp_path / "missing.ibt"], memmap)


def test_cli_plays_to_the_end_and_writes_ground_truth(memmap: Path, tmp_path: Path, capsys) -> None:
    truth = tmp_path / "truth.csv"
    code = main(["emulate", str(need(STATIONARY)), "--memmap", str(memmap), "--speed", "inf",
                 "--skip-every", "50", "--ground-truth", str(truth)])
    assert code == 0
    out = capsys.readouterr().out
    assert "ticks published" in out and "finished" in out
    lines = truth.read_text().splitlines()
    assert lines[0].startswith("layout_id,tick_count")
    assert len(lines) - 1 == 201 - 3  # three ticks dropped on purpose
    with pyirsdk_map(memmap) as ir:
        assert ir._header.status == 0


def test_cli_errors_are_one_line(memmap: Path, tmp_path: Path, capsys) -> None:
    assert main(["emulate", str(tmp_path / "nope.ibt"), "--memmap", str(memmap)]) == 2
    assert "nope.ibt" in capsys.readouterr().err
    assert main(["emulate", str(need(STATIONARY)), "--memmap", str(memmap), "--stall-at", "5"]) == 2
