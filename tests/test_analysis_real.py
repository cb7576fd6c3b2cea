"""Lap analysis on the real iRacing files (short ovals with complete laps).

Independent truths: pyirsdk's reading of the raw samples (sector and fuel crossings computed
here with a plain loop), iRacing's own ``LapLastLapTime``, the files' GPS, their YAML.
"""

from __future__ import annotations

import csv
import json
from itertools import combinations
from pathlib import Path

import irsdk
import numpy as np
import pandas as pd
import pytest

import pitbox.analysis as pa
from pitbox.analysis import context as X
from pitbox.analysis import trackmap as T
from pitbox.analysis.errors import BadReference, ReferenceLapNotFound, TrackMismatch
from pitbox.cli import main as cli_main
from pitbox.store import import_file

from conftest import AMG, LANGLEY, REAL, need

LANGLEY_2 = REAL / "skmodified_langley_iRacingTelemetry_2015-08-24_practice.ibt"
MARTINSVILLE = REAL / "skmodified-tour_martinsville_iRacingTelemetry_2015-05-30_practice.ibt"
W13 = REAL / "mercedesw13_spielberg-gp_teamjorge-ibt_valid.ibt"
OVALS = [LANGLEY, LANGLEY_2, MARTINSVILLE]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A store with the three oval files with complete laps; file name -> session id."""
    data = tmp_path_factory.mktemp("real_store")
    ids = {}
    for p in OVALS:
        ids[p.name] = import_file(need(p), data).sessions[0]
    return data, ids


def _raw(path: Path, *names: str) -> dict[str, np.ndarray]:
    ib = irsdk.IBT()
    ib.open(str(path))
    try:
        return {n: np.asarray(ib.get_all(n), dtype=np.float64) for n in names}
    finally:
        ib.close()


def _crossing_time(t: np.ndarray, pct: np.ndarray, i: int, target: float) -> float:
    """Time between samples i and i+1 where LapDistPct passes ``target`` (wrap handled)."""
    p0, p1 = pct[i], pct[i + 1]
    if p1 < p0:  # the start line
        p1 += 1.0
        target = target if target > 0.5 else target + 1.0
    return t[i] + (target - p0) / (p1 - p0) * (t[i + 1] - t[i])


def _reference_sectors(path: Path, starts: list[float]) -> list[list[float]]:
    """Sector times of every lap with both lines crossed, from pyirsdk samples, by a plain loop."""
    raw = _raw(path, "SessionTime", "Lap", "LapDistPct")
    t, lap, pct = raw["SessionTime"], raw["Lap"], raw["LapDistPct"]
    events: list[tuple[int, int, int, float]] = []  # (stretch, lap number entered, sector index, time)
    stretch = 0  # a blank row (reset to the pits) starts a new stretch of driving
    for i in range(len(t) - 1):
        if lap[i] == 0 or lap[i + 1] == 0:
            stretch += 1
            continue
        if lap[i + 1] == lap[i] + 1 and pct[i] > 0.5 and pct[i + 1] < 0.5:
            events.append((stretch, int(lap[i + 1]), 0, _crossing_time(t, pct, i, 0.0)))
        for k, s in enumerate(starts[1:], start=1):
            if lap[i + 1] == lap[i] and pct[i] < s <= pct[i + 1]:
                events.append((stretch, int(lap[i]), k, _crossing_time(t, pct, i, s)))
    laps = []
    for j, (st, ln, k, _) in enumerate(events):
        if k != 0:
            continue
        seq = events[j : j + len(starts) + 1]
        if [e[2] for e in seq] == [*range(len(starts)), 0] and all(e[1] == ln and e[0] == st for e in seq[:-1]) \
                and seq[-1][0] == st:
            times = [e[3] for e in seq]
            laps.append(list(np.diff(times)))
    return laps


@pytest.mark.real
@pytest.mark.parametrize("path", OVALS, ids=lambda p: p.stem[:30])
def test_sector_times_match_yaml_boundaries(store, path: Path) -> None:
    data, ids = store
    s = pa.load_session(ids[path.name], data)
    starts = X.sector_starts(s.info)
    wi = s.info["SplitTimeInfo"]["Sectors"]
    assert starts == [float(x["SectorStartPct"]) for x in wi]
    ours = X.sector_times(s)
    truth = _reference_sectors(path, starts)
    assert len(ours) == len(truth) >= 1
    cols = [f"s{i + 1}_s" for i in range(len(starts))]
    np.testing.assert_allclose(ours[cols].to_numpy(), np.array(truth), atol=1e-3)
    laps = s.laps.set_index("lap_index")
    for _, row in ours.iterrows():
        assert abs(row.sum_s - laps.time_s[row.lap_index]) < 1e-6
        assert abs(row.sum_s - laps.iracing_time_s[row.lap_index]) < 4e-3
    best = X.best_sectors(s)
    assert best.attrs["optimal_lap_s"] == pytest.approx(ours[cols].min().sum())


def _complete_laps(data: Path, ids: dict[str, str]) -> list[pa.Lap]:
    out = []
    for sid in ids.values():
        s = pa.load_session(sid, data)
        out += [s.lap(int(i)) for i in s.laps.pitbox.pick_complete().lap_index]
    return out


@pytest.mark.real
def test_closure_on_every_pair_of_complete_real_laps(store) -> None:
    data, ids = store
    laps = _complete_laps(data, ids)
    pairs = [(a, b) for a, b in combinations(laps, 2) if a.session.track == b.session.track]
    assert len(pairs) >= 4  # Langley x3 laps (2 sessions), Martinsville x2
    for a, b in pairs:
        d = a.delta_to(b)
        assert abs(d.closure_s) < 1e-3, (a, b, d.summary())
        assert abs(d.closure_iracing_s) < 4e-3, (a, b, d.summary())
        assert d.alignment_error_s < 1e-3
        # delta at the line against pyirsdk's own LapLastLapTime values read independently
        assert d.at_line_s == pytest.approx(a.time_s - b.time_s, abs=1e-3)


@pytest.mark.real
@pytest.mark.parametrize("path", [LANGLEY, MARTINSVILLE], ids=["langley", "martinsville"])
def test_corners_are_the_two_ends_of_each_oval(store, path: Path) -> None:
    data, ids = store
    a = pa.analyse(ids[path.name], data=data)
    assert a.corner_source == "gps"
    assert len(a.corners) == 2 and all(c.direction == "left" for c in a.corners)
    # ends of the oval: extremes of the GPS path along its principal axis (independent of us)
    raw = _raw(path, "Lat", "Lon", "Speed")
    ok = (raw["Lat"] != 0) & (raw["Speed"] > 5)
    x, y = T.project(raw["Lat"][ok], raw["Lon"][ok])
    pts = np.c_[x, y] - np.c_[x, y].mean(0)
    axis = np.linalg.svd(pts, full_matrices=False)[2][0]
    along = pts @ axis
    xy = T.lap_xy(a.session, a.ref_trace)
    apex_along = []
    for c in a.corners:
        i = int(np.searchsorted(xy.distance_m, c.apex_m))
        p = np.array([xy.x_m[i], xy.y_m[i]]) - np.c_[x, y].mean(0)
        apex_along.append(float(p @ axis))
    lo, hi = np.percentile(along, [25, 75])
    assert min(apex_along) < lo and max(apex_along) > hi  # one corner at each end


@pytest.mark.real
def test_a_users_corner_file_from_pitbox_tracks_names_the_oval_ends(store, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Corner files are track data a user writes: one in a PITBOX_TRACKS folder names real
    Langley's two ends; a malformed one is one error line naming the file."""
    data, ids = store
    s = pa.load_session(ids[LANGLEY.name], data)
    (tmp_path / "langley.corners.yaml").write_text(
        f"track_name: {s.track}\ntrack_config: '{s.track_config}'\ncorners:\n"
        "  - {name: Turns 1-2, start_pct: 0.05, end_pct: 0.45}\n  - {name: Turns 3-4, start_pct: 0.55, end_pct: 0.95}\n",
        encoding="utf-8")
    monkeypatch.setenv("PITBOX_TRACKS", str(tmp_path))
    a = pa.analyse(s, data=data)
    assert [c.name for c in a.corners] == ["Turns 1-2", "Turns 3-4"]
    assert a.track_file is not None and a.track_file.path == tmp_path / "langley.corners.yaml"
    assert [c.name for c in pa.analyse(s, data=data, corner_file=False).corners] == ["T1", "T2"]
    (tmp_path / "langley.corners.yaml").write_text(f"track_name: {s.track}\ncorners: []\n", encoding="utf-8")
    assert cli_main(["coach", ids[LANGLEY.name], "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "langley.corners.yaml: corners must be a non-empty list" in err[0]


@pytest.mark.real
def test_fuel_used_per_lap_from_raw_samples(store) -> None:
    data, ids = store
    s = pa.load_session(ids[LANGLEY.name], data)
    fuel = X.fuel_per_lap(s).set_index("lap_index")
    raw = _raw(LANGLEY, "SessionTime", "FuelLevel")
    for _, lap in s.laps.pitbox.pick_complete().iterrows():
        f0 = np.interp(lap.start_s, raw["SessionTime"], raw["FuelLevel"])
        f1 = np.interp(lap.end_s, raw["SessionTime"], raw["FuelLevel"])
        assert fuel.fuel_used_l[lap.lap_index] == pytest.approx(f0 - f1, abs=1e-4)
        assert 0.1 < fuel.fuel_used_l[lap.lap_index] < 0.5  # an SK modified on a 0.58 km oval


@pytest.mark.real
def test_pick_fastest_never_takes_an_invalid_lap(store) -> None:
    data, ids = store
    s = pa.load_session(ids[LANGLEY.name], data)
    laps = s.laps
    assert set(laps.reason) >= {"out_lap", "reset"}
    row = laps.pitbox.pick_fastest()
    valid = laps[laps.valid & laps.complete]
    assert row.lap_index == valid.loc[valid.time_s.idxmin(), "lap_index"]
    fake = laps.copy()
    fake.loc[fake.lap_index == row.lap_index, "valid"] = False  # the fastest becomes invalid
    assert fake.pitbox.pick_fastest().lap_index != row.lap_index
    assert fake.pitbox.pick_fastest(valid_only=False).lap_index == row.lap_index
    assert s.reference().lap_index == row.lap_index


@pytest.mark.real
def test_telemetry_on_distance_and_accessor(store) -> None:
    data, ids = store
    s = pa.load_session(ids[MARTINSVILLE.name], data)
    lap = s.lap(s.laps.pitbox.pick_fastest())
    tel = lap.telemetry(["Speed", "Gear"])
    raw = _raw(MARTINSVILLE, "Speed")["Speed"]
    a, b, _, _ = lap.rows()
    np.testing.assert_array_equal(tel.Speed.to_numpy(), raw[a:b].astype(np.float32))
    on_d = tel.pitbox.on_distance(step_m=2.0)
    assert on_d.distance_m.iloc[0] == 0 and on_d.distance_m.iloc[-1] == pytest.approx(s.track_length_m)
    assert on_d.time_s.iloc[-1] == pytest.approx(lap.time_s, abs=1e-6)
    assert set(on_d.Gear.unique()) <= set(tel.Gear.unique())  # discrete: held, never interpolated
    # LapDist / LapDistPct ratio is the length we use; the YAML's rounded value agrees
    assert s.track_length_m == pytest.approx(790, abs=6)


@pytest.mark.real
def test_track_map_from_gps_model_and_dead_reckoning(store) -> None:
    data, ids = store
    s1 = pa.load_session(ids[LANGLEY.name], data)
    s2 = pa.load_session(ids[LANGLEY_2.name], data)
    tr = s2.trace(int(s2.laps.pitbox.pick_fastest().lap_index))
    gps = T.lap_xy(s2, tr)
    assert gps.attrs["source"] == "gps"
    model = T.find_track_model(s2, data)  # learned from the other Langley session
    assert model is not None and model.source_session == s1.id
    x, y = model.xy(tr.distance_m / tr.length_m)
    assert np.mean(np.hypot(x - gps.x_m, y - gps.y_m)) < 3.0
    for drop in (["Lat", "Lon"], ["Lat", "Lon", "Yaw"]):  # as a live recording: no GPS (nor Yaw)
        bare = pa.Trace(tr.session_id, tr.lap_index, tr.length_m, tr.distance_m, tr.time_s,
                        {k: v for k, v in tr.channels.items() if k not in drop}, tr.lap_time_s, complete=True)
        dr = T.lap_xy(s2, bare, model=None, data=data / "nothing-here")
        assert dr.attrs["source"] == "dead_reckoning"
        a_, b_ = np.c_[gps.x_m, gps.y_m], np.c_[dr.x_m, dr.y_m]
        a_, b_ = a_ - a_.mean(0), b_ - b_.mean(0)
        u, _, vt = np.linalg.svd(b_.T @ a_)
        rms = np.sqrt(np.mean(np.sum((b_ @ (u @ vt) - a_) ** 2, axis=1)))
        assert rms < 5.0  # same shape as the GPS path after the best rotation


@pytest.mark.real
def test_setup_diff_and_conditions_from_yaml() -> None:
    a = pa.load_session(need(AMG))
    b = pa.load_session(need(W13))
    sa = X.car_setup(a)
    assert sa["Tires.LeftFront.StartingPressure"] == a.info["CarSetup"]["Tires"]["LeftFront"]["StartingPressure"]
    diff = X.setup_diff(a, b)
    assert "Tires.LeftFront.StartingPressure" in set(diff.item) or sa.get("Tires.LeftFront.StartingPressure") == \
        X.car_setup(b).get("Tires.LeftFront.StartingPressure")
    assert X.setup_diff(a, a).empty
    c = X.conditions(b)
    assert c["air_temp_c"] == pytest.approx(23.89) and c["track_temp_c"] == pytest.approx(38.89)
    assert c["wetness_measured"] == "dry"


@pytest.mark.real
def test_reference_from_an_ibt_file_and_bad_references(store) -> None:
    data, ids = store
    s = pa.load_session(ids[LANGLEY.name], data)
    ref = s.reference(f"{LANGLEY_2}:1")  # an .ibt file that was never imported
    assert ref.session.source.path == LANGLEY_2 and ref.time_s == pytest.approx(15.2397, abs=1e-3)
    with pytest.raises(ReferenceLapNotFound, match="no lap_index 42"):
        s.reference(f"{ids[LANGLEY.name]}:42")
    with pytest.raises(TrackMismatch, match="martinsville"):
        s.reference(f"{ids[MARTINSVILLE.name]}:1")
    with pytest.raises(BadReference, match="not a complete lap"):
        s.reference(f"{ids[LANGLEY.name]}:0")
    with pytest.raises(BadReference, match="SESSION:LAP"):
        s.reference("nonsense")


@pytest.mark.real
def test_cli_compare_and_bad_references(store, capsys: pytest.CaptureFixture[str]) -> None:
    data, ids = store
    lg, lg2, mv = ids[LANGLEY.name], ids[LANGLEY_2.name], ids[MARTINSVILLE.name]
    assert cli_main(["compare", f"{lg2}:1", f"{lg}:1", "--data", str(data), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["closure_s"]) < 1e-3 and abs(out["closure_iracing_s"]) < 4e-3
    assert [c["corner"] for c in out["per_corner"]] == ["T1", "T2"]
    assert sum(c["delta_s"] for c in out["per_corner"]) == pytest.approx(out["delta_at_line_s"], abs=1e-6)
    assert cli_main(["compare", f"{lg}:2", f"{lg}:7", "--data", str(data)]) == 2
    assert "no lap_index 7" in capsys.readouterr().err
    assert cli_main(["compare", f"{lg}:1", f"{mv}:1", "--data", str(data)]) == 2
    assert "same track" in capsys.readouterr().err


@pytest.mark.real
def test_motec_csv_layout_and_units(store, tmp_path: Path) -> None:
    data, ids = store
    out = tmp_path / "lap.csv"
    assert cli_main(["export", f"{ids[LANGLEY.name]}:1", "--format", "motec", "--out", str(out),
                     "--data", str(data)]) == 0
    rows = list(csv.reader(out.read_text(encoding="utf-8").splitlines()))
    assert rows[0][:2] == ["Format", "MoTeC CSV File"]
    keys = [r[0] for r in rows[:12]]
    assert keys == ["Format", "Venue", "Vehicle", "Driver", "Device", "Comment", "Log Date", "Log Time",
                    "Sample Rate", "Duration", "Range", "Beacon Markers"]
    assert rows[8][1:3] == ["60.000", "Hz"] and rows[1][1] == "langley"
    assert rows[12] == [] and rows[13] == [] and rows[16] == [] and rows[17] == []
    names, units = rows[14], rows[15]
    assert names[:2] == ["Time", "Distance"] and units[:2] == ["s", "m"]
    unit = dict(zip(names, units, strict=True))
    assert unit["Ground Speed"] == "km/h" and unit["Throttle Pos"] == "%" and unit["Steered Angle"] == "deg"
    assert unit["G Force Lat"] == "G" and unit["Engine RPM"] == "rpm"
    body = pd.DataFrame([[float(v) for v in r] for r in rows[18:]], columns=names)
    raw = _raw(LANGLEY, "SessionTime", "Speed", "Throttle")
    lap = pa.load_session(ids[LANGLEY.name], data).lap(1)
    a, b = int(lap.row.start_row), int(lap.row.end_row)
    assert len(body) == b - a
    np.testing.assert_allclose(body["Ground Speed"], raw["Speed"][a:b] * 3.6, rtol=1e-5)
    np.testing.assert_allclose(body["Throttle Pos"], raw["Throttle"][a:b] * 100, atol=1e-3)
    np.testing.assert_allclose(body["Time"], raw["SessionTime"][a:b] - lap.row.start_s, atol=1e-5)
    assert float(rows[9][1]) == pytest.approx(body.Time.iloc[-1], abs=1e-3)


@pytest.mark.real
def test_plain_csv_export(store, tmp_path: Path) -> None:
    data, ids = store
    out = tmp_path / "lap.csv"
    assert cli_main(["export", f"{ids[MARTINSVILLE.name]}:2", "--format", "csv", "--out", str(out),
                     "--data", str(data)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns[:2]) == ["time [s]", "distance [m]"]
    assert "Speed [m/s]" in df.columns and "Throttle [0-1]" in df.columns
    assert df["time [s]"].iloc[0] >= 0 and df["time [s]"].iloc[-1] <= 19.5458
