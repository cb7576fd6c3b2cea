"""The coaching engine: at most two tips per lap, ranked by the time they cost.

For every complete lap and corner the segment time is compared with a **baseline**: the
median over the session's valid laps (robust to the odd mistake), or the reference lap when
one is given explicitly or fewer than :data:`MIN_BASELINE_LAPS` valid laps exist. A corner
gets a tip when it lost at least ``min_loss_s`` and one of its inputs stands out from the
driver's own spread (a robust z-score of at least :data:`Z_FAULT`, with floors so a very
consistent driver is not told about centimetres). The fault is named in the simulator's
words; when several inputs stand out, the first in the order of the corner (braking point,
lock-up, minimum speed, coasting, throttle) is the cause and the others its consequences.

Nothing is said after a clean lap, and a tip repeats only when its fault does: each lap is
judged on its own data. :func:`follow_up` closes the loop: for each tip it reports whether
the next laps (or later sessions) applied it and what it gained.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pitbox.analysis.laps_analysis import SessionAnalysis

log = logging.getLogger(__name__)

FAULTS = ("brake_early", "brake_late", "low_min_speed", "late_throttle", "coasting", "lockup")
MIN_BASELINE_LAPS = 3
MIN_LOSS_S = 0.05
MAX_TIPS = 2
Z_FAULT = 3.0
#: metric -> (floor of its noise scale, unit) -- a deviation smaller than Z_FAULT x floor is never a fault
METRICS: dict[str, tuple[float, str]] = {
    "brake_point_m": (2.0, "m"),
    "lockup_s": (0.03, "s"),
    "min_speed_kmh": (0.7, "km/h"),
    "coasting_s": (0.05, "s"),
    "throttle_pickup_m": (3.0, "m"),
}
TIP_COLUMNS = ["lap_index", "lap", "corner", "fault", "change", "time_loss_s", "deviation", "unit", "z",
               "repeat", "valid"]


@dataclass
class Baseline:
    """Per corner: the typical value of each metric and its noise scale (robust σ)."""

    values: pd.DataFrame  #: index corner; metric columns and segment_time_s
    noise: pd.DataFrame  #: index corner; metric columns (σ, floored)
    source: str  #: "median_of_valid_laps" or "reference"


def _robust_sigma(x: pd.Series) -> float:
    x = pd.to_numeric(x, errors="coerce").dropna()
    if len(x) < 3:
        return np.nan
    return float(1.4826 * np.median(np.abs(x - x.median())))


def baseline(a: SessionAnalysis, use_reference: bool = False) -> Baseline:
    """What this driver normally does at each corner (see module docs)."""
    t = a.table[(a.table.session_id == a.session.id)]
    valid = t[t.valid]
    n_valid = valid.lap_index.nunique()
    cols = ["segment_time_s", *METRICS]
    ref_rows = a.table[(a.table.lap_index == a.reference.lap_index) & (a.table.session_id == a.reference.session.id)]
    if ref_rows.empty:  # reference from another session: measure it on these corners
        from pitbox.analysis.corners import corner_table

        ref_rows = corner_table([a.ref_trace], a.corners)
    if use_reference or n_valid < MIN_BASELINE_LAPS:
        values = ref_rows.set_index("corner")[[c for c in cols if c in ref_rows]].apply(pd.to_numeric, errors="coerce")
        source = "reference"
    else:
        values = valid.groupby("corner")[[c for c in cols if c in valid]].agg(
            lambda s: pd.to_numeric(s, errors="coerce").median())
        source = "median_of_valid_laps"
    noise = pd.DataFrame(index=values.index)
    for m, (floor, _) in METRICS.items():
        if m in valid:
            sig = valid.groupby("corner")[m].agg(_robust_sigma)
            noise[m] = np.maximum(sig.reindex(values.index).fillna(floor), floor)
        else:
            noise[m] = floor
    return Baseline(values, noise, source)


def _change_text(fault: str, dev: float, row: pd.Series, base: pd.Series) -> str:
    a = abs(dev)
    if fault == "brake_early":
        return f"brake {a:.0f} m later (at {base.brake_point_m:.0f} m, not {row.brake_point_m:.0f} m)"
    if fault == "brake_late":
        return f"brake {a:.0f} m earlier (at {base.brake_point_m:.0f} m, not {row.brake_point_m:.0f} m)"
    if fault == "low_min_speed":
        return f"carry {a:.1f} km/h more through the apex ({base.min_speed_kmh:.0f} km/h, not {row.min_speed_kmh:.0f})"
    if fault == "late_throttle":
        return f"pick up the throttle {a:.0f} m earlier (at {base.throttle_pickup_m:.0f} m, not {row.throttle_pickup_m:.0f} m)"
    if fault == "coasting":
        return f"coast {a:.2f} s less: go from brake to throttle without a gap"
    if fault == "lockup":
        return f"ease the brake pressure: wheels locked {a:.2f} s longer than usual"
    return ""


def diagnose(row: pd.Series, base: pd.Series, noise: pd.Series) -> tuple[str, float, float, str] | None:
    """The fault of one lap at one corner: (fault, deviation, z, unit), or None when no input
    stands out. Deviations: brake point [m] (+ later), lock-up [s], minimum speed [km/h]
    (- slower), coasting [s], throttle pickup [m] (+ later)."""
    def dev(metric: str) -> float | None:
        if metric not in row or metric not in base:
            return None
        v, b = pd.to_numeric(row[metric], errors="coerce"), pd.to_numeric(base[metric], errors="coerce")
        return None if pd.isna(v) or pd.isna(b) else float(v - b)

    checks: list[tuple[str, str, float]] = [
        ("brake_point_m", "brake_early", -1.0), ("brake_point_m", "brake_late", 1.0),
        ("lockup_s", "lockup", 1.0), ("min_speed_kmh", "low_min_speed", -1.0),
        ("coasting_s", "coasting", 1.0), ("throttle_pickup_m", "late_throttle", 1.0),
    ]
    for metric, fault, sign in checks:
        d = dev(metric)
        if d is None:
            continue
        z = sign * d / float(noise[metric])
        if z >= Z_FAULT:
            return fault, d, z, METRICS[metric][1]
    return None


def lap_tips(a: SessionAnalysis, base: Baseline, min_loss_s: float = MIN_LOSS_S,
             max_tips: int = MAX_TIPS) -> pd.DataFrame:
    """Every lap's tips (at most ``max_tips`` each, biggest time loss first)."""
    t = a.table[a.table.session_id == a.session.id]
    rows = []
    for _, r in t.iterrows():
        if r.corner not in base.values.index or pd.isna(r.segment_time_s):
            continue
        b = base.values.loc[r.corner]
        loss = float(r.segment_time_s - b.segment_time_s)
        if loss < min_loss_s:
            continue
        found = diagnose(r, b, base.noise.loc[r.corner])
        if found is None:
            continue
        fault, d, z, unit = found
        rows.append({"lap_index": int(r.lap_index), "lap": int(r.lap), "corner": r.corner, "fault": fault,
                     "change": _change_text(fault, d, r, b), "time_loss_s": round(loss, 3),
                     "deviation": round(d, 3), "unit": unit, "z": round(z, 1), "repeat": False,
                     "valid": bool(r.valid)})
    tips = pd.DataFrame(rows, columns=TIP_COLUMNS)
    if tips.empty:
        return tips
    tips = (tips.sort_values(["lap_index", "time_loss_s"], ascending=[True, False])
            .groupby("lap_index", group_keys=False).head(max_tips).reset_index(drop=True))
    prev = set()
    laps = sorted(t.lap_index.unique())
    for i, lap in enumerate(laps):
        here = tips[tips.lap_index == lap]
        for k in here.index:
            tips.loc[k, "repeat"] = (tips.loc[k, "corner"], tips.loc[k, "fault"]) in prev
        prev = set(zip(here.corner, here.fault, strict=True)) if i + 1 < len(laps) and laps[i + 1] == lap + 1 else set()
    return tips


