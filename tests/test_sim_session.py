"""Simulated sessions: read back by pyirsdk, physics, lap timing, faults against ground truth.

Expected values come from pyirsdk, plane geometry and geodesy, or the ground truth the
simulator injected and measured with the fault removed; never from the channel code itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import irsdk
import numpy as np
import pytest
from test_ibt_contract import assert_matches_pyirsdk, assert_yaml_matches_pyirsdk
from test_sim_tracks import haversine_m

from pitbox.ibt import open_telemetry
from pitbox.sim import (
    Car,
    SimError,
    load_corner_file,
    load_track,
    read_truth,
    simulate_session,
    simulate_to_channels,
)
from pitbox.sim.car import G

from conftest import AMG, need

FAULTS = ["2:T1:brake_early:15", "3:T3:low_min_speed:6", "4:T6:late_throttle:12", "5:T1:lockup:0.6",
          "5:T5:coasting:1.0", "6:T7:brake_late:15"]
LAPS = 7


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sim") / "demo.ibt"
    result = simulate_session("pitboxsim_demo", laps=LAPS, faults=FAULTS, seed=7, out=out)
    with open_telemetry(out) as tf:
        data = tf.read()
        info = tf.session_info
    truth, arrays = read_truth(out)
    return result, data, info, truth, arrays


def crossings(data: dict) -> np.ndarray:
    """SessionTime of each LapDistPct wrap, interpolated inside the tick."""
    st, pct = data["SessionTime"], data["LapDistPct"].astype(float)
    w = np.nonzero(np.diff(pct) < -0.5)[0]
    frac = (1.0 - pct[w]) / (pct[w + 1] + 1.0 - pct[w])
    return st[w] + frac * (st[w + 1] - st[w])


# ---------------------------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------------------------
def test_pyirsdk_reads_every_channel_as_written(session) -> None:
    result = session[0]
    assert_matches_pyirsdk(result.ibt_path)
    assert_yaml_matches_pyirsdk(result.ibt_path)


def test_pyirsdk_values_equal_the_arrays_in_memory(session) -> None:
    result = session[0]
    sim = simulate_to_channels("pitboxsim_demo", laps=LAPS, faults=FAULTS, seed=7)
    ib = irsdk.IBT()
    ib.open(str(result.ibt_path))
    try:
        assert list(sim.channels) == ib.var_headers_names
        for name, arr in sim.channels.items():
            np.testing.assert_array_equal(np.asarray(ib.get_all(name)).astype(arr.dtype), arr, err_msg=name)
    finally:
        ib.close()
    ir = irsdk.IRSDK()
    ir.startup(test_file=str(result.ibt_path))
    try:
        wi = ir["WeekendInfo"]
        assert (wi["TrackName"], wi["TrackConfigName"], wi["source"]) == ("pitboxsim_demo", "Demo Circuit", "simulated")
        assert wi["TrackLength"] == "3.33 km"
        assert wi["TrackSurfaceTemp"].endswith(" C") and wi["TrackAirTemp"].endswith(" C")
        assert ir["DriverInfo"]["Drivers"][0]["CarPath"] == "pitboxsim_gt"
        assert ir["DriverInfo"]["Drivers"][0]["UserName"] == "Sim Driver"
        s0 = ir["SessionInfo"]["Sessions"][0]
        assert s0["SessionType"] == "Practice" and s0["ResultsPositions"][0]["LapsComplete"] == LAPS + 1
        assert [s["SectorStartPct"] for s in ir["SplitTimeInfo"]["Sectors"]] == [0.0, 0.33, 0.66]
    finally:
        ir.shutdown()
    assert sim.session_yaml.startswith("---\n") and "WeekendInfo:\n TrackName: pitboxsim_demo\n" in sim.session_yaml


def test_channels_are_named_and_typed_as_in_a_2024_file(session) -> None:
    need(AMG)
    with open_telemetry(AMG) as real, open_telemetry(session[0].ibt_path) as sim:
        for name, v in sim.channels.items():
            r = real.channels[name]
            assert (v.type, v.count, v.unit) == (r.type, r.count, r.unit), name
        real_order = [v.name for v in real.variables if v.name in sim.channels]
        assert [v.name for v in sim.variables] == real_order


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = simulate_session("pitboxsim_ring", laps=1, faults=["1:T3:brake_late:10"], seed=3, out=tmp_path / "a.ibt")
    b = simulate_session("pitboxsim_ring", laps=1, faults=["1:T3:brake_late:10"], seed=3, out=tmp_path / "b.ibt")
    c = simulate_session("pitboxsim_ring", laps=1, faults=["1:T3:brake_late:10"], seed=4, out=tmp_path / "c.ibt")
    assert a.ibt_path.read_bytes() == b.ibt_path.read_bytes()
    assert a.truth_npz_path.read_bytes() == b.truth_npz_path.read_bytes()
    assert json.loads(a.truth_path.read_text())["laps"] == json.loads(b.truth_path.read_text())["laps"]
    assert a.ibt_path.read_bytes() != c.ibt_path.read_bytes()
    with open_telemetry(a.ibt_path) as ta, open_telemetry(c.ibt_path) as tc:
        assert ta.disk.session_start_date != tc.disk.session_start_date


# ---------------------------------------------------------------------------------------------
# physics
# ---------------------------------------------------------------------------------------------
def test_clean_laps_are_within_a_few_percent_of_the_fastest_possible(session) -> None:
    _, data, _, truth, _ = session
    track, car = load_track("pitboxsim_demo"), Car()
    # independent lower bound: the lateral limit alone, with unlimited power and brakes
    s = np.arange(0.0, track.length_m, 0.5)
    k = np.abs(track.curvature(s))
    mu, kd = car.mu_lat, car.k_downforce
    with np.errstate(divide="ignore", invalid="ignore"):
        v_lat = np.where(k > mu * kd, np.sqrt(mu * G / (k - mu * kd)), 90.0)
    bound = float(np.sum(0.5 / np.minimum(v_lat, 90.0)))
    clean = [lap["lap_time_s"] for lap in truth["laps"] if lap["kind"] == "timed" and not lap["faults"]
             and lap["lap"] > 1]
    assert clean, "the session must have clean flying laps"
    for t in clean:
        assert bound < truth["min_time_lap_s"] <= t <= truth["min_time_lap_s"] * 1.04


def test_lateral_acceleration_never_above_the_grip_limit(session) -> None:
    data = session[1]
    car = Car()
    v = data["Speed"].astype(float)
    limit = car.lat_limit(v)
    noise = 4 * 0.04
    assert (np.abs(data["LatAccel"]) <= limit + noise).all()
    assert np.abs(data["LatAccel"]).max() > 0.9 * car.mu_lat * G  # corners are driven near the limit


def test_speed_and_position_are_continuous(session) -> None:
    data = session[1]
    dt = np.diff(data["SessionTime"])
    assert np.allclose(dt, 1 / 60, atol=1e-9)
    assert (np.diff(data["SessionTick"]) == 1).all()
    v = data["Speed"].astype(float)
    assert np.abs(np.diff(v)).max() < 22.0 / 60  # no jump beyond the car's braking limit in one tick
    lat, lon = data["Lat"], data["Lon"]
    step = haversine_m(lat[:-1], lon[:-1], lat[1:], lon[1:])
    travelled = (v[:-1] + v[1:]) / 2 / 60
    assert np.abs(step - travelled).max() < 0.05
    ld = np.diff(data["LapDist"].astype(float))
    on_lap = np.diff(data["Lap"]) == 0
    assert np.abs(ld[on_lap] - travelled[on_lap]).max() < 0.02


def test_lapdist_and_gps_agree_with_the_track(session) -> None:
    data = session[1]
    track = load_track("pitboxsim_demo")
    on_track = data["PlayerTrackSurface"] == 3
    x, y = track.xy(data["LapDist"][on_track].astype(float))
    lat0, lon0 = track.to_latlon(x, y)
    # independent: great-circle distance between the file's GPS and the track position at LapDist
    d = haversine_m(data["Lat"][on_track], data["Lon"][on_track], lat0, lon0)
    assert d.max() < 0.05  # LapDist is float32 (a few mm at 3 km)
    np.testing.assert_allclose(data["LapDistPct"][on_track], data["LapDist"][on_track] / track.length_m, atol=1e-6)
    alt = track.origin_alt + track.elevation(data["LapDist"][on_track].astype(float))
    assert np.abs(data["Alt"][on_track] - alt).max() < 1e-3
    pit = data["OnPitRoad"] & (data["Speed"] > 1)
    xp, yp = track.from_latlon(data["Lat"][pit], data["Lon"][pit])
    xt, yt = track.xy(data["LapDist"][pit].astype(float))
    assert np.hypot(xp - xt, yp - yt).max() == pytest.approx(track.pit.offset_m, abs=0.5)  # the pit lane


def test_lock_up_shows_a_wheel_far_below_speed(session) -> None:
    data, truth = session[1], session[3]
    (lock,) = [f for f in truth["faults"] if f["fault"] == "lockup"]
    assert lock["measured"]["lockup_s"] == pytest.approx(0.6, abs=0.05)
    v = data["Speed"]
    front = np.minimum(data["LFspeed"], data["RFspeed"])
    locked = (v > 10) & (front < 0.2 * v)
    assert 0.45 * 60 <= locked.sum() <= 0.75 * 60
    assert set(data["Lap"][locked]) == {lock["lap"]}
    assert (data["Brake"][locked] > 0.9).all()
    normal = (v > 10) & ~locked & (data["Lap"] != lock["lap"])
    assert (front[normal] > 0.9 * v[normal]).all()


def test_session_starts_in_the_pits_and_ends_with_an_in_lap(session) -> None:
    data, truth = session[1], session[3]
    assert data["PlayerCarInPitStall"][0] and data["OnPitRoad"][0] and data["Speed"][0] == 0
    assert data["Lap"][0] == 0 and data["Gear"][0] == 0 and data["IsOnTrack"].all()
    first_on_track = np.argmax(data["PlayerTrackSurface"] == 3)
    assert 3 < data["Speed"][first_on_track] < 25 and data["Lap"][first_on_track] == 0
    assert data["PlayerCarInPitStall"][-1] and data["Speed"][-1] == 0 and data["Lap"][-1] == LAPS + 2
    assert [lap["kind"] for lap in truth["laps"]] == ["out"] + ["timed"] * LAPS + ["in", "pit"]
    assert (np.diff(data["FuelLevel"]) <= 0).all()


# ---------------------------------------------------------------------------------------------
# lap timing
# ---------------------------------------------------------------------------------------------
def test_lap_times_from_crossings_match_last_lap_time(session) -> None:
    data, truth = session[1], session[3]
    laps_from_pct = np.diff(crossings(data))
    shown = []
    last = data["LapLastLapTime"]
    for i in np.nonzero(np.diff(last) != 0)[0] + 1:
        if last[i] > 0:
            shown.append(float(last[i]))
    assert len(shown) == len(laps_from_pct) == LAPS + 1
    np.testing.assert_allclose(shown, laps_from_pct, atol=0.002)
    truth_times = [lap["lap_time_s"] for lap in truth["laps"] if lap["lap_time_s"] is not None]
    np.testing.assert_allclose(truth_times, laps_from_pct, atol=0.002)
    assert data["LapBestLapTime"][-1] == pytest.approx(min(shown[:LAPS]), abs=1e-3)


def test_last_lap_time_reads_minus_one_after_the_line(session) -> None:
    data = session[1]
    lap, last = data["Lap"], data["LapLastLapTime"]
    starts = np.nonzero(np.diff(lap) == 1)[0] + 1
    assert (last[:starts[0]] == 0).all()  # no lap yet
    for k, i in enumerate(starts):
        assert last[i] == -1
        after = last[i:i + 90]
        if k == 0:
            assert (after == -1).all()  # the out lap is not timed
        else:
            j = int(np.argmax(after != -1))
            assert 0.5 * 60 <= j <= 1.3 * 60 and after[j] > 0
    cur = data["LapCurrentLapTime"]
    assert (cur[:starts[0]] == 0).all()


# ---------------------------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------------------------
def _segment_times_from_telemetry(data: dict, lap: int, start_pct: float, end_pct: float) -> float:
    """Time across a corner segment from LapDistPct and SessionTime (interpolated)."""
    st, pct, laps = data["SessionTime"], data["LapDistPct"].astype(float), data["Lap"]
    prog = laps + pct  # continuous progress in laps
    a = lap + start_pct
    b = (lap if end_pct > start_pct else lap + 1) + end_pct
    order = np.maximum.accumulate(prog)
    return float(np.interp(b, order, st) - np.interp(a, order, st))


def test_each_fault_costs_time_in_its_own_segment(session) -> None:
    data, truth = session[1], session[3]
    cf = load_corner_file("pitboxsim_demo", "Demo Circuit")
    by_lap = {lap["lap"]: lap for lap in truth["laps"]}
    for f in truth["faults"]:
        assert f["cost_s"] > 0.08, f
        faulted = {g["corner"] for g in truth["faults"] if g["lap"] == f["lap"]}
        others = [s for s in by_lap[f["lap"]]["segments"] if s["corner"] not in faulted]
        assert max(abs(s["cost_s"]) for s in others) < 0.03, f
        c = cf.get(f["corner"])
        seg = next(s for s in by_lap[f["lap"]]["segments"] if s["corner"] == f["corner"])
        measured = _segment_times_from_telemetry(data, f["lap"], c.start_pct, c.end_pct)
        assert measured == pytest.approx(seg["time_s"], abs=0.003)
        assert measured - seg["fault_free_time_s"] == pytest.approx(seg["cost_s"], abs=0.003)
    kinds = {f["fault"]: f["measured"] for f in truth["faults"]}
    assert kinds["brake_early"]["brake_point_shift_m"] == pytest.approx(-15, abs=1.5)
    assert kinds["brake_late"]["brake_point_shift_m"] == pytest.approx(15, abs=1.5)
    assert kinds["low_min_speed"]["min_speed_change_kmh"] == pytest.approx(-6, abs=0.3)
    assert kinds["late_throttle"]["throttle_pickup_shift_m"] == pytest.approx(12, abs=1.5)
    assert kinds["coasting"]["coasting_s"] == pytest.approx(1.0, abs=0.05)


def test_time_grid_gives_the_true_delta_between_laps(session) -> None:
    data, truth, arrays = session[1], session[3], session[4]
    laps = list(arrays["lap"])
    t = arrays["time_s"]
    lap_times = {lap["lap"]: lap["lap_time_s"] for lap in truth["laps"]}
    L = truth["track"]["length_m"]
    for r, lap in enumerate(laps):
        # the time at the last metre plus the rest of the lap at the crossing speed is the lap time
        assert 0 < lap_times[lap] - t[r, -1] < (L - arrays["distance_m"][-1]) / 10
        # the grid matches the telemetry's own time at each metre (SessionTime vs LapDist)
        m = data["Lap"] == lap
        st = data["SessionTime"][m] - data["SessionTime"][m][0]
        d = data["LapDist"][m].astype(float)
        probe = np.arange(50, int(L) - 50, 100)
        tel = np.interp(probe, d, st)
        grid = t[r, probe] - t[r, int(np.ceil(d[0]))] + np.interp(np.ceil(d[0]), d, st)
        assert np.abs(tel - grid).max() < 0.002
    np.testing.assert_allclose(arrays["session_time_s"] - t, np.repeat(
        arrays["session_time_s"][:, :1] - t[:, :1], t.shape[1], axis=1), atol=1e-9)
    # the fault-free run differs only on faulted laps
    for r, lap in enumerate(laps):
        same = np.allclose(arrays["fault_free_time_s"][r], t[r], atol=1e-6)
        faulted = any(f["lap"] == lap for f in truth["faults"])
        assert same != faulted or lap == laps[-1]


def test_a_lap_without_fault_matches_the_clean_lap_within_the_noise(session) -> None:
    truth = session[3]
    timed = [lap for lap in truth["laps"] if lap["kind"] == "timed"]
    for lap in timed:
        if not lap["faults"]:
            assert lap["lap_time_s"] == pytest.approx(lap["fault_free_lap_time_s"], abs=0.005)
        # stated noise: lap-time sigma about 0.15 s around the driver's mean (docs/simulator.md)
        assert abs(lap["fault_free_lap_time_s"] - truth["reference_lap_time_s"]) < 0.8 + 4 * 0.15


@pytest.mark.parametrize("track", ["pitboxsim_ring", "pitboxsim_glen"])
def test_other_tracks_drive_a_clean_lap(track: str) -> None:
    sim = simulate_to_channels(track, laps=2, seed=1, in_lap=False)
    lat = sim.channels["LatAccel"]
    assert (np.abs(lat) <= Car().lat_limit(sim.channels["Speed"].astype(float)) + 0.16).all()
    times = [lap["lap_time_s"] for lap in sim.truth["laps"] if lap["kind"] == "timed"]
    assert all(sim.truth["min_time_lap_s"] <= t <= sim.truth["min_time_lap_s"] * 1.04 for t in times)
    assert sim.channels["OnPitRoad"][-1] == 0 and sim.channels["Speed"][-1] > 10


def test_ten_laps_with_two_faults_record_both_in_the_truth() -> None:
    sim = simulate_to_channels("pitboxsim_demo", laps=10, faults=["3:T2:brake_late:10", "7:T6:coasting:0.8"], seed=2)
    assert [(f["lap"], f["corner"], f["fault"]) for f in sim.truth["faults"]] == [(3, "T2", "brake_late"),
                                                                               (7, "T6", "coasting")]


@pytest.mark.parametrize(("faults", "needle"), [
    (["4-T3-brake_early-15"], "expected LAP:CORNER:FAULT:SIZE"),
    (["x:T3:brake_early:15"], "LAP must be a whole number"),
    (["4:T3:brake_early:far"], "SIZE must be a number"),
    (["4:T3:drift:2"], "unknown fault 'drift'; expected one of brake_early"),
    (["4:T3:coasting:9"], "coasting size must be in"),
    (["9:T3:coasting:1"], "LAP must be a timed lap 1..8"),
    (["4:T12:coasting:1"], "has no corner 'T12'; corners are T1"),
    (["4:T3:coasting:1", "4:t3:coasting:0.5"], "given twice"),
])
def test_bad_fault_specs_raise_sim_error(faults: list[str], needle: str) -> None:
    with pytest.raises(SimError) as exc:
        simulate_to_channels("pitboxsim_demo", laps=8, faults=faults)
    assert needle in str(exc.value)


def test_braking_fault_on_a_flat_out_corner_is_refused() -> None:
    with pytest.raises(SimError, match="T2 of pitboxsim_ring is taken without braking"):
        simulate_to_channels("pitboxsim_ring", laps=2, faults=["1:T2:brake_late:5"])


def test_abs_car_flags_abs_during_a_lock_up_only() -> None:
    sim = simulate_to_channels("pitboxsim_demo", laps=2, faults=["2:T3:lockup:0.5"], seed=1, car=Car(abs=True))
    ch = sim.channels
    active = ch["BrakeABSactive"]
    assert 0.4 * 60 <= active.sum() <= 0.6 * 60 and set(ch["Lap"][active]) == {2}
    ratio = np.minimum(ch["LFspeed"], ch["RFspeed"])[active] / ch["Speed"][active]
    assert 0.5 < ratio.min() < 0.85  # ABS cycling: well below Speed but never locked
    assert not simulate_to_channels("pitboxsim_demo", laps=1, seed=1).channels["BrakeABSactive"].any()
