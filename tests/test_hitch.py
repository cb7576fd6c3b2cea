"""Lap times across a sim hitch, on the real files.

When the sim hitches, ``SessionTime`` skips a tick between two rows while the car moves only
one tick's distance: the physics advanced one tick, and iRacing's lap timer counts physics
time. When a record is dropped instead, the car covers two ticks' distance and the gap
counts in full. The real files hold genuine hitches (none inside a full lap); the fixtures
here insert one into, or delete a row from, every full lap of the real files (in memory, or
as an ``.ibt`` in ``tmp_path``), and the expected lap times are iRacing's own
``LapLastLapTime``. ``SessionTick``, a separate physics-tick counter that the 2023 file has,
is the independent clock for its genuine hitches.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import pitbox.analysis as pa
from pitbox.ibt import open_telemetry, write_ibt
from pitbox.laps import hitch_ticks, lap_table, physics_time
from pitbox.store import Store, import_file

from conftest import AMG, LANGLEY, REAL, need

pytestmark = pytest.mark.real

#: The real files with full laps (SOURCES.md), and those laps.
FULL = {
    LANGLEY.name: [184, 185],
    "skmodified_langley_iRacingTelemetry_2015-08-24_practice.ibt": [6],
    "skmodified-tour_martinsville_iRacingTelemetry_2015-05-30_practice.ibt": [32, 33],
}
TICK = 1 / 60


def _channels(name: str) -> tuple[dict[str, np.ndarray], object]:
    with open_telemetry(need(REAL / name)) as tf:
        return tf.read(), tf


def _rows_of(ch: dict[str, np.ndarray], lap: int) -> np.ndarray:
    return np.flatnonzero(ch["Lap"] == lap)


def _hitched(ch: dict[str, np.ndarray], rows: list[int]) -> dict[str, np.ndarray]:
    """A hitch before each row: SessionTime (and iRacing's running lap clock) skip one tick
    there, every other channel as recorded (the car moves one tick)."""
    out = {k: v.copy() for k, v in ch.items()}
    for r in rows:
        out["SessionTime"][r:] += TICK
        if "LapCurrentLapTime" in out:
            out["LapCurrentLapTime"][r:] += np.float32(TICK)
    return out


def _dropped(ch: dict[str, np.ndarray], rows: list[int]) -> dict[str, np.ndarray]:
    keep = np.ones(len(ch["SessionTime"]), bool)
    keep[rows] = False
    return {k: v[keep] for k, v in ch.items()}


def _middles(ch: dict[str, np.ndarray], laps: list[int], frac: float = 0.5) -> list[int]:
    return [int(_rows_of(ch, lap)[int(frac * len(_rows_of(ch, lap)))]) for lap in laps]


@pytest.mark.parametrize("name", list(FULL))
def test_lap_times_within_2ms_across_an_inserted_hitch(name: str) -> None:
    ch, tf = _channels(name)
    laps = FULL[name]
    hitched = _hitched(ch, _middles(ch, laps))
    table = lap_table(hitched, tf.tick_rate).set_index("lap").loc[laps]
    err_ms = (table.time_s - table.iracing_time_s).abs() * 1e3
    assert (err_ms < 2.0).all(), err_ms.tolist()
    assert (table.hitch_ticks == 1).all() and (table.dropped_ticks == 0).all()
    # SessionTime itself is left as recorded: timed on it, the laps are a tick too long
    assert (((table.end_s - table.start_s) - table.iracing_time_s) * 1e3 > 14.0).all()


@pytest.mark.parametrize("name", list(FULL))
def test_lap_times_within_2ms_across_a_dropped_record(name: str) -> None:
    ch, tf = _channels(name)
    laps = FULL[name]
    table = lap_table(_dropped(ch, _middles(ch, laps)), tf.tick_rate).set_index("lap").loc[laps]
    err_ms = (table.time_s - table.iracing_time_s).abs() * 1e3
    assert (err_ms < 2.0).all(), err_ms.tolist()
    assert (table.dropped_ticks == 1).all() and (table.hitch_ticks == 0).all()


def test_langley_2015_lap_184_is_15_7_ms_long_on_session_time_across_a_hitch() -> None:
    """The issue's case: one tick of SessionTime skipped inside lap 184 of the 2015 Langley
    file makes the lap 15.7 ms longer than LapLastLapTime on SessionTime (its own -0.96 ms
    plus one tick); on physics time it keeps its -0.96 ms."""
    ch, tf = _channels(LANGLEY.name)
    row = lap_table(_hitched(ch, _middles(ch, [184], 0.8)), tf.tick_rate).set_index("lap").loc[184]
    assert (row.end_s - row.start_s - row.iracing_time_s) * 1e3 == pytest.approx(15.7, abs=0.05)
    assert (row.time_s - row.iracing_time_s) * 1e3 == pytest.approx(-0.96, abs=0.05)


def test_hitch_and_dropped_record_side_by_side_in_one_lap() -> None:
    """Two gaps of the same size in SessionTime 40 rows apart: one a hitch, one a drop."""
    ch, tf = _channels(LANGLEY.name)
    a, b = _middles(ch, [184], 0.3)[0], _middles(ch, [184], 0.7)[0]
    both = _dropped(_hitched(ch, [a]), [b])
    row = lap_table(both, tf.tick_rate).set_index("lap").loc[184]
    assert abs(row.time_s - row.iracing_time_s) < 0.002
    assert (row.hitch_ticks, row.dropped_ticks) == (1, 1)


def test_langley_2015_genuine_hitches_in_the_out_lap_and_the_partial_lap() -> None:
    """The 2015 Langley file skips a tick of SessionTime three times (rows 321 and 381 in the
    out-lap 183, row 4821 in the partial lap 187; no full lap holds one). At each the car
    covers one tick's distance at its measured speed (LapDist [m] against Speed [m/s], two
    channels the detector does not read), so each is a hitch."""
    ch, tf = _channels(LANGLEY.name)
    t, dist, speed = ch["SessionTime"], ch["LapDist"].astype(float), ch["Speed"].astype(float)
    gaps = np.flatnonzero(np.rint(np.diff(t) * tf.tick_rate) == 2) + 1
    assert gaps.tolist() == [321, 381, 4821]
    ticks_moved = (dist[gaps] - dist[gaps - 1]) / (0.5 * (speed[gaps] + speed[gaps - 1]) * TICK)
    assert np.all(np.abs(ticks_moved - 1.0) < 0.1), ticks_moved  # one tick, not two
    hitches = hitch_ticks(t, ch["LapDistPct"], tf.tick_rate)
    assert np.flatnonzero(hitches).tolist() == gaps.tolist()
    table = lap_table(ch, tf.tick_rate)
    assert table.set_index("lap_index").hitch_ticks.tolist() == [2, 0, 0, 0, 0, 1]
    assert table.dropped_ticks.sum() == 0


def test_amg_2023_session_time_skips_ticks_that_session_tick_does_not() -> None:
    """The 2023 AMG file: SessionTime skips a tick 8 times while SessionTick (iRacing's count
    of physics ticks) steps by one. Physics time from the distance alone matches SessionTick
    wherever the car moves; standing still only SessionTick can tell, and with it every row
    matches."""
    ch, tf = _channels(AMG.name)
    t, tick, pct = ch["SessionTime"], ch["SessionTick"].astype(np.int64), ch["LapDistPct"]
    assert (np.rint(np.diff(t) * tf.tick_rate) == 2).sum() == 8 and (np.diff(tick) == 1).all()
    by_tick = (tick - tick[0]) / tf.tick_rate
    with_tick = physics_time(t, pct, tf.tick_rate, tick)
    np.testing.assert_allclose(with_tick - with_tick[0], by_tick, atol=1e-6)
    alone = physics_time(t, pct, tf.tick_rate)
    moving = np.flatnonzero(ch["Speed"] > 1.0)
    first = moving[0]
    np.testing.assert_allclose(alone[moving] - alone[first], by_tick[moving] - by_tick[first], atol=1e-6)
    assert np.abs((alone - alone[0]) - by_tick).max() == pytest.approx(3 * TICK, abs=1e-6)  # 3 while stationary


@pytest.fixture(scope="module")
def hitched_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, np.ndarray]]:
    """The 2015 Langley file with a hitch inside lap 184 and a dropped record inside lap 185,
    written as an .ibt and imported."""
    root = tmp_path_factory.mktemp("hitch")
    with open_telemetry(need(LANGLEY)) as tf:
        ch = tf.read()
        broken = _dropped(_hitched(ch, _middles(ch, [184])), _middles(ch, [185]))
        ibt = write_ibt(root / LANGLEY.name, broken, tf.session_info_raw, variables=tf.variables,
                        buf_len=tf.header.buf_len, start_date=tf.disk.session_start_date, version=tf.header.version)
    sid = import_file(ibt, root / "data").sessions[0]
    return root / "data", sid, broken


def test_store_keeps_session_time_and_the_analysis_times_laps_on_physics_time(hitched_store) -> None:
    data, sid, broken = hitched_store
    stored = Store(data).read(sid, ["SessionTime"]).SessionTime.to_numpy()
    np.testing.assert_array_equal(stored, broken["SessionTime"])  # as recorded, hitch included
    s = pa.load_session(sid, data)
    full = s.laps.set_index("lap").loc[[184, 185]]
    assert ((full.time_s - full.iracing_time_s).abs() < 0.002).all()
    assert full.hitch_ticks.tolist() == [1, 0] and full.dropped_ticks.tolist() == [0, 1]
    for lap_index in full.lap_index:
        lap = s.lap(int(lap_index))
        tel = lap.telemetry(["Speed"])
        assert np.interp(s.track_length_m, tel.distance_m, tel.time_s) == pytest.approx(lap.time_s, abs=1e-9)
        iracing = float(lap.row.iracing_time_s)
        assert abs(lap.trace().time_s[-1] - iracing) < 0.002
        sectors = pa.sector_times(s).set_index("lap_index").loc[int(lap_index)]
        assert abs(sectors.sum_s - iracing) < 0.002


def test_delta_and_corner_segments_across_the_hitch(hitched_store) -> None:
    """Delta of the hitched lap against the lap with the dropped record closes on iRacing's
    own lap times, and the per-corner deltas add up to it."""
    data, sid, _ = hitched_store
    s = pa.load_session(sid, data)
    by_lap = s.laps.set_index("lap").lap_index
    res = pa.compare_laps(s.lap(int(by_lap[184])), s.lap(int(by_lap[185])), data)
    assert abs(res["closure_iracing_s"]) < 0.004
    assert res["per_corner"].delta_s.sum() == pytest.approx(res["delta_at_line_s"], abs=1e-6)
    assert res["per_corner"].segment_time_s.sum() == pytest.approx(res["lap"]["time_s"], abs=1e-6)


def _brake_onsets(ch: dict[str, np.ndarray], lap: int) -> np.ndarray:
    """Rows of ``lap`` where ``Brake`` rises through 5 %, strongest braking (peak over the next
    second) first."""
    r, b = _rows_of(ch, lap), ch["Brake"]
    on = r[1:][(b[r[1:]] >= 0.05) & (b[r[:-1]] < 0.05)]
    return on[np.argsort([-b[i:i + 60].max() for i in on], kind="stable")]


@pytest.fixture(scope="module")
def holed_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, float]]:
    """The 2015 Langley file with a hitch at lap 184's hardest brake onset and the 20 rows
    before lap 185's hardest brake onset dropped (a recorder that stalled for a third of a
    second), as an ``.ibt``, imported. Also returns the hole: ``LapDist`` of the samples
    either side of it."""
    root = tmp_path_factory.mktemp("holed")
    with open_telemetry(need(LANGLEY)) as tf:
        ch = tf.read()
        hitch, onset = int(_brake_onsets(ch, 184)[0]), int(_brake_onsets(ch, 185)[0])
        hole = {"from_m": float(ch["LapDist"][onset - 21]), "to_m": float(ch["LapDist"][onset])}
        broken = _dropped(_hitched(ch, [hitch]), list(range(onset - 20, onset)))
        ibt = write_ibt(root / LANGLEY.name, broken, tf.session_info_raw, variables=tf.variables,
                        buf_len=tf.header.buf_len, start_date=tf.disk.session_start_date, version=tf.header.version)
    return root / "data", import_file(ibt, root / "data").sessions[0], hole


def test_a_brake_point_in_a_hole_of_dropped_ticks_carries_the_hole_and_a_hitch_none(holed_store) -> None:
    """The brake point found in the hole is known only to the hole's length, which the corner
    table gives (``LapDist`` either side of it); the hitch at a brake onset is no hole (the car
    moved one tick: physics time), nor is any other brake point of either lap."""
    data, sid, hole = holed_store
    a = pa.analyse(sid, data=data)
    t = a.table[a.table.lap_index.isin(a.session.laps.set_index("lap").lap_index[[184, 185]])]
    braked = t[t.brake_point_m.notna()]
    assert len(braked) >= 4  # both braking corners of Langley, on both laps
    lap185 = int(a.session.laps.set_index("lap").lap_index[185])
    inside = (braked.lap_index == lap185) & braked.brake_point_m.between(hole["from_m"], hole["to_m"])
    assert inside.sum() == 1, braked[["lap_index", "corner", "brake_point_m", "brake_point_gap_m"]]
    assert braked[inside].brake_point_gap_m.iloc[0] == pytest.approx(hole["to_m"] - hole["from_m"], abs=0.05)
    assert (braked[~inside].brake_point_gap_m == 0).all()


def test_a_store_from_older_lap_table_rules_is_rebuilt(hitched_store, tmp_path: Path) -> None:
    """A session file whose footer holds a lap table of the old rules (SessionTime lap times,
    no version stamp) is read with a rebuilt table; the file is not rewritten."""
    data, sid, _ = hitched_store
    path = Store(data).resolve(sid)
    old = tmp_path / "data" / path.relative_to(data)
    old.parent.mkdir(parents=True)
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"pitbox"])
    for row in meta["lap_table"]:
        if row["time_s"] is not None:
            row["time_s"] = row["end_s"] - row["start_s"]  # what the old rules stored
        row.pop("hitch_ticks")
    meta.pop("lap_table_version")
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"pitbox": json.dumps(meta).encode()}), old)
    before = old.read_bytes()
    laps = Store(tmp_path / "data").laps(sid).set_index("lap")
    assert abs(laps.time_s[184] - laps.iracing_time_s[184]) < 0.002 and laps.hitch_ticks[184] == 1
    assert Store(tmp_path / "data").sessions().best_lap_s.iloc[0] == pytest.approx(laps.time_s.min())
    assert old.read_bytes() == before