@dataclass
class CoachResult:
    """Tips per lap, the per-corner table behind them and the closed loop."""

    tips: pd.DataFrame
    corners: pd.DataFrame  #: per (lap, corner): segment time, loss vs baseline, metrics
    baseline: Baseline
    follow_up: pd.DataFrame
    explain: list[dict[str, Any]] = field(default_factory=list)

    def top(self, n: int = 5) -> pd.DataFrame:
        """The costliest tips of the session."""
        return self.tips.sort_values("time_loss_s", ascending=False).head(n)

    def for_lap(self, lap_index: int) -> pd.DataFrame:
        return self.tips[self.tips.lap_index == lap_index]


def corner_losses(a: SessionAnalysis, base: Baseline) -> pd.DataFrame:
    """The per-(lap, corner) table with ``loss_s`` (segment time minus the baseline's)."""
    t = a.table[a.table.session_id == a.session.id].copy()
    if t.empty:
        return t
    t["baseline_segment_time_s"] = t.corner.map(base.values.segment_time_s)
    t["loss_s"] = t.segment_time_s - t.baseline_segment_time_s
    return t


def coach(a: SessionAnalysis, use_reference: bool | None = None, min_loss_s: float = MIN_LOSS_S,
          max_tips: int = MAX_TIPS, explain: bool = True) -> CoachResult:
    """Tips for every lap of an analysed session, followed over the laps after them.

    ``use_reference`` compares with the reference lap instead of the driver's median (the
    default when the analysis' reference comes from another session).
    """
    if use_reference is None:
        use_reference = a.reference.session.id != a.session.id
    base = baseline(a, use_reference)
    tips = lap_tips(a, base, min_loss_s, max_tips)
    table = corner_losses(a, base)
    fu = follow_up(tips, table, base)
    result = CoachResult(tips, table, base, fu)
    if explain:
        from pitbox.analysis.explain import explain_corners

        result.explain = explain_corners(a)
    return result


