"""The lap table: laps split at the start/finish line, with the crossing interpolated.

I/O free: :func:`lap_table` takes channel arrays and returns a DataFrame; :func:`lap_rows`
gives the same rows as plain dicts without pandas (the import and the recorder use it), and
:func:`lap_records` the rows as the store keeps them in a session file's footer. Rules:

* **Blank rows** (``Lap == 0`` and ``LapDistPct == 0`` and not moving), which older files
  have at the start and iRacing writes at a reset to the pits, are skipped and split the
  session into *segments*; a lap cut by one is marked ``reset``.
* A **line crossing** is a row pair inside a segment whose ``Lap`` goes up by one. When
  ``LapDistPct`` wraps there, the crossing time is interpolated linearly in ``LapDistPct``
  between the two samples (time from ``SessionTime``, never from the row index, so dropped
  ticks do no harm).
* **Physics time.** When the sim hitches, ``SessionTime`` skips a tick between two rows while
  the car moves only one tick's distance: the physics advanced one tick, and iRacing's lap
  timer counts physics time. A gap in which the car covers two ticks' distance is a dropped
  record instead and counts in full. :func:`hitch_ticks` tells the two apart from the
  distance covered against the per-tick distance of the steps on either side;
  :func:`physics_time` is ``SessionTime`` with the hitched ticks taken out. Lap times
  (``time_s``) are physics time; ``start_s`` and ``end_s`` stay ``SessionTime`` as recorded.
* A lap is **complete** when it begins and ends with a crossing in one segment. A complete
  lap is **valid** (comparable) unless it touched pit road, left the track
  (``PlayerTrackSurface`` = off track) or the incident count rose during it.
* ``iracing_time_s`` is iRacing's own ``LapLastLapTime`` for the lap: the first new positive
  value within 3 s after the crossing (it reads -1 or the old value for a moment).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

OFF_TRACK = 0  #: irsdk_TrkLoc.irsdk_OffTrack
LLT_WINDOW_S = 3.0

#: Version of the lap table's rules; stored lap tables of an older version are rebuilt.
LAP_TABLE_VERSION = 2  #: 2: lap times on physics time (hitches taken out), ``hitch_ticks``
#: Nearest regular one-tick steps (rows) whose distance a gap is judged against.
NEIGHBOUR_STEPS = 5
#: Smallest distance per tick (fraction of the lap) that tells a hitch from a dropped record:
#: below it the car stands (almost) still and the distance cannot say (0.6 mm at Langley).
MIN_TICK_PCT = 1e-6
#: How far from a whole number of ticks the distance covered may be and still count as one.
TICK_TOLERANCE = 0.35

LAP_COLUMNS = [
    "lap_index", "lap", "start_s", "end_s", "time_s", "complete", "valid", "reason",
    "start_row", "end_row", "samples", "dropped_ticks", "hitch_ticks", "iracing_time_s", "incidents",
]


def blank_rows(ch: Mapping[str, np.ndarray]) -> np.ndarray:
    """Rows iRacing writes as all zero (``Lap`` 0, ``LapDistPct`` 0, not moving)."""
    blank = (np.asarray(ch["Lap"]) == 0) & (np.asarray(ch["LapDistPct"]) == 0)
    if "Speed" in ch:
        blank &= np.asarray(ch["Speed"]) == 0
    return blank


def crossing_times(t: np.ndarray, pct: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Interpolated line-crossing time between rows ``i`` and ``i + 1`` [s].

    Where ``LapDistPct`` wraps (high to low) the crossing is at the fraction of the
    distance from ``pct[i]`` to ``1 + pct[i+1]``; otherwise at the first row of the new lap.
    """
    p0, p1 = pct[i].astype(np.float64), pct[i + 1].astype(np.float64) + 1.0
    wraps = (pct[i] > 0.5) & (pct[i + 1] < 0.5)
    frac = np.where(wraps, (1.0 - p0) / np.maximum(p1 - p0, 1e-12), 1.0)
    return t[i] + np.clip(frac, 0.0, 1.0) * (t[i + 1] - t[i])


