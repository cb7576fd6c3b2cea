"""Corners: found on a lap's curvature, named from the track's corner file, split into
braking, entry, apex and exit, and measured on every lap.

Detection (I/O free, on a :class:`~pitbox.analysis.align.Trace`):

* curvature κ(d) [1/m] from GPS (heading of the projected path), else ``YawRate``/``Speed``,
  else ``LatAccel``/``Speed``², smoothed over ~10 m;
* a corner is a peak of |κ| at least :data:`MIN_CURVATURE` high whose prominence is at least
  :data:`MIN_PROMINENCE` of its height (so an oval's two ends are two corners, while the ripples
  of one long arc are not), extending both ways while |κ| stays above :data:`EDGE_FRACTION` of
  the peak, and turning the car at least :data:`MIN_ANGLE_DEG`.

Each corner owns a **segment** of the lap from its braking zone to the next corner's, so
the segments tile the lap and the time a mistake costs on the following straight counts
at the corner that caused it. The segment that contains the start line wraps round it.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pitbox.analysis.align import Trace
from pitbox.analysis.channels import WHEEL_SPEEDS

log = logging.getLogger(__name__)

MIN_CURVATURE = 1 / 1000  #: 1/m: a radius under 1 km
MIN_PROMINENCE = 0.4
EDGE_FRACTION = 0.5
MIN_ANGLE_DEG = 15.0
SMOOTH_GPS_M = 3.0  #: σ of the smoothing of a GPS path's curvature
SMOOTH_M = 10.0  #: σ for curvature from yaw rate or lateral acceleration (driver corrections)
BRAKE_ON = 0.05  #: brake fraction that counts as braking
PEDAL_OFF = 0.05  #: pedal fraction under which a pedal is released (coasting)
LOCK_SLIP = 0.20  #: wheel slower than the car by this fraction while braking = locked
SEGMENT_MARGIN_M = 30.0  #: a segment starts this far before the earliest braking point


@dataclass
class Corner:
    """One corner. Distances [m] from the start line along the lap."""

    number: int
    name: str
    direction: str  #: "left" or "right"
    start_m: float  #: turn-in (curvature rises past EDGE_FRACTION of its peak)
    apex_m: float  #: peak curvature
    end_m: float  #: exit (curvature falls below EDGE_FRACTION of its peak)
    angle_deg: float  #: how far the corner turns the car
    seg_start_m: float = float("nan")  #: start of the corner's segment (before its braking zone)
    seg_end_m: float = float("nan")  #: end of its segment (the next segment's start; > length when it wraps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- curvature ---------------------------------------------------------------------------

def _smooth(values: np.ndarray, sigma_pts: float, wrap: bool) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(values.astype(np.float64), sigma_pts, mode="wrap" if wrap else "nearest")


def curvature(trace: Trace, xy: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, str]:
    """Signed curvature [1/m] (left positive) on the trace's grid, and its source."""
    step = float(np.median(np.diff(trace.distance_m))) if len(trace.distance_m) > 1 else 1.0
    sig = SMOOTH_M / step
    wrap = trace.complete
    ch = trace.channels
    if xy is not None and np.all(np.isfinite(xy[0])):
        g = SMOOTH_GPS_M / step
        x, y = _smooth(xy[0], g, wrap), _smooth(xy[1], g, wrap)
        heading = np.unwrap(np.arctan2(np.gradient(y), np.gradient(x)))
        return _smooth(np.gradient(heading) / step, g, wrap), "gps"
    speed = np.maximum(ch["Speed"].astype(np.float64), 3.0) if "Speed" in ch else None
    if speed is not None and "YawRate" in ch:
        return _smooth(ch["YawRate"] / speed, sig, wrap), "yaw_rate"
    if speed is not None and "LatAccel" in ch:
        return _smooth(ch["LatAccel"] / speed**2, sig, wrap), "lat_accel"
    raise ValueError("corner detection needs Lat/Lon, YawRate or LatAccel, and Speed")


