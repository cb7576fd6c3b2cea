"""I/O-free pieces of the analysis against exact answers (physics and geometry)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pitbox.analysis.align import (
    Trace,
    compute_delta,
    distance_grid,
    integrate_speed,
    interpolation_error_s,
    resample,
    unwrap_distance,
)
from pitbox.analysis.errors import BadReference, NoValidLap
from pitbox.analysis.session import parse_lap_spec, parse_track_length
from pitbox.analysis.trackmap import project


def _motion(a_ms2: float, v0: float, length: float, rate: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """Samples of a car accelerating uniformly: time [s] and distance [m] until ``length``."""
    t_end = (-v0 + np.sqrt(v0**2 + 2 * a_ms2 * length)) / a_ms2
    t = np.arange(0.0, t_end + 2 / rate, 1 / rate)
    return t, v0 * t + 0.5 * a_ms2 * t**2


def test_unwrap_distance_over_the_line() -> None:
    pct = np.array([0.98, 0.99, 0.005, 0.02, 0.5, 0.99, 0.001])
    d = unwrap_distance(pct, 1000.0, started=True)
    np.testing.assert_allclose(d, [-20, -10, 5, 20, 500, 990, 1001])
    assert np.all(np.diff(unwrap_distance(np.array([0.1, 0.2, 0.19, 0.3]), 100.0, False)) >= 0)


def test_distance_grid_ends_on_the_line_and_part_laps_share_points() -> None:
    g = distance_grid(576.28, 1.0)
    assert g[0] == 0 and g[-1] == 576.28 and np.all(np.diff(g) > 0) and len(g) == 578
    part = distance_grid(576.28, 1.0, 33.3, 100.2)
    assert part[0] == 34 and part[-1] == 100 and set(part) <= set(g)


def test_linear_time_on_distance_within_the_stated_interpolation_error() -> None:
    t, d = _motion(a_ms2=-12.0, v0=60.0, length=120.0)
    grid = np.arange(0, 120.0, 0.5)
    true_t = (60.0 - np.sqrt(60.0**2 - 2 * 12.0 * grid)) / 12.0
    ours = resample(d, t, grid)
    est = interpolation_error_s(d, t, grid)
    err = np.max(np.abs(ours - true_t))
    # bound of linear interpolation: (Δd² / 8) max|d²t/dd²| = (v/60)² / 8 * a / v³ at the slowest point
    v_min = np.sqrt(60.0**2 - 2 * 12.0 * 120.0)
    bound = (v_min / 60) ** 2 / 8 * 12.0 / v_min**3
    assert err <= bound * 1.01
    assert 0.2 * err <= est <= 5 * err  # the stated estimate is of the right size


def test_delta_of_two_uniform_motions_is_exact() -> None:
    L = 300.0
    grid = distance_grid(L, 1.0)
    ta = grid / 50.0  # 50 m/s
    tb = grid / 49.0
    a = Trace("a", 1, L, grid, ta, lap_time_s=L / 50, iracing_time_s=L / 50 + 0.001)
    b = Trace("b", 2, L, grid, tb, lap_time_s=L / 49, iracing_time_s=L / 49)
    d = compute_delta(b, a)
    np.testing.assert_allclose(d.delta_s, grid / 49 - grid / 50, atol=1e-12)
    assert abs(d.closure_s) < 1e-12 and d.closure_iracing_s == pytest.approx(0.001)


def test_integrate_speed_is_exact_for_linear_speed() -> None:
    t = np.linspace(0, 10, 601)
    assert integrate_speed(t, 3 * t)[-1] == pytest.approx(150.0)


def test_resample_step_channels_hold_the_last_sample() -> None:
    d = np.array([0.0, 1.0, 2.0, 3.0])
    gear = np.array([2, 3, 3, 4])
    np.testing.assert_array_equal(resample(d, gear, np.array([0.5, 1.0, 2.9]), "step"), [2, 3, 3])


def test_local_projection_distances_match_the_great_circle() -> None:
    lat0, lon0 = 46.61, 7.48
    lat = lat0 + np.array([0.0, 0.01, 0.0])
    lon = lon0 + np.array([0.0, 0.0, 0.01])
    x, y = project(lat, lon, (lat0, lon0))

    def haversine(la1: float, lo1: float, la2: float, lo2: float) -> float:
        r = 6_371_008.8
        p1, p2, dl = np.radians(la1), np.radians(la2), np.radians(lo2 - lo1)
        h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
        return 2 * r * np.arcsin(np.sqrt(h))

    assert np.hypot(x[1], y[1]) == pytest.approx(haversine(lat0, lon0, lat[1], lon[1]), rel=5e-3)
    assert np.hypot(x[2], y[2]) == pytest.approx(haversine(lat0, lon0, lat[2], lon[2]), rel=5e-3)
    assert np.isnan(project(np.array([0.0]), np.array([0.0]), (lat0, lon0))[0][0])  # no fix yet


@pytest.mark.parametrize(("text", "metres"), [("3.21 km", 3210.0), ("2.00 mi", 3218.688), ("576 m", 576.0),
                                              ("", None), ("far", None)])
def test_track_length_from_the_yaml(text: str, metres: float | None) -> None:
    assert parse_track_length(text) == (pytest.approx(metres) if metres else None)


def test_lap_spec_parsing() -> None:
    assert parse_lap_spec("20240101-120000-abcdef12-0:3") == ("20240101-120000-abcdef12-0", 3)
    assert parse_lap_spec(r"C:\telemetry\x.ibt:7") == (r"C:\telemetry\x.ibt", 7)
    with pytest.raises(BadReference, match="SESSION:LAP"):
        parse_lap_spec("abc")
    with pytest.raises(BadReference, match="not an integer"):
        parse_lap_spec("abc:x")


def test_accessor_on_a_plain_lap_table() -> None:
    import pitbox.analysis  # noqa: F401  (registers the accessor)

    laps = pd.DataFrame({"lap_index": [0, 1, 2, 3], "lap": [1, 2, 3, 4], "time_s": [np.nan, 80.1, 79.5, 79.0],
                         "complete": [False, True, True, True], "valid": [False, True, True, False]})
    assert laps.pitbox.pick_fastest().lap_index == 2  # lap 3 is faster but invalid
    assert laps.pitbox.pick_fastest(valid_only=False).lap_index == 3
    assert list(laps.pitbox.pick_quicklaps(1.005).lap_index) == [2]
    with pytest.raises(NoValidLap):
        laps[laps.lap_index == 0].pitbox.pick_fastest()
    assert type(laps.pitbox.pick_valid()) is pd.DataFrame  # plain DataFrames, never subclasses
