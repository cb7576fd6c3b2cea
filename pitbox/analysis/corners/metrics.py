"""Per-lap metrics of each corner: segment time, brake point, peak brake and release,
minimum speed, throttle pickup, coasting, lock-ups, exit speed and time in the corner
(distances [m] from the start line, speeds [km/h], times [s], pedals 0-1).

The brake point and the throttle pickup come with ``brake_point_gap_m`` and
``throttle_pickup_gap_m``: how far the point may be off because ticks are missing from the
recording around it (the recorded samples on either side are that far apart; 0 when every
tick is there; see :func:`pitbox.analysis.align.sample_gaps_m`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pitbox.analysis.align import Trace
from pitbox.analysis.channels import WHEEL_SPEEDS
from pitbox.analysis.corners.model import Corner
from pitbox.analysis.corners.window import BRAKE_ON, Window, brake_on, cross_up, time_where, window

PEDAL_OFF = 0.05  #: pedal fraction under which a pedal is released (coasting)
LOCK_SLIP = 0.20  #: wheel slower than the car by this fraction while braking = locked


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
    return cross_up(thr, w.d, hold, j)


def lap_corner_metrics(trace: Trace, c: Corner, next_lap: bool = True) -> dict[str, Any]:
    """Metrics of one corner on one lap (distances [m] from the start line, speeds [km/h],
    times [s], pedals 0-1). A segment over the line continues into the next lap, or, with
    ``next_lap=False``, into this lap's own start (then the segments add up to the lap time)."""
    w = window(trace, c.seg_start_m, c.seg_end_m, next_lap)
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
    bp = brake_on(w.slice(lo_seg, apex_hi), first=True)
    m["brake_point_m"] = bp
    m["brake_point_gap_m"] = w.gap_at(bp)
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
    m["throttle_pickup_gap_m"] = w.gap_at(m["throttle_pickup_m"])
    thr = w.ch.get("Throttle")
    if thr is not None and brake is not None:
        moving = speed > 5 if speed is not None else np.ones(len(w.d), bool)
        m["coasting_s"] = time_where((thr < PEDAL_OFF) & (brake < PEDAL_OFF) & moving, w.t)
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
        out["abs_s"] = time_where(w.ch["BrakeABSactive"].astype(bool), w.t)
    if brake is None or speed is None:
        return out
    braking = (brake >= BRAKE_ON) & (speed > 5)
    abs_on = w.ch["BrakeABSactive"].astype(bool) if "BrakeABSactive" in w.ch else np.zeros(len(w.d), bool)
    wheels = [w.ch[n] for n in WHEEL_SPEEDS if n in w.ch]
    if len(wheels) == 4:
        slowest = np.min(np.vstack(wheels), axis=0)
        out["lockup_s"] = time_where(braking & ((slowest < (1 - LOCK_SLIP) * speed) | abs_on), w.t)
        out["lockup_source"] = "wheel_speeds"
    elif "LongAccel" in w.ch:
        decel = -w.ch["LongAccel"].astype(np.float64)
        hard = braking & (brake > 0.5)
        peak = float(np.max(decel[hard])) if hard.any() else 0.0
        out["lockup_s"] = time_where((hard & (decel < 0.6 * peak)) | (braking & abs_on), w.t)
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