def _edges(k: np.ndarray, peak: int, level: float, lo: int, hi: int) -> tuple[int, int]:
    a = peak
    while a > lo and k[a - 1] >= level:
        a -= 1
    b = peak
    while b < hi - 1 and k[b + 1] >= level:
        b += 1
    return a, b


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
    step = float(np.median(np.diff(d)))
    corners: list[Corner] = []
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
            corners.append(Corner(0, "", "left" if sign > 0 else "right", start, float(d[p]), end, angle))
    corners = _merge_overlaps(sorted(corners, key=lambda c: c.apex_m))
    corners = [c for c in corners if c.angle_deg >= MIN_ANGLE_DEG]
    for i, c in enumerate(corners):
        c.number, c.name = i + 1, f"T{i + 1}"
    return corners


def _merge_overlaps(corners: list[Corner]) -> list[Corner]:
    """Same-direction corners whose ranges overlap become one (the sharper apex kept)."""
    out: list[Corner] = []
    for c in corners:
        if out and out[-1].direction == c.direction and c.start_m < out[-1].end_m - 1.0:
            prev = out[-1]
            prev.end_m = max(prev.end_m, c.end_m)
            prev.angle_deg += c.angle_deg
            continue
        out.append(c)
    return out


# -- corner files ------------------------------------------------------------------------