def _iracing_time(t: np.ndarray, llt: np.ndarray | None, cross_row: int, stop_row: int, t_cross: float) -> float | None:
    if llt is None:
        return None
    before = llt[cross_row]
    j = cross_row + 1
    while j < stop_row and t[j] - t_cross <= LLT_WINDOW_S:
        v = float(llt[j])
        if v > 0 and v != before:
            return v
        j += 1
    return None


def _segments(blank: np.ndarray, lap: np.ndarray) -> list[tuple[int, int, bool]]:
    """(start, stop, ended_by_reset) runs of non-blank rows; a lap-number drop also splits."""
    n = len(blank)
    if n == 0:
        return []
    prev_blank = np.concatenate([[True], blank[:-1]])
    lap_drop = np.concatenate([[False], lap[1:] < lap[:-1]])
    starts_mask = ~blank & (prev_blank | lap_drop)
    starts = np.flatnonzero(starts_mask)
    enders = np.flatnonzero(blank | starts_mask)
    stops = enders[np.minimum(np.searchsorted(enders, starts, side="right"), len(enders) - 1)]
    stops = np.where(stops > starts, stops, n)
    return [(int(a), int(b), bool(b < n)) for a, b in zip(starts, stops, strict=True)]


def _nearest(valid: np.ndarray, forward: bool) -> np.ndarray:
    """For each step, the index of the nearest ``valid`` step strictly before it (or after
    it with ``forward``), -1 when there is none."""
    n = len(valid)
    idx = np.where(valid, np.arange(n), -1 if not forward else n)
    if forward:
        nxt = np.minimum.accumulate(idx[::-1])[::-1]
        out = np.concatenate([nxt[1:], [n]])
        return np.where(out >= n, -1, out)
    prev = np.maximum.accumulate(idx)
    return np.concatenate([[-1], prev[:-1]])


def hitch_ticks(t: np.ndarray, pct: np.ndarray, tick_rate: float, tick: np.ndarray | None = None) -> np.ndarray:
    """Per row, the ``SessionTime`` ticks of the step before it in which the physics did not
    advance (0 for the first row and for every ordinary step).

    A step of ``k`` >= 2 ticks of ``SessionTime`` in which the car covered ``m`` ticks' distance
    (``LapDistPct`` covered against the per-tick distance of the nearest regular one-tick steps
    on either side, at most :data:`NEIGHBOUR_STEPS` away) holds ``k - m`` hitched ticks (and
    ``m - 1`` dropped records). When the car stands (almost) still the distance cannot tell:
    then ``SessionTick`` decides when the file has it (it counts physics ticks), else the step
    counts in full.
    """
    t = np.asarray(t, dtype=np.float64)
    pct = np.asarray(pct, dtype=np.float64)
    n = len(t)
    out = np.zeros(n, np.int64)
    if n < 2:
        return out
    k = np.rint(np.diff(t) * tick_rate).astype(np.int64)
    gaps = np.flatnonzero(k >= 2)
    if not len(gaps):
        return out
    dp = np.diff(pct)
    dp = np.where(dp < -0.5, dp + 1.0, dp)  # over the line
    regular = (k == 1) & (dp >= 0) & (dp < 0.5)
    before, after = _nearest(regular, False), _nearest(regular, True)
    near = []
    for nb in (before, after):
        ok = (nb >= 0) & (np.abs(nb - np.arange(len(k))) <= NEIGHBOUR_STEPS)
        near.append(np.where(ok, dp[np.clip(nb, 0, None)], np.nan))
    both = np.vstack(near)
    seen = np.isfinite(both)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_tick = np.where(seen, both, 0.0).sum(axis=0) / seen.sum(axis=0)
    phys = k.copy()
    for i in gaps:
        m = dp[i] / per_tick[i] if np.isfinite(per_tick[i]) and per_tick[i] >= MIN_TICK_PCT else np.nan
        m_int = float(np.rint(m)) if np.isfinite(m) else np.nan
        if np.isfinite(m) and abs(m - m_int) <= TICK_TOLERANCE and 1 <= m_int < k[i]:
            phys[i] = int(m_int)
        elif not np.isfinite(m) and tick is not None:  # standing still: SessionTick counts physics ticks
            phys[i] = int(np.clip(int(tick[i + 1]) - int(tick[i]), 1, k[i]))
    out[1:] = k - phys
    return out