def _fault_metric(fault: str) -> str:
    return {"brake_early": "brake_point_m", "brake_late": "brake_point_m", "lockup": "lockup_s",
            "low_min_speed": "min_speed_kmh", "coasting": "coasting_s", "late_throttle": "throttle_pickup_m"}[fault]


def follow_up(tips: pd.DataFrame, table: pd.DataFrame, base: Baseline, horizon: int = 3) -> pd.DataFrame:
    """For each tip: the next valid laps (up to ``horizon``) at that corner -- was the input
    brought back within the driver's normal spread (``applied``), did the fault recur, and how
    much time the corner gained against the tipped lap (``gained_s`` > 0: faster)."""
    rows = []
    for _, tip in tips.iterrows():
        later = table[(table.corner == tip.corner) & (table.lap_index > tip.lap_index) & table.valid]
        later = later.sort_values("lap_index").head(horizon)
        metric = _fault_metric(tip.fault)
        row: dict[str, Any] = {"lap_index": int(tip.lap_index), "corner": tip.corner, "fault": tip.fault,
                               "time_loss_s": tip.time_loss_s}
        if later.empty:
            rows.append({**row, "next_lap_index": None, "applied": None, "gained_s": None, "fault_repeated": None})
            continue
        nxt = later.iloc[0]
        b, sigma = base.values.loc[tip.corner], base.noise.loc[tip.corner, metric]
        d = float(pd.to_numeric(nxt[metric], errors="coerce") - b[metric]) if metric in nxt else np.nan
        sign = np.sign(tip.deviation)
        still = bool(np.isfinite(d) and sign * d / sigma >= Z_FAULT)
        applied = bool(np.isfinite(d) and abs(d) < 0.5 * abs(tip.deviation)) and not still
        rows.append({**row, "next_lap_index": int(nxt.lap_index), "applied": applied,
                     "gained_s": round(float(tip.time_loss_s - nxt.loss_s), 3), "fault_repeated": still,
                     "laps_followed": len(later)})
    return pd.DataFrame(rows)


def follow_up_sessions(result: CoachResult, a: SessionAnalysis, later: list[SessionAnalysis]) -> pd.DataFrame:
    """Across sessions: for each (corner, fault) tipped in ``a``, how often the fault recurs in
    each later session (laps with that input beyond the driver's spread from ``a``) and the
    corner's median time there against ``a``'s baseline (``gained_s`` > 0: faster)."""
    rows = []
    pairs = result.tips[["corner", "fault"]].drop_duplicates()
    base = result.baseline
    for other in later:
        t = other.table[other.table.valid & (other.table.session_id == other.session.id)]
        for _, p in pairs.iterrows():
            ct = t[t.corner == p.corner]
            if ct.empty:
                continue
            metric = _fault_metric(p.fault)
            sign = -1.0 if p.fault in ("brake_early", "low_min_speed") else 1.0
            z = sign * (pd.to_numeric(ct[metric], errors="coerce") - base.values.loc[p.corner, metric]) \
                / base.noise.loc[p.corner, metric]
            rows.append({"session_id": other.session.id, "corner": p.corner, "fault": p.fault, "laps": len(ct),
                         "fault_rate": float((z >= Z_FAULT).mean()),
                         "gained_s": float(base.values.loc[p.corner, "segment_time_s"] - ct.segment_time_s.median())})
    return pd.DataFrame(rows)