def load_track_file(track: str, config: str = "", path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The corner file of a track as iRacing names it (``WeekendInfo.TrackName`` and
    ``TrackConfigName``), in the shared format of ``pitbox/data/tracks/*.corners.yaml``
    (read by :mod:`pitbox.sim.tracks`); ``path`` names a file explicitly (a user's own).
    None when there is none. Cached until a corner file changes."""
    try:
        from pitbox.sim.tracks import TRACKS_DIR
    except ImportError:  # pragma: no cover - the simulator package ships with PitBox
        return None
    files = [Path(path)] if path is not None else sorted(Path(TRACKS_DIR).glob("*.corners.yaml"))
    stamp = tuple((str(f), f.stat().st_mtime_ns) for f in files if f.is_file())
    return _load_track_file(track, config or "", None if path is None else str(path), stamp)


@functools.lru_cache(maxsize=32)
def _load_track_file(track: str, config: str, path: str | None, stamp: tuple) -> dict[str, Any] | None:
    from pitbox.sim.tracks import load_corner_file, read_corner_file

    del stamp  # part of the cache key only
    cf = read_corner_file(path) if path is not None else load_corner_file(track, config)
    if cf is None:
        return None
    return {"track_name": cf.track_name, "track_config": cf.track_config, "source": cf.source,
            "covers_lap": cf.covers_lap, "path": str(cf.path) if cf.path else None,
            "corners": [{"name": c.name, "start_pct": c.start_pct, "end_pct": c.end_pct,
                         "apex_pct": c.apex_pct, "brake_pct": c.brake_pct} for c in cf.corners]}


def file_corners(entry: dict[str, Any], length_m: float) -> list[dict[str, Any]]:
    """Corners of a corner file in metres: ``name``, ``start_m``, ``end_m`` (> length when the
    range wraps over the line), ``apex_m`` and ``brake_m`` (None when not given)."""
    out = []
    for c in entry.get("corners") or []:
        a, b = float(c["start_pct"]) * length_m, float(c["end_pct"]) * length_m
        if b <= a:
            b += length_m
        apex = c.get("apex_pct")
        brake = c.get("brake_pct")
        out.append({"name": str(c["name"]), "start_m": a, "end_m": b,
                    "apex_m": None if apex is None else float(apex) * length_m,
                    "brake_m": None if brake is None else float(brake) * length_m})
    return out


def _inside(x: float, n: dict[str, Any], length_m: float) -> bool:
    return any(n["start_m"] <= v < n["end_m"] for v in (x, x + length_m))


def name_corners(corners: list[Corner], named: list[dict[str, Any]], length_m: float) -> list[Corner]:
    """Corners named from a file: each file corner takes the detected corners whose apex lies
    in its range (merged into one when several: a chicane, a double apex); detected corners
    outside every range keep a number (``X1``, ``X2`` …). Returns the new list in lap order."""
    out: list[Corner] = []
    used: set[int] = set()
    for n in named:
        hits = [i for i, c in enumerate(corners) if i not in used and _inside(c.apex_m, n, length_m)]
        if not hits:
            log.info("corner %s of the track file: no corner detected in its range", n["name"])
            continue
        used.update(hits)
        group = [corners[i] for i in hits]
        main = max(group, key=lambda c: c.angle_deg)
        out.append(Corner(0, n["name"], main.direction, min(c.start_m for c in group), main.apex_m,
                          max(c.end_m for c in group), sum(c.angle_deg for c in group)))
    extra = [c for i, c in enumerate(corners) if i not in used]
    for k, c in enumerate(extra):
        c.name = f"X{k + 1}"
    out = sorted(out + extra, key=lambda c: c.apex_m)
    for i, c in enumerate(out):
        c.number = i + 1
    return out


# -- segments ----------------------------------------------------------------------------

def brake_points(trace: Trace, corners: list[Corner]) -> list[float | None]:
    """Per corner: where braking for it starts on this lap [m] (None when it is taken flat)."""
    out: list[float | None] = []
    prev_end = corners[-1].end_m - trace.length_m if corners else 0.0
    for c in corners:
        w = _window(trace, max(prev_end, 0.0), c.apex_m)
        out.append(_brake_on(w))
        prev_end = c.end_m
    return out


def set_segments(corners: list[Corner], length_m: float, braking: list[list[float | None]]) -> None:
    """Segment boundaries: ``SEGMENT_MARGIN_M`` before the earliest braking point seen for the
    corner on any lap given (or before its turn-in when nobody brakes), never inside the
    previous corner."""
    n = len(corners)
    starts = []
    for i, c in enumerate(corners):
        pts = [b[i] for b in braking if b[i] is not None]
        first = min(pts) if pts else c.start_m
        prev_end = corners[i - 1].end_m - (length_m if i == 0 else 0.0)
        start = max(min(first, c.start_m) - SEGMENT_MARGIN_M, (prev_end + min(first, c.start_m)) / 2)
        starts.append(start % length_m if start < 0 else start)
    for i, c in enumerate(corners):
        c.seg_start_m = starts[i]
        nxt = starts[(i + 1) % n]
        c.seg_end_m = nxt if nxt > starts[i] else nxt + length_m
    if n == 1:
        corners[0].seg_end_m = corners[0].seg_start_m + length_m


def segments_from_file(corners: list[Corner], named: list[dict[str, Any]], length_m: float) -> bool:
    """Use the file's corner ranges as segments when they tile the lap (the simulator's files
    do: each corner's range runs to the next braking point); True when applied."""
    if not named or {n["name"] for n in named} != {c.name for c in corners}:
        return False
    spans = sorted(named, key=lambda n: n["start_m"])
    total = sum(n["end_m"] - n["start_m"] for n in spans)
    if abs(total - length_m) > 0.01 * length_m:
        return False
    by_name = {n["name"]: n for n in spans}
    if any(c.name not in by_name for c in corners):
        return False
    for c in corners:
        c.seg_start_m, c.seg_end_m = by_name[c.name]["start_m"], by_name[c.name]["end_m"]
    return True


# -- per-lap metrics ---------------------------------------------------------------------

@dataclass
class Window:
    """Grid points of one lap between two distances (may run past the line, wrapping onto
    the lap's own start with time continued)."""

    d: np.ndarray
    t: np.ndarray
    ch: dict[str, np.ndarray]


def _window(trace: Trace, a: float, b: float, next_lap: bool = True) -> Window:
    """Grid points covering ``[a, b]`` (one point beyond each end where there is one). Past
    the finish line the lap goes on with the next lap's start (:attr:`Trace.overrun`) or,
    when the next lap is unknown, with its own start (time continued from the lap time)."""
    L = trace.length_m
    d, t = trace.distance_m, trace.time_s
    a = max(a, float(d[0]))
    i = max(int(np.searchsorted(d, a, "left")) - 1, 0)
    if b <= d[-1] + 1e-9 or not trace.complete:
        j = min(int(np.searchsorted(d, b, "right")) + 1, len(d))
        return Window(d[i:j], t[i:j], {k: v[i:j] for k, v in trace.channels.items()})
    ov = trace.overrun if next_lap else None
    if ov is not None and ov.distance_m[-1] >= b - 1e-9:
        j = min(int(np.searchsorted(ov.distance_m, b, "right")) + 1, len(ov.distance_m))
        return Window(np.concatenate([d[i:], ov.distance_m[:j]]), np.concatenate([t[i:], ov.time_s[:j]]),
                      {k: np.concatenate([v[i:], ov.channels[k][:j]]) for k, v in trace.channels.items()})
    j = min(int(np.searchsorted(d, b - L, "right")) + 1, len(d))
    lap_t = t[-1]
    return Window(np.concatenate([d[i:-1], d[:j] + L]), np.concatenate([t[i:-1], t[:j] + lap_t]),
                  {k: np.concatenate([v[i:-1], v[:j]]) for k, v in trace.channels.items()})


def _cross_up(x: np.ndarray, d: np.ndarray, level: float, start: int = 0) -> float | None:
    """First distance at or after index ``start`` where ``x`` rises through ``level`` (interpolated)."""
    above = np.flatnonzero(x[start:] >= level)
    if not len(above):
        return None
    i = start + int(above[0])
    if i == 0 or x[i - 1] >= level:
        return float(d[i])
    f = (level - x[i - 1]) / (x[i] - x[i - 1])
    return float(d[i - 1] + f * (d[i] - d[i - 1]))


def _brake_on(w: Window, first: bool = False) -> float | None:
    """Where a braking event starts in the window: the last one (``first=False``: the window
    runs from the previous corner to this apex, so earlier events belong to other corners) or
    the first (the window is the corner's own segment, which starts before its braking)."""
    if "Brake" not in w.ch or not len(w.d):
        return None
    brake = w.ch["Brake"]
    on = np.flatnonzero(brake >= BRAKE_ON)
    if not len(on):
        return None
    starts = on[np.concatenate([[True], np.diff(on) > 1])]
    k = int(starts[0] if first else starts[-1])
    return _cross_up(brake, w.d, BRAKE_ON, k - 1 if k > 0 else 0)


def _time_where(mask: np.ndarray, t: np.ndarray) -> float:
    """Seconds spent on grid points where ``mask`` holds (each point owns the interval to the next)."""
    if len(t) < 2:
        return 0.0
    dt = np.diff(t)
    return float(np.sum(dt[mask[:-1]]))


def _throttle_pickup(w: Window, release_i: int) -> float | None:
    """Where the final throttle application starts, searched from brake release (so lifts and
    auto-blips while braking never count): the last point before the throttle passes 50 %
    at which it was still at its holding level (the 20th percentile of the throttle between
    release and that 50 % point: zero when coasting, the maintenance throttle when the car is
    held at its minimum speed) plus 0.05."""
    if "Throttle" not in w.ch:
        return None
    thr = w.ch["Throttle"]
    after = np.flatnonzero(thr[release_i:] >= 0.5)
    if not len(after):
        return None
    k = release_i + int(after[0])
    if k == release_i:
        return float(w.d[k])
    hold = float(np.percentile(thr[release_i:k], 20)) + 0.05
    low = np.flatnonzero(thr[release_i:k] <= hold)
    if not len(low):
        return float(w.d[release_i])
    j = release_i + int(low[-1])
    return _cross_up(thr, w.d, hold, j)


def lap_corner_metrics(trace: Trace, c: Corner, next_lap: bool = True) -> dict[str, Any]:
    """Metrics of one corner on one lap (distances [m] from the start line, speeds [km/h],
    times [s], pedals 0-1). A segment over the line continues into the next lap, or, with
    ``next_lap=False``, into this lap's own start (then the segments add up to the lap time)."""
    w = _window(trace, c.seg_start_m, c.seg_end_m, next_lap)
    m: dict[str, Any] = {"corner": c.name, "lap_index": trace.lap_index}
    if len(w.d) < 3:
        return m
    L = trace.length_m
    covered = w.d[0] <= c.seg_start_m + 1e-6 and w.d[-1] >= c.seg_end_m - 1e-6
    m["segment_time_s"] = float(np.interp(c.seg_end_m, w.d, w.t) - np.interp(c.seg_start_m, w.d, w.t)) \
        if covered else np.nan
    speed, brake = w.ch.get("Speed"), w.ch.get("Brake")
    if speed is not None:
        m["segment_entry_speed_kmh"] = float(np.interp(c.seg_start_m, w.d, speed)) * 3.6
    apex_lo, apex_hi = _unwrapped_range(w.d, c, L)
    lo_seg = int(np.searchsorted(w.d, c.seg_start_m))
    bp = _brake_on(Window(w.d[lo_seg:apex_hi], w.t[lo_seg:apex_hi], {k: v[lo_seg:apex_hi] for k, v in w.ch.items()}),
                   first=True)
    m["brake_point_m"] = bp
    braking, release_i = _braking_metrics(w, c, bp, apex_lo, apex_hi, L)
    m.update(braking)
    if speed is not None:
        k = _slowest(speed, w.d, bp, apex_lo, apex_hi)
        m.update(min_speed_kmh=float(speed[k]) * 3.6, min_speed_at_m=float(w.d[k]),
                 exit_speed_kmh=float(np.interp(_u(c.end_m, w.d, L), w.d, speed)) * 3.6)
        release_i = min(release_i, k) if bp is None else release_i
    if bp is not None and brake is not None:  # the pickup follows the corner's last braking (chicanes)
        release_i = max(release_i, _last_release(brake, lo_seg, apex_hi))
    m["throttle_pickup_m"] = _throttle_pickup(w, min(release_i, len(w.d) - 1))
    thr = w.ch.get("Throttle")
    if thr is not None and brake is not None:
        moving = speed > 5 if speed is not None else np.ones(len(w.d), bool)
        m["coasting_s"] = _time_where((thr < PEDAL_OFF) & (brake < PEDAL_OFF) & moving, w.t)
    m.update(_lockup(w, brake, speed))
    start = bp if bp is not None else _u(c.start_m, w.d, L)
    m["time_in_corner_s"] = float(np.interp(_u(c.end_m, w.d, L), w.d, w.t) - np.interp(start, w.d, w.t))
    return m


def _braking_metrics(w: Window, c: Corner, bp: float | None, apex_lo: int, apex_hi: int, length_m: float
                     ) -> tuple[dict[str, Any], int]:
    """Peak brake, release, trail-braking depth and entry speed; and the release's index
    (the apex zone's start when the corner is taken without braking)."""
    speed, brake = w.ch.get("Speed"), w.ch.get("Brake")
    if bp is None or brake is None:
        entry = float(np.max(speed[: max(apex_lo, 1)])) * 3.6 if speed is not None else None
        return {"peak_brake": 0.0, "brake_release_m": None, "trail_brake_m": None, "entry_speed_kmh": entry}, apex_lo
    i0 = int(np.searchsorted(w.d, bp))
    pk = i0 + int(np.argmax(brake[i0:apex_hi + 1])) if apex_hi >= i0 else i0
    off = np.flatnonzero(brake[pk:] < BRAKE_ON)
    release_i = pk + int(off[0]) if len(off) else len(brake) - 1
    return {"peak_brake": float(brake[pk]), "brake_release_m": float(w.d[release_i]),
            "trail_brake_m": float(w.d[release_i] - _u(c.start_m, w.d, length_m)),
            "entry_speed_kmh": float(np.interp(bp, w.d, speed)) * 3.6 if speed is not None else None}, release_i


def _slowest(speed: np.ndarray, d: np.ndarray, bp: float | None, apex_lo: int, apex_hi: int) -> int:
    """Index of the corner's slowest point (±20 m of it), after its braking point when it has one."""
    lo = max(apex_lo, int(np.searchsorted(d, bp))) if bp is not None else apex_lo
    lo = min(lo, apex_hi - 1) if apex_hi > apex_lo else apex_lo
    return lo + int(np.argmin(speed[lo:max(apex_hi, lo + 1)]))


def _last_release(brake: np.ndarray, lo: int, hi: int) -> int:
    """Index where the last braking event that starts in ``[lo, hi)`` is released."""
    on = np.flatnonzero(brake[lo:hi] >= BRAKE_ON)
    if not len(on):
        return lo
    starts = on[np.concatenate([[True], np.diff(on) > 1])]
    k = lo + int(starts[-1])
    off = np.flatnonzero(brake[k:] < BRAKE_ON)
    return k + int(off[0]) if len(off) else len(brake) - 1


def _u(x: float, d: np.ndarray, L: float) -> float:
    """A corner distance on the window's (possibly wrapped) axis."""
    return x + L if len(d) and x < d[0] - 1e-6 else x


def _unwrapped_range(d: np.ndarray, c: Corner, L: float) -> tuple[int, int]:
    lo = int(np.searchsorted(d, _u(c.start_m, d, L) - 20.0))
    hi = int(np.searchsorted(d, _u(c.end_m, d, L) + 20.0))
    return min(lo, len(d) - 1), min(max(hi, lo + 1), len(d))


def _lockup(w: Window, brake: np.ndarray | None, speed: np.ndarray | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "BrakeABSactive" in w.ch:
        out["abs_s"] = _time_where(w.ch["BrakeABSactive"].astype(bool), w.t)
    if brake is None or speed is None:
        return out
    braking = (brake >= BRAKE_ON) & (speed > 5)
    abs_on = w.ch["BrakeABSactive"].astype(bool) if "BrakeABSactive" in w.ch else np.zeros(len(w.d), bool)
    wheels = [w.ch[n] for n in WHEEL_SPEEDS if n in w.ch]
    if len(wheels) == 4:
        slowest = np.min(np.vstack(wheels), axis=0)
        out["lockup_s"] = _time_where(braking & ((slowest < (1 - LOCK_SLIP) * speed) | abs_on), w.t)
        out["lockup_source"] = "wheel_speeds"
    elif "LongAccel" in w.ch:
        decel = -w.ch["LongAccel"].astype(np.float64)
        hard = braking & (brake > 0.5)
        peak = float(np.max(decel[hard])) if hard.any() else 0.0
        out["lockup_s"] = _time_where((hard & (decel < 0.6 * peak)) | (braking & abs_on), w.t)
        out["lockup_source"] = "abs_decel"
    return out


def segment_clean(trace: Trace, c: Corner) -> bool:
    """False when a segment that runs over the line meets pit road or leaves the track on the
    next lap, or when the next lap is unknown (its start then stands in for it)."""
    if c.seg_end_m <= trace.length_m + 1e-6 or not trace.complete:
        return True
    ov = trace.overrun
    if ov is None or ov.distance_m[-1] < c.seg_end_m - 1e-6:
        return False
    inside = ov.distance_m <= c.seg_end_m
    if "OnPitRoad" in ov.channels and np.any(ov.channels["OnPitRoad"][inside]):
        return False
    return not ("PlayerTrackSurface" in ov.channels and np.any(ov.channels["PlayerTrackSurface"][inside] == 0))


def corner_table(traces: list[Trace], corners: list[Corner], ref: Trace | None = None,
                 next_lap: bool = True) -> pd.DataFrame:
    """One row per (lap, corner): the metrics of :func:`lap_corner_metrics`, ``segment_clean``
    (:func:`segment_clean`), and ``delta_s`` (segment time minus the reference's) when a
    reference is given. ``next_lap``: see :func:`lap_corner_metrics`."""
    rows = [{**lap_corner_metrics(tr, c, next_lap), "segment_clean": segment_clean(tr, c) or not next_lap}
            for tr in traces for c in corners]
    df = pd.DataFrame(rows)
    if ref is not None and len(df):
        ref_times = {c.name: lap_corner_metrics(ref, c, next_lap).get("segment_time_s") for c in corners}
        df["ref_segment_time_s"] = df.corner.map(ref_times)
        df["delta_s"] = df.segment_time_s - df.ref_segment_time_s
    return df


def phase_bounds(ref: Trace, c: Corner) -> dict[str, tuple[float, float]]:
    """Braking, entry, apex, exit of a corner as fixed distances from the reference lap:
    braking from its brake point to turn-in, entry to the apex zone, apex ±10 % of the corner
    around the reference's slowest point, exit to the end of the corner."""
    m = lap_corner_metrics(ref, c)
    apex = m.get("min_speed_at_m") or c.apex_m
    L = ref.length_m
    start, end = c.start_m, c.end_m if c.end_m >= c.start_m else c.end_m + L
    apex = apex if apex >= start - 20 else apex + L
    half = max(0.1 * (end - start), 5.0)
    bp = m.get("brake_point_m")
    bp = start if bp is None else min(bp, start)
    a0, a1 = max(apex - half, start), min(apex + half, end)
    return {"braking": (bp, start), "entry": (start, a0), "apex": (a0, a1), "exit": (a1, end)}


def phase_times(trace: Trace, bounds: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Time [s] a lap spends in each phase (distances may run past the line)."""
    out = {}
    for name, (a, b) in bounds.items():
        w = _window(trace, a, max(b, a))
        out[f"{name}_s"] = float(np.interp(b, w.d, w.t) - np.interp(a, w.d, w.t)) if len(w.d) > 1 else np.nan
    return out