def physics_time(t: np.ndarray, pct: np.ndarray, tick_rate: float, tick: np.ndarray | None = None) -> np.ndarray:
    """``SessionTime`` [s] with the sim's hitches taken out (:func:`hitch_ticks`): the time the
    physics, and iRacing's lap timer, counted. Equal to ``SessionTime`` at the first row."""
    hitch = hitch_ticks(t, pct, tick_rate, tick)
    return np.asarray(t, dtype=np.float64) - np.cumsum(hitch) / float(tick_rate)


def dropped_ticks(t: np.ndarray, tick: np.ndarray | None, tick_rate: float,
                  hitches: np.ndarray | None = None) -> np.ndarray:
    """Records missing before each row (0 for the first): from ``SessionTick`` when the file
    has it, else from the ``SessionTime`` step against the tick rate less the ticks the sim
    hitched (``hitches``, :func:`hitch_ticks`)."""
    if len(t) < 2:
        return np.zeros(len(t), np.int64)
    if tick is not None:
        step = np.diff(tick).astype(np.int64)
    else:
        step = np.rint(np.diff(t) * tick_rate).astype(np.int64)
        if hitches is not None:
            step = step - np.asarray(hitches[1:], np.int64)
    return np.concatenate([[0], np.maximum(step - 1, 0)])


def lap_table(ch: Mapping[str, np.ndarray], tick_rate: float = 60.0) -> pd.DataFrame:
    """Lap table of one session from its channels (needs ``SessionTime``, ``Lap``, ``LapDistPct``).

    Optional channels refine it: ``OnPitRoad``, ``PlayerTrackSurface``,
    ``PlayerCarMyIncidentCount``, ``LapLastLapTime``, ``SessionTick``, ``Speed``.
    ``start_s``/``end_s`` are ``SessionTime`` [s] at the crossings; ``time_s`` is the lap time
    on physics time (:func:`physics_time`) and ``hitch_ticks`` the ticks ``SessionTime``
    skipped in the lap while the physics did not advance. The rows are :func:`lap_rows`.
    """
    import pandas as pd

    df = pd.DataFrame(lap_rows(ch, tick_rate), columns=LAP_COLUMNS)
    return df.astype({"lap_index": "int64", "time_s": "float64", "iracing_time_s": "float64"})


