"""Corner detection on one lap's curvature (I/O free, on a :class:`~pitbox.analysis.align.Trace`).

* curvature κ(d) [1/m] from GPS (heading of the projected path), else ``YawRate``/``Speed``,
  else ``LatAccel``/``Speed``², smoothed over ~10 m;
* a corner is a peak of |κ| at least :data:`MIN_CURVATURE` high whose prominence is at least
  :data:`MIN_PROMINENCE` of its height (so an oval's two ends are two corners, while the ripples
  of one long arc are not), extending both ways to where its curvature ramp extrapolates to
  zero, and turning the car at least :data:`MIN_ANGLE_DEG`;
* a left and a right with no straight of :data:`MIN_STRAIGHT_M` between their apexes (a
  chicane, an S-bend) are one corner (:func:`join`); an oval's two ends, which turn the same
  way and never quite straighten between them, stay two.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pitbox.analysis.align import Trace
from pitbox.analysis.corners.model import Corner
from pitbox.errors import MissingChannel

MIN_CURVATURE = 1 / 1000  #: 1/m: a radius under 1 km
MIN_PROMINENCE = 0.4
MIN_ANGLE_DEG = 15.0
#: Corners turning opposite ways with no straight at least this long between them (m) are one
#: complex: a chicane or an S-bend has one braking zone and one exit, and a mistake in its
#: first part costs its time in the next, so it is coached as one corner (as corner files
#: name it). Same-way neighbours are told apart by :data:`MIN_PROMINENCE` alone.
MIN_STRAIGHT_M = 15.0
#: "Straight": curvature under this fraction of the smaller of the two corners' peaks (and
#: under :data:`MIN_CURVATURE`, whichever is larger).
STRAIGHT_FRACTION = 0.1
SMOOTH_GPS_M = 3.0  #: σ of the smoothing of a GPS path's curvature
SMOOTH_M = 10.0  #: σ for curvature from yaw rate or lateral acceleration (driver corrections)


def _smooth(values: np.ndarray, sigma_pts: float, wrap: bool) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(values.astype(np.float64), sigma_pts, mode="wrap" if wrap else "nearest")


def curvature(trace: Trace, xy: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, str]:
    """Signed curvature [1/m] (left positive) on the trace's grid, and its source
    (``"gps"``, ``"yaw_rate"`` or ``"lat_accel"``). :class:`MissingChannel` when the lap has
    neither a path nor ``Speed`` with ``YawRate`` or ``LatAccel``."""
    step = float(np.median(np.diff(trace.distance_m))) if len(trace.distance_m) > 1 else 1.0
    sig = SMOOTH_M / step
    wrap = trace.complete
    ch = trace.channels
    if xy is not None and np.all(np.isfinite(xy[0])):
        g = SMOOTH_GPS_M / step
        x, y = _smooth(xy[0], g, wrap), _smooth(xy[1], g, wrap)
        heading = np.unwrap(np.arctan2(np.gradient(y), np.gradient(x)))
        return _smooth(np.gradient(heading) / step, g, wrap), "gps"
    where = f"session {trace.session_id} lap_index {trace.lap_index}"
    if "YawRate" not in ch and "LatAccel" not in ch:
        raise MissingChannel(where, ["Lat/Lon", "YawRate", "LatAccel"], "corner detection needs one of them")
    if "Speed" not in ch:
        raise MissingChannel(where, "Speed", "corner detection needs it to turn yaw rate or lateral acceleration "
                                             "into curvature")
    speed = np.maximum(ch["Speed"].astype(np.float64), 3.0)
    if "YawRate" in ch:
        return _smooth(ch["YawRate"] / speed, sig, wrap), "yaw_rate"
    return _smooth(ch["LatAccel"] / speed**2, sig, wrap), "lat_accel"


def _crossing(k: np.ndarray, d: np.ndarray, level: float, i: int, step: int, stop: int) -> float:
    """Distance where ``k`` falls below ``level`` walking from index ``i`` by ``step`` (±1),
    never past index ``stop`` (the valley towards the neighbouring corner)."""
    j = i
    while j != stop and 0 <= j + step < len(k) and k[j + step] >= level:
        j += step
    if j == stop or not 0 <= j + step < len(k):
        return float(d[j])
    k0, k1 = k[j], k[j + step]
    f = (k0 - level) / (k0 - k1) if k0 != k1 else 0.0
    return float(d[j] + f * (d[j + step] - d[j]))


def _ramp_end(k: np.ndarray, d: np.ndarray, peak: int, height: float, step: int, stop: int) -> float:
    """Where the curvature ramp on one side of a peak extrapolates to zero: through its 25 %
    and 75 % crossings (exact for a linear-curvature transition, ~1.4 σ early for a step)."""
    s25 = _crossing(k, d, 0.25 * height, peak, step, stop)
    s75 = _crossing(k, d, 0.75 * height, peak, step, stop)
    edge = s25 - (s75 - s25) / 2
    bound = float(d[stop])
    return max(edge, bound) if step < 0 else min(edge, bound)


def find_corners(trace: Trace, xy: tuple[np.ndarray, np.ndarray] | None = None) -> list[Corner]:
    """Corners of a lap from its curvature, numbered T1, T2 … in lap order."""
    from scipy.signal import find_peaks

    kappa, _ = curvature(trace, xy)
    d = trace.distance_m
    if len(d) < 3:
        return []
    step = float(np.median(np.diff(d)))
    found: list[Corner] = []
    for sign in (1.0, -1.0):
        k = np.clip(sign * kappa, 0.0, None)
        peaks, props = find_peaks(k, height=MIN_CURVATURE, prominence=0.0, distance=max(int(20 / step), 1))
        keep = [int(p) for p, prom in zip(peaks, props["prominences"], strict=True) if prom >= MIN_PROMINENCE * k[p]]
        if not keep:
            continue
        valleys = [p0 + int(np.argmin(k[p0:p1 + 1])) for p0, p1 in zip(keep[:-1], keep[1:], strict=True)]
        lefts, rights = [0, *valleys], [*valleys, len(k) - 1]
        for p, lo, hi in zip(keep, lefts, rights, strict=True):
            start = _ramp_end(k, d, p, float(k[p]), -1, lo)
            end = _ramp_end(k, d, p, float(k[p]), 1, hi)
            i0, i1 = np.searchsorted(d, start), np.searchsorted(d, end, "right")
            angle = float(np.degrees(np.sum(k[i0:i1]) * step))
            found.append(Corner(0, "", "left" if sign > 0 else "right", start, float(d[p]), end, angle))
    kept = [c for c in _merge_overlaps(sorted(found, key=lambda c: c.apex_m)) if c.angle_deg >= MIN_ANGLE_DEG]
    joined = _join_complexes(kept, np.abs(kappa), d)
    return [replace(c, number=i + 1, name=f"T{i + 1}") for i, c in enumerate(joined)]


def join(group: list[Corner], name: str = "") -> Corner:
    """One corner made of several (a complex): from the first one's start to the last one's
    end, with the apex and direction of the part that turns most and the angles added."""
    main = max(group, key=lambda c: c.angle_deg)
    return Corner(0, name or main.name, main.direction, min(c.start_m for c in group), main.apex_m,
                  max(c.end_m for c in group), sum(c.angle_deg for c in group))


def _straight_m(k: np.ndarray, d: np.ndarray, a: Corner, b: Corner) -> float:
    """Longest straight [m] between two corners' apexes: the longest run of grid points whose
    |curvature| ``k`` is under :data:`STRAIGHT_FRACTION` of the smaller apex's."""
    i, j = int(np.searchsorted(d, a.apex_m)), int(np.searchsorted(d, b.apex_m))
    if j - i < 2:
        return 0.0
    level = max(MIN_CURVATURE, STRAIGHT_FRACTION * min(float(k[i]), float(k[min(j, len(k) - 1)])))
    low = np.concatenate([[False], k[i:j] < level, [False]])
    edges = np.flatnonzero(np.diff(low.astype(np.int8)))
    if not len(edges):
        return 0.0
    run = int(np.max(edges[1::2] - edges[::2]))
    return run * float(np.median(np.diff(d)))


def _join_complexes(corners: list[Corner], k: np.ndarray, d: np.ndarray) -> list[Corner]:
    """Runs of corners turning opposite ways with no straight of :data:`MIN_STRAIGHT_M` between
    them, each joined into one (``k``: |curvature| [1/m] on the grid ``d`` [m])."""
    groups: list[list[Corner]] = []
    for c in corners:
        prev = groups[-1][-1] if groups else None
        if prev is not None and prev.direction != c.direction and _straight_m(k, d, prev, c) < MIN_STRAIGHT_M:
            groups[-1].append(c)
        else:
            groups.append([c])
    return [g[0] if len(g) == 1 else join(g) for g in groups]


def _merge_overlaps(corners: list[Corner]) -> list[Corner]:
    """Same-direction corners whose ranges overlap become one (the first one's apex kept)."""
    out: list[Corner] = []
    for c in corners:
        if out and out[-1].direction == c.direction and c.start_m < out[-1].end_m - 1.0:
            prev = out[-1]
            out[-1] = replace(prev, end_m=max(prev.end_m, c.end_m), angle_deg=prev.angle_deg + c.angle_deg)
            continue
        out.append(c)
    return out
