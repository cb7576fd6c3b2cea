"""Simulator tracks: geometry checked against plane geometry and geodesy, corner files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from pitbox.errors import PitboxError, TrackFileError
from pitbox.sim import SimError, list_tracks, load_corner_file, load_track, read_corner_file
from pitbox.sim.driver import computed_corner_file
from pitbox.sim.tracks import track_from_dict
from pitbox.tracks import TRACKS_DIR

TRACKS = ["pitboxsim_demo", "pitboxsim_ring", "pitboxsim_glen"]


def haversine_m(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance on a sphere of the WGS84 mean radius (independent of the projection)."""
    r = 6371008.8
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * r * np.arcsin(np.sqrt(a))


def test_three_tracks_are_shipped() -> None:
    assert set(TRACKS) <= set(list_tracks())


@pytest.mark.parametrize("name", TRACKS)
def test_track_is_closed_and_its_length_is_the_polyline_length(name: str) -> None:
    t = load_track(name)
    poly = np.hypot(np.diff(t.x_m), np.diff(t.y_m)).sum()
    assert poly == pytest.approx(t.length_m, rel=2e-4)
    assert math.hypot(t.x_m[-1] - t.x_m[0], t.y_m[-1] - t.y_m[0]) < 1e-6
    assert t.closure_gap_m < 0.01  # the shipped files close to the centimetre
    turned = t.heading_rad[-1] - t.heading_rad[0]
    assert abs(abs(turned) - 2 * math.pi) < 1e-3


@pytest.mark.parametrize("name", TRACKS)
def test_heading_and_curvature_agree_with_the_positions(name: str) -> None:
    t = load_track(name)
    s = np.arange(5.0, t.length_m - 5.0, 2.0)
    h = 0.5
    xa, ya = t.xy(s - h)
    xb, yb = t.xy(s + h)
    chord_heading = np.arctan2(yb - ya, xb - xa)
    err = np.angle(np.exp(1j * (chord_heading - t.heading(s))))
    assert np.abs(err).max() < 2e-3
    # curvature = d heading / d s, from positions three metres apart (circle through three points)
    x0, y0 = t.xy(s - 1.5)
    x1, y1 = t.xy(s)
    x2, y2 = t.xy(s + 1.5)
    cross = (x1 - x0) * (y2 - y1) - (y1 - y0) * (x2 - x1)
    k_pts = 2 * cross / (np.hypot(x1 - x0, y1 - y0) * np.hypot(x2 - x1, y2 - y1) * np.hypot(x2 - x0, y2 - y0))
    smooth = np.abs(np.gradient(t.curvature(s), s)) < 1e-4  # away from the kinks of the curvature
    assert np.abs(k_pts - t.curvature(s))[smooth].max() < 2e-3


def test_demo_circuit_has_the_size_and_variety_asked_for() -> None:
    t = load_track("pitboxsim_demo")
    assert 2500 <= t.length_m <= 3500
    assert 6 <= len(t.corners) <= 10
    radii = [1 / abs(p.k0) for p in t.pieces if p.k0 == p.k1 and p.k0 != 0]
    assert min(radii) < 20 and max(radii) > 150  # a hairpin and a fast sweeper
    assert any(p.k0 * p.k1 < 0 for p in t.pieces)  # a direction change inside a transition: the chicane


@pytest.mark.parametrize("name", TRACKS)
def test_lapdistpct_to_xy_and_back(name: str) -> None:
    t = load_track(name)
    pct = np.linspace(0.0, 0.999, 400)
    x, y = t.pct_to_xy(pct)
    s = t.xy_to_s(x, y)
    d = np.abs(s - pct * t.length_m)
    d = np.minimum(d, t.length_m - d)
    assert d.max() < 0.3