def lap_rows(ch: Mapping[str, np.ndarray], tick_rate: float = 60.0) -> list[dict[str, Any]]:
    """The rows of :func:`lap_table` as dicts of Python values (keys :data:`LAP_COLUMNS`;
    ``time_s`` and ``iracing_time_s`` None where there is none), without pandas."""
    t = np.asarray(ch["SessionTime"], dtype=np.float64)
    lap = np.asarray(ch["Lap"]).astype(np.int64)
    pct = np.asarray(ch["LapDistPct"], dtype=np.float64)
    llt = np.asarray(ch["LapLastLapTime"], dtype=np.float64) if "LapLastLapTime" in ch else None
    pit = np.asarray(ch["OnPitRoad"]).astype(bool) if "OnPitRoad" in ch else None
    surf = np.asarray(ch["PlayerTrackSurface"]) if "PlayerTrackSurface" in ch else None
    inc = np.asarray(ch["PlayerCarMyIncidentCount"]) if "PlayerCarMyIncidentCount" in ch else None
    tick = np.asarray(ch["SessionTick"]).astype(np.int64) if "SessionTick" in ch else None
    hitches = hitch_ticks(t, pct, tick_rate, tick)
    phys = t - np.cumsum(hitches) / float(tick_rate)
    drops = dropped_ticks(t, tick, tick_rate, hitches)
    rows: list[dict] = []
    blank = blank_rows(ch) if len(t) else np.zeros(0, bool)
    for seg_start, seg_stop, reset in _segments(blank, lap):
        seg_lap = lap[seg_start:seg_stop]
        cross = seg_start + np.flatnonzero(np.diff(seg_lap) == 1)
        t_cross = crossing_times(t, pct, cross) if len(cross) else np.zeros(0)
        p_cross = crossing_times(phys, pct, cross) if len(cross) else np.zeros(0)
        bounds = np.concatenate([[seg_start], cross + 1, [seg_stop]])
        for k in range(len(bounds) - 1):
            a, b = int(bounds[k]), int(bounds[k + 1])
            if b <= a:
                continue
            started = k > 0
            ended = k < len(cross)
            start_s = float(t_cross[k - 1]) if started else float(t[a])
            end_s = float(t_cross[k]) if ended else float(t[b - 1])
            lap_time = float(p_cross[k] - p_cross[k - 1]) if started and ended else None
            reasons: list[str] = []
            if not started:
                reasons.append("out_lap" if pit is not None and pit[a] else "partial")
            if not ended:
                reasons.append("reset" if reset and b == seg_stop else ("in_lap" if pit is not None and pit[b - 1] else "partial"))
            if pit is not None and pit[a:b].any() and "out_lap" not in reasons and "in_lap" not in reasons:
                reasons.append("pit")
            if surf is not None and (surf[a:b] == OFF_TRACK).any():
                reasons.append("off_track")
            n_inc = int(inc[b - 1] - inc[max(a - 1, 0)]) if inc is not None else 0
            if n_inc > 0:
                reasons.append("incident")
            complete = started and ended
            dropped = int(drops[a + 1 : b].sum())
            nxt = int(bounds[k + 2]) if k + 2 < len(bounds) else seg_stop
            rows.append({
                "lap_index": len(rows), "lap": int(lap[a]), "start_s": start_s, "end_s": end_s,
                "time_s": lap_time,
                "complete": complete, "valid": complete and not reasons,
                "reason": ",".join(dict.fromkeys(reasons)),
                "start_row": a, "end_row": b, "samples": b - a, "dropped_ticks": dropped,
                "hitch_ticks": (round((end_s - start_s - lap_time) * tick_rate) if lap_time is not None
                                else int(hitches[a + 1 : b].sum())),
                "iracing_time_s": _iracing_time(t, llt, b - 1, nxt, end_s) if ended else None,
                "incidents": n_inc,
            })
    return rows


#: Decimals of the floats in a stored lap table (the footer's ``lap_table``).
STORED_DECIMALS = 10


def stored_float(value: float, decimals: int = STORED_DECIMALS) -> float:
    """``value`` as the footer's lap table keeps it: rounded to ``decimals`` decimals the way
    pandas' ``to_json`` rounds (the lap tables in every session file stored so far were
    written by it, so a session imported now stores exactly the same numbers): the fraction
    times 10**decimals, rounded half to odd-or-zero, on doubles; ``%.{decimals}g`` beyond
    1e16 and below 1e-15."""
    neg, v = value < 0, abs(value)
    if v > 1e16 - 1 or (v != 0.0 and v < 1e-15):
        out = float(f"%.{decimals}g" % v)
    else:
        scale = float(10**decimals)
        whole = int(v)
        tmp = (v - whole) * scale
        frac = int(tmp)
        diff = tmp - frac
        if diff > 0.5 or (diff == 0.5 and (frac == 0 or frac & 1)):
            frac += 1
        if frac >= scale:
            frac, whole = 0, whole + 1
        out = float(f"{whole}.{frac:0{decimals}d}")
    return -out if neg else out


def lap_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lap rows (:func:`lap_rows`) as a session file's footer stores them: JSON values, floats
    rounded by :func:`stored_float`, NaN and missing values as None."""
    out = []
    for r in rows:
        rec = {}
        for k in LAP_COLUMNS:
            v = r[k]
            if isinstance(v, float):
                v = stored_float(v) if math.isfinite(v) else None
            rec[k] = v
        out.append(rec)
    return out
