"""Theoretical best lap, consistency per corner, and progress across sessions.

The theoretical best stitches each corner segment's best time over the valid laps (the
segments tile the lap, so their best times add up to a lap). The **continuity check** says
whether the stitched lap could be driven: the segments must tile the lap exactly, and where
one segment's best lap hands over to the next segment's best lap the two laps must pass the
boundary at nearly the same speed (within :data:`CONTINUITY_KMH`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pitbox.analysis.laps_analysis import SessionAnalysis

CONTINUITY_KMH = 5.0


def _speed_at(trace: Any, x: float) -> float:
    """Speed [km/h] at distance ``x`` [m] (past the line: on the lap's own start); NaN without ``Speed``."""
    if "Speed" not in trace.channels:
        return float("nan")
    d = x if x <= trace.length_m else x - trace.length_m
    return float(np.interp(d, trace.distance_m, trace.channels["Speed"])) * 3.6


def theoretical_best(a: SessionAnalysis, include_invalid: bool = False) -> dict[str, Any]:
    """Best segment of every corner over valid laps (all complete laps if ``include_invalid``).

    Returns ``time_s`` (their sum), ``segments`` (corner, lap_index, time), ``continuity``
    (per boundary: the laps on each side, their speeds there and the jump [km/h]),
    ``continuous`` (tiling exact and every jump under :data:`CONTINUITY_KMH`; False when the
    session has no ``Speed`` to judge the jumps by) and ``gap_m`` (how far the segments are
    from tiling the lap).
    """
    t = a.table if include_invalid else a.table[a.table.valid]
    t = t[t.session_id == a.session.id].dropna(subset=["segment_time_s"])
    if t.empty or not a.corners:
        return {"time_s": None, "segments": pd.DataFrame(), "continuity": pd.DataFrame(),
                "continuous": False, "gap_m": None}
    best = t.loc[t.groupby("corner").segment_time_s.idxmin(), ["corner", "lap_index", "segment_time_s"]]
    order = {c.name: i for i, c in enumerate(a.corners)}
    best = best.sort_values("corner", key=lambda s: s.map(order)).reset_index(drop=True)
    length = a.ref_trace.length_m
    tiling = sum(c.seg_end_m - c.seg_start_m for c in a.corners)
    gaps = [abs((a.corners[(i + 1) % len(a.corners)].seg_start_m - c.seg_end_m) % length)
            for i, c in enumerate(a.corners)]
    gap = abs(tiling - length) + max(min(g, length - g) for g in gaps)
    rows = []
    by_corner = best.set_index("corner")
    for i, c in enumerate(a.corners):
        nxt = a.corners[(i + 1) % len(a.corners)]
        if c.name not in by_corner.index or nxt.name not in by_corner.index:
            continue
        la, lb = int(by_corner.loc[c.name, "lap_index"]), int(by_corner.loc[nxt.name, "lap_index"])
        va, vb = _speed_at(a.traces[la], c.seg_end_m), _speed_at(a.traces[lb], c.seg_end_m)
        rows.append({"boundary_m": c.seg_end_m % length, "from_corner": c.name, "from_lap": la,
                     "to_corner": nxt.name, "to_lap": lb, "speed_from_kmh": va, "speed_to_kmh": vb,
                     "jump_kmh": abs(va - vb)})
    cont = pd.DataFrame(rows)
    ok = gap < 1e-6 and (cont.empty or bool((cont.jump_kmh <= CONTINUITY_KMH).all()))  # NaN jumps: not ok
    return {"time_s": float(best.segment_time_s.sum()) if len(best) == len(a.corners) else None,
            "segments": best, "continuity": cont, "continuous": ok, "gap_m": float(gap)}


def consistency(a: SessionAnalysis) -> pd.DataFrame:
    """Per corner over valid laps: lap count, spread (standard deviation) of segment time,
    minimum speed, brake point and throttle pickup, and the segment-time range."""
    t = a.table[a.table.valid & (a.table.session_id == a.session.id)]
    rows = []
    for c in a.corners:
        ct = t[t.corner == c.name]
        row: dict[str, Any] = {"corner": c.name, "laps": len(ct)}
        for col, name in (("segment_time_s", "time_sd_s"), ("min_speed_kmh", "min_speed_sd_kmh"),
                          ("brake_point_m", "brake_point_sd_m"), ("throttle_pickup_m", "pickup_sd_m")):
            vals = pd.to_numeric(ct[col], errors="coerce").dropna() if col in ct else pd.Series(dtype=float)
            row[name] = float(vals.std(ddof=1)) if len(vals) > 1 else np.nan
        row["time_range_s"] = float(ct.segment_time_s.max() - ct.segment_time_s.min()) if len(ct) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def progress(a: SessionAnalysis, data: str | os.PathLike[str] | None = None, corners: bool = True) -> pd.DataFrame:
    """Every store session with the same car, track, layout and kind (simulated or real), in
    date order: valid laps, best and median lap [s], and (``corners=True``) each corner's best
    segment time [s] on this analysis' corner segments."""
    from pitbox.analysis.corners import corner_table
    from pitbox.analysis.session import load_session
    from pitbox.store import Store

    s = a.session
    store = Store(data if data is not None else s.data)
    cat = store.sessions()
    same = cat[(cat.track == s.track) & (cat.car == s.car)
               & (cat.simulated.fillna(False).astype(bool) == s.simulated)].sort_values("start")
    rows = []
    for sid, start in zip(same.id, same.start, strict=True):
        other = s if sid == s.id else load_session(sid, store.root)
        if other.track_config != s.track_config:
            continue
        valid = other.valid_laps()
        row: dict[str, Any] = {"session_id": sid, "start": start, "valid_laps": len(valid),
                               "best_lap_s": float(valid.time_s.min()) if len(valid) else np.nan,
                               "median_lap_s": float(valid.time_s.median()) if len(valid) else np.nan}
        if corners and len(valid) and a.corners:
            traces = [other.trace(int(i)) for i in valid.lap_index]
            ct = corner_table(traces, a.corners)
            for c in a.corners:
                row[f"{c.name}_best_s"] = float(ct[ct.corner == c.name].segment_time_s.min())
        rows.append(row)
    return pd.DataFrame(rows)