@pytest.mark.parametrize("name", TRACKS)
def test_latlon_distances_agree_with_the_plane(name: str) -> None:
    t = load_track(name)
    s = np.linspace(0, t.length_m, 60, endpoint=False)
    lat, lon, alt = t.latlon(s)
    x, y = t.xy(s)
    d_plane = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    d_geo = haversine_m(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    far = d_plane > 100
    assert np.abs(d_geo[far] / d_plane[far] - 1).max() < 3e-3
    xb, yb = t.from_latlon(lat, lon)
    assert np.abs(xb - x).max() < 1e-6 and np.abs(yb - y).max() < 1e-6
    assert alt[0] == pytest.approx(t.origin_alt)


@pytest.mark.parametrize("name", TRACKS)
def test_corner_file_covers_the_lap_and_matches_the_driver(name: str) -> None:
    t = load_track(name)
    cf = load_corner_file(t.name, t.config)
    assert cf is not None and cf.source == "simulated" and cf.covers_lap
    assert cf.names() == [c.name for c in t.corners]
    # every LapDistPct belongs to exactly one segment
    pct = np.linspace(0, 1, 5001, endpoint=False)
    hits = sum(c.contains(pct).astype(int) for c in cf.corners)
    assert (hits == 1).all()
    # the shipped file is what the simulator computes today
    fresh = computed_corner_file(t)
    for a, b in zip(cf.corners, fresh.corners, strict=True):
        assert (a.name, a.start_pct, a.end_pct) == (b.name, pytest.approx(b.start_pct, abs=2e-6),
                                                     pytest.approx(b.end_pct, abs=2e-6))
    # each segment holds its corner's apex and ends at the next corner's brake point minus the lead
    for c in cf.corners:
        assert c.contains(c.apex_pct)


def test_corner_file_lookup_by_iracing_names(tmp_path: Path) -> None:
    assert load_corner_file("spielberg gp", "Grand Prix") is None
    real = tmp_path / "spielberg.corners.yaml"
    real.write_text(yaml.safe_dump({"track_name": "spielberg gp", "track_config": "Grand Prix", "corners": [
        {"name": "T1", "start_pct": 0.05, "end_pct": 0.12}, {"name": "T3", "start_pct": 0.28, "end_pct": 0.33}]}))
    cf = load_corner_file("spielberg gp", "Grand Prix", search_dirs=[tmp_path])
    assert cf is not None and cf.names() == ["T1", "T3"] and not cf.covers_lap
    assert list(cf.corner_at([0.06, 0.2, 0.3])) == ["T1", "", "T3"]
    assert load_corner_file("SPIELBERG GP", "grand prix", search_dirs=[tmp_path]).path == real
    assert read_corner_file(real).get("t3").end_pct == 0.33


@pytest.mark.parametrize(("doc", "needle"), [
    ({"track_name": "x", "corners": [{"name": "T1", "start_pct": 1.5, "end_pct": 0.2}]}, "start_pct must be in [0, 1]"),
    ({"track_name": "x", "corners": [{"name": "T1", "start_pct": 0.1}]}, "has no end_pct"),
    ({"track_name": "x", "corners": [{"name": "T1", "start_pct": 0.1, "end_pct": 0.2},
                                     {"name": "t1", "start_pct": 0.3, "end_pct": 0.4}]}, "unique"),
    ({"track_name": "x", "covers_lap": True, "corners": [{"name": "T1", "start_pct": 0.1, "end_pct": 0.2},
                                                         {"name": "T2", "start_pct": 0.3, "end_pct": 0.1}]}, "covers_lap"),
    ({"corners": []}, "track_name"),
])
def test_malformed_corner_file_names_the_file_and_field(tmp_path: Path, doc: dict, needle: str) -> None:
    p = tmp_path / "bad.corners.yaml"
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(TrackFileError, match="bad.corners.yaml") as exc:
        read_corner_file(p)
    assert needle in str(exc.value)
    assert isinstance(exc.value, PitboxError)


def test_unknown_track_lists_the_known_ones() -> None:
    with pytest.raises(SimError, match="unknown track 'nowhere'.*pitboxsim_demo"):
        load_track("nowhere")


def _square(side: float = 200.0, gap: float = 0.0) -> dict:
    turn = {"turn": "left", "radius": 30.0, "angle": 90.0, "entry": 10.0, "exit": 10.0}
    return {"track_name": "sq", "config_name": "c", "origin": {"lat": 45.0, "lon": 7.0},
            "pit": {"entry_pct": 0.9, "box_pct": 0.05, "exit_pct": 0.1},
            "elements": [{"straight": side + gap}, dict(turn, corner="T1"), {"straight": side}, dict(turn, corner="T2"),
                         {"straight": side}, dict(turn, corner="T3"), {"straight": side}, dict(turn, corner="T4")]}


def test_a_track_from_data_closes_or_says_why() -> None:
    t = track_from_dict(_square())
    # each turn: two 10 m transitions turning 1/6 rad each, and an arc of radius 30 m for the rest
    assert t.length_m == pytest.approx(4 * 200 + 4 * (30 * (math.pi / 2 - 1 / 3) + 20), rel=1e-6)
    with pytest.raises(SimError, match="does not close: the end is 5.00 m from the start"):
        track_from_dict(_square(gap=5.0), src="sq.yaml")
    bad = _square()
    bad["elements"][1] = {"turn": "left", "radius": 10.0, "angle": 20.0, "entry": 30.0, "exit": 30.0}
    with pytest.raises(SimError, match="element 1: transitions turn"):
        track_from_dict(bad)
    hilly = _square()
    hilly["elements"][0]["dz"] = 5.0
    with pytest.raises(SimError, match="dz.*sum to 0"):
        track_from_dict(hilly)


def test_shipped_track_files_are_package_data() -> None:
    names = {p.name for p in TRACKS_DIR.glob("*.yaml")}
    for t in TRACKS:
        assert f"{t}.yaml" in names and f"{t}.corners.yaml" in names
