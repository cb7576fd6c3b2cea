"""The coaching engine: at most two tips per lap, ranked by the time they cost.

**Baseline.** For every corner: the median of each input over the session's valid laps
(robust to the odd mistake), or the reference lap's inputs when a reference from another
session is given or fewer than :data:`MIN_BASELINE_LAPS` valid laps exist.

**Noise.** Each input's spread at a corner is a robust σ (1.4826 x MAD) over the valid laps,
shrunk towards the same input's σ pooled over all corners (a driver's brake-point scatter
is much the same everywhere, and ten laps give a poor σ on their own), with floors so a
very consistent driver is not told about centimetres.

**Diagnosis** (:mod:`pitbox.analysis.diagnosis`, shared with the explanations). An input is
faulty when it is at least :data:`Z_FAULT` σ from the baseline in the fault's direction. When
several are, the first in the order of the corner is the cause (lock-up, which wheel speeds
show beyond doubt, then braking point, coasting, minimum speed, throttle pickup) and the
others its consequences (braking late makes the car run wide: lower minimum speed, later
throttle). Faults are named in the simulator's words. Where the recording lost ticks around
a brake point or pickup, the deviation counts only beyond that hole, and the tip carries the
hole as ``deviation_gap``.

**Time cost.** The corner's segment time minus what this lap would have taken with the
driver's usual input where the fault is, and its own inputs elsewhere: a per-corner linear
model of segment time on brake point, minimum speed and throttle pickup, fitted on the clean
valid laps (ridge, at least :data:`MIN_FIT_LAPS` laps, else no correction) removes the cost
of this lap's ordinary scatter in the inputs the fault does not touch. Each tip states its
accuracy, ``time_loss_sd_s`` (:func:`fault_cost_sd`): what the model leaves unexplained on the
clean laps, and the scatter in the faulty input itself (its σ times its cost per unit);
docs/analysis.md gives the coverage measured on the simulator.

**Tips.** Only laps driven at racing pace are coached (valid laps, and laps invalid only for an
off-track or an incident; never out, in or pit laps). A corner gets a tip when its fault costs
at least ``min_loss_s``; a lap keeps its
``max_tips`` costliest. Nothing is said after a clean lap, and a tip repeats only when its
fault does (each lap is judged on its own data; ``repeat`` marks a fault seen on the lap
before). :func:`follow_up` closes the loop over the next laps, :func:`follow_up_sessions`
over later sessions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pitbox.analysis.diagnosis import (
    CHECKS,
    FAULT_METRIC,
    FAULT_SIGN,
    FAULTS,
    METRICS,
    Z_FAULT,
    diagnose,
    gap,
    mad_sigma,
    num,
)
from pitbox.analysis.explain import explain_corners

if TYPE_CHECKING:
    from pitbox.analysis.laps_analysis import SessionAnalysis

log = logging.getLogger(__name__)

MIN_BASELINE_LAPS = 3
MIN_FIT_LAPS = 6
MIN_LOSS_S = 0.05
MAX_TIPS = 2
RIDGE_ALPHA = 0.3
SHRINK_LAPS = 10.0  #: weight (in laps) of the pooled σ against a corner's own σ
#: inputs of the time model; each fault's own input and its consequences are not corrected for
MODEL_INPUTS = ("segment_entry_speed_kmh", "brake_point_m", "min_speed_kmh", "throttle_pickup_m")
TOUCHES = {
    "brake_early": {"brake_point_m"},
    "brake_late": {"brake_point_m", "min_speed_kmh", "throttle_pickup_m"},
    "lockup": {"min_speed_kmh", "throttle_pickup_m"},
    "low_min_speed": {"min_speed_kmh"},
    "coasting": {"min_speed_kmh", "throttle_pickup_m"},
    "late_throttle": {"throttle_pickup_m"},
}
TIP_COLUMNS = ["lap_index", "lap", "corner", "fault", "change", "time_loss_s", "time_loss_sd_s", "deviation",
               "deviation_gap", "unit", "z", "segment_loss_s", "repeat", "valid"]


@dataclass
class Baseline:
    """Per corner: the usual value of each input, its noise scale and the time model."""

    values: pd.DataFrame  #: index corner; inputs and segment_time_s
    noise: pd.DataFrame  #: index corner; σ of each input (shrunk, floored)
    source: str  #: "median_of_valid_laps" or "reference"
    slopes: pd.DataFrame = field(default_factory=pd.DataFrame)  #: index corner; s per unit of each model input
    fit_laps: dict[str, int] = field(default_factory=dict)
    fit_range: dict[str, pd.DataFrame] = field(default_factory=dict)  #: corner -> min/max of each input in the fit
    #: index corner: robust σ of the time model's residual on the clean valid laps [s] (the
    #: segment time the inputs do not explain); NaN with fewer than 3 such laps
    residual_s: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))


def _noise(valid: pd.DataFrame, corners: pd.Index) -> pd.DataFrame:
    noise = pd.DataFrame(index=corners)
    for m, (floor, _) in METRICS.items():
        if m not in valid:
            noise[m] = floor
            continue
        per = valid.groupby("corner")[m].agg(mad_sigma).reindex(corners)
        n = valid.groupby("corner")[m].agg(lambda s: num(s).notna().sum()).reindex(corners).fillna(0)
        pooled = float(np.nanmedian(per)) if per.notna().any() else floor
        own = per.fillna(pooled)
        shrunk = np.sqrt((n * own**2 + SHRINK_LAPS * pooled**2) / (n + SHRINK_LAPS))
        noise[m] = np.maximum(shrunk, floor)
    return noise


def _clean_rows(ct: pd.DataFrame, values: pd.Series, noise: pd.Series) -> pd.DataFrame:
    """Rows of one corner with no input beyond Z_FAULT σ (either way)."""
    ok = pd.Series(True, index=ct.index)
    for m in FAULT_METRIC.values():
        if m in ct and m in values:
            z = (num(ct[m]) - values[m]).abs() / noise[m]
            ok &= ~(z >= Z_FAULT)
    return ct[ok]


def _slopes(ct: pd.DataFrame) -> pd.Series | None:
    """Segment time per unit of each model input (ridge on standardised inputs), or None."""
    from sklearn.linear_model import Ridge

    cols = [m for m in MODEL_INPUTS if m in ct]
    X = ct[cols].apply(num)
    X = X.loc[:, X.notna().all()]
    y = num(ct.segment_time_s)
    if len(ct) < MIN_FIT_LAPS or X.shape[1] == 0 or y.isna().any():
        return None
    sd = X.std(ddof=0).replace(0, np.nan)
    Z = ((X - X.mean()) / sd).fillna(0.0)
    model = Ridge(alpha=RIDGE_ALPHA).fit(Z.to_numpy(), y.to_numpy())
    return pd.Series(model.coef_ / sd.fillna(np.inf).to_numpy(), index=X.columns)


def baseline(a: SessionAnalysis, use_reference: bool = False) -> Baseline:
    """What this driver usually does at each corner (see module docs)."""
    t = a.table[(a.table.session_id == a.session.id)]
    valid = t[t.valid]
    n_valid = valid.lap_index.nunique()
    cols = ["segment_time_s", *METRICS]
    if use_reference or n_valid < MIN_BASELINE_LAPS:
        ref_rows = a.table[(a.table.lap_index == a.reference.lap_index)
                           & (a.table.session_id == a.reference.session.id)]
        if ref_rows.empty:  # reference from another session: measure it on these corners
            from pitbox.analysis.corners import corner_table

            ref_rows = corner_table([a.ref_trace], a.corners)
        values = ref_rows.set_index("corner")[[c for c in cols if c in ref_rows]].apply(num)
        source = "reference"
    else:
        values = valid.groupby("corner")[[c for c in cols if c in valid]].agg(lambda s: num(s).median())
        source = "median_of_valid_laps"
    noise = _noise(valid, values.index)
    slopes, fit, ranges, cleans = {}, {}, {}, {}
    for corner in values.index:
        clean = cleans[corner] = _clean_rows(valid[valid.corner == corner], values.loc[corner], noise.loc[corner])
        sl = _slopes(clean)
        if sl is not None:
            slopes[corner], fit[corner] = sl, len(clean)
            ranges[corner] = clean[list(sl.index)].apply(num).agg(["min", "max"])
    base = Baseline(values, noise, source, pd.DataFrame(slopes).T, fit, ranges)
    # what the fitted model leaves unexplained on the same clean laps
    base.residual_s = pd.Series({corner: mad_sigma(pd.Series([fault_cost(r, None, base) for _, r in clean.iterrows()],
                                                             dtype=float))
                                 for corner, clean in cleans.items()}, dtype=float)
    return base


def fault_cost(row: pd.Series, fault: str | None, base: Baseline) -> float:
    """Segment time lost to ``fault`` [s]: the segment time minus the baseline time corrected
    for this lap's scatter in the inputs the fault does not touch (each input clipped to the
    range the model was fitted on; see module docs)."""
    b = base.values.loc[row.corner]
    expected = float(b.segment_time_s)
    if row.corner in base.slopes.index:
        touched = TOUCHES.get(fault, set(MODEL_INPUTS)) if fault else set(MODEL_INPUTS)
        for m, s in base.slopes.loc[row.corner].dropna().items():
            if m in touched or m not in row:
                continue
            x = pd.to_numeric(row[m], errors="coerce")
            if pd.notna(x) and pd.notna(b.get(m)):
                lo, hi = base.fit_range[row.corner][m]  # ordinary scatter only: never extrapolate
                expected += float(s) * float(np.clip(x, lo, hi) - b[m])
    return float(row.segment_time_s) - expected


def fault_cost_sd(corner: str, fault: str, base: Baseline) -> float:
    """The accuracy (1 σ) of :func:`fault_cost` [s]: the segment time the time model leaves
    unexplained on the driver's clean laps, combined with the scatter of the faulty input
    itself times its cost per unit (which no analysis can take out: the driver's usual value
    is known only to that scatter). NaN when the corner has fewer than 3 clean laps."""
    resid = float(base.residual_s.get(corner, np.nan))
    metric = FAULT_METRIC[fault]
    slope = base.slopes.loc[corner].get(metric, np.nan) if corner in base.slopes.index else np.nan
    scatter = float(base.noise.loc[corner, metric]) * abs(float(slope)) if pd.notna(slope) else 0.0
    return float(np.hypot(resid, scatter))


def cost_text(tip: Any) -> str:
    """A tip's time cost with its accuracy: "0.152 ± 0.031 s" (the ± left out when unknown,
    "–" without a cost). ``tip``: a row of :attr:`CoachResult.tips` or a live ``tip`` message."""

    def finite(key: str) -> float | None:
        v = pd.to_numeric(tip.get(key), errors="coerce")
        return float(v) if pd.notna(v) and np.isfinite(v) else None

    loss, sd = finite("time_loss_s"), finite("time_loss_sd_s")
    if loss is None:
        return "–"
    return f"{loss:.3f} ± {sd:.3f} s" if sd is not None else f"{loss:.3f} s"


def _change_text(fault: str, dev: float, row: pd.Series, base: pd.Series, gap_m: float = 0.0) -> str:
    a = abs(dev)
    unsure = f"; ±{gap_m:.0f} m: ticks missing" if gap_m >= 0.5 else ""
    if fault == "brake_early":
        return f"brake {a:.0f} m later (at {base.brake_point_m:.0f} m, not {row.brake_point_m:.0f} m{unsure})"
    if fault == "brake_late":
        return f"brake {a:.0f} m earlier (at {base.brake_point_m:.0f} m, not {row.brake_point_m:.0f} m{unsure})"
    if fault == "low_min_speed":
        return f"carry {a:.1f} km/h more through the apex ({base.min_speed_kmh:.0f} km/h, not {row.min_speed_kmh:.0f})"
    if fault == "late_throttle":
        return (f"pick up the throttle {a:.0f} m earlier (at {base.throttle_pickup_m:.0f} m, "
                f"not {row.throttle_pickup_m:.0f} m{unsure})")
    if fault == "coasting":
        return f"coast {a:.1f} s less: go from the brake to the throttle without a gap"
    if fault == "lockup":
        return f"ease off the brake before the wheels lock ({a:.2f} s locked)"
    return ""


#: lap-table reasons that still leave a lap worth coaching (the mistake is the point)
COACHABLE_REASONS = {"", "off_track", "incident"}


def coachable_laps(a: SessionAnalysis) -> set[int]:
    """Complete laps driven at racing pace: valid ones, and those invalid only for an
    off-track or an incident; never out, in or pit laps."""
    laps = a.session.source.laps
    ok = laps.complete & laps.reason.fillna("").map(lambda r: set(r.split(",")) <= COACHABLE_REASONS)
    return set(int(i) for i in laps.lap_index[ok])


def _carried_in(row: pd.Series, prev_fault: bool, base: Baseline) -> bool:
    """True when the corner before (on this lap) had a fault and the car arrives here at a
    speed far from usual: this corner's odd inputs are that fault's consequence."""
    m = "segment_entry_speed_kmh"
    if not prev_fault or m not in row or m not in base.values:
        return False
    v = pd.to_numeric(row[m], errors="coerce")
    b = base.values.loc[row.corner, m]
    return bool(pd.notna(v) and pd.notna(b) and abs(float(v - b)) / float(base.noise.loc[row.corner, m]) >= Z_FAULT)


def lap_tips(a: SessionAnalysis, base: Baseline, min_loss_s: float = MIN_LOSS_S,
             max_tips: int = MAX_TIPS) -> pd.DataFrame:
    """Every lap's tips (at most ``max_tips`` each, biggest time cost first). A corner whose
    odd inputs were carried in from a fault in the corner before gets no tip of its own."""
    t = a.table[(a.table.session_id == a.session.id) & a.table.lap_index.isin(coachable_laps(a))]
    order = {c.name: i for i, c in enumerate(a.corners)}
    t = t.assign(_k=t.corner.map(order)).sort_values(["lap_index", "_k"])
    rows = []
    prev_fault = False
    for _, r in t.iterrows():
        if r.corner not in base.values.index or pd.isna(r.segment_time_s):
            prev_fault = False
            continue
        b = base.values.loc[r.corner]
        found = diagnose(r, b, base.noise.loc[r.corner])
        carried = _carried_in(r, prev_fault, base)
        prev_fault = found is not None
        if found is None or carried:
            continue
        fault, d, z, unit = found
        loss = fault_cost(r, fault, base)
        if loss < min_loss_s:
            continue
        g = gap(r, FAULT_METRIC[fault])
        rows.append({"lap_index": int(r.lap_index), "lap": int(r.lap), "corner": r.corner, "fault": fault,
                     "change": _change_text(fault, d, r, b, g), "time_loss_s": round(loss, 3),
                     "time_loss_sd_s": round(fault_cost_sd(r.corner, fault, base), 3),
                     "deviation": round(d, 3), "deviation_gap": round(g, 3), "unit": unit, "z": round(z, 1),
                     "segment_loss_s": round(float(r.segment_time_s - b.segment_time_s), 3), "repeat": False,
                     "valid": bool(r.valid)})
    tips = pd.DataFrame(rows, columns=TIP_COLUMNS)
    if tips.empty:
        return tips
    tips = (tips.sort_values(["lap_index", "time_loss_s"], ascending=[True, False])
            .groupby("lap_index", group_keys=False).head(max_tips).reset_index(drop=True))
    laps = sorted(int(i) for i in t.lap_index.unique())
    seen: dict[int, set[tuple[str, str]]] = {lap: set(zip(g.corner, g.fault, strict=True))
                                             for lap, g in tips.groupby("lap_index")}
    tips["repeat"] = [(c, f) in seen.get(lap - 1, set()) and lap - 1 in laps
                      for lap, c, f in zip(tips.lap_index, tips.corner, tips.fault, strict=True)]
    return tips


@dataclass
class CoachResult:
    """Tips per lap, the per-corner table behind them and the closed loop."""

    tips: pd.DataFrame
    corners: pd.DataFrame  #: per (lap, corner): segment time, loss vs baseline, inputs
    baseline: Baseline
    follow_up: pd.DataFrame
    explain: list[dict[str, Any]] = field(default_factory=list)

    def top(self, n: int = 5) -> pd.DataFrame:
        """The costliest tips of the session."""
        return self.tips.sort_values("time_loss_s", ascending=False).head(n)

    def for_lap(self, lap_index: int) -> pd.DataFrame:
        return self.tips[self.tips.lap_index == lap_index]


def corner_losses(a: SessionAnalysis, base: Baseline) -> pd.DataFrame:
    """The per-(lap, corner) table with ``loss_s`` (segment time minus the baseline's) and
    ``adjusted_loss_s`` (corrected for the lap's scatter in every model input)."""
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
    if a.table.empty:  # no corner was found: nothing to judge, no tip
        log.warning("session %s: no corners, so no tips", a.session.id)
        tips = pd.DataFrame(columns=TIP_COLUMNS)
        table = pd.DataFrame({"lap_index": pd.Series(dtype="int64"), "corner": pd.Series(dtype=object),
                              "segment_time_s": pd.Series(dtype=float), "valid": pd.Series(dtype=bool)})
        base = Baseline(pd.DataFrame(), pd.DataFrame(), "none")
        return CoachResult(tips, table, base, follow_up(tips, table, base))
    if use_reference is None:
        use_reference = a.reference.session.id != a.session.id
    base = baseline(a, use_reference)
    tips = lap_tips(a, base, min_loss_s, max_tips)
    table = corner_losses(a, base)
    result = CoachResult(tips, table, base, follow_up(tips, table, base))
    if explain:
        result.explain = explain_corners(a)
    return result


def follow_up(tips: pd.DataFrame, table: pd.DataFrame, base: Baseline, horizon: int = 3) -> pd.DataFrame:
    """For each tip: the next valid laps (up to ``horizon``) at that corner. ``applied``: the
    next lap brought the input back within half of the tip's deviation and the fault did not
    recur; ``gained_s``: the corner's segment time on the tipped lap minus on the next lap."""
    cols = ["lap_index", "corner", "fault", "time_loss_s", "next_lap_index", "applied", "gained_s",
            "fault_repeated", "laps_followed"]
    rows = []
    for _, tip in tips.iterrows():
        later = table[(table.corner == tip.corner) & (table.lap_index > tip.lap_index) & table.valid]
        later = later.sort_values("lap_index").head(horizon)
        row: dict[str, Any] = {"lap_index": int(tip.lap_index), "corner": tip.corner, "fault": tip.fault,
                               "time_loss_s": tip.time_loss_s, "laps_followed": len(later)}
        if later.empty:
            rows.append({**row, "next_lap_index": None, "applied": None, "gained_s": None, "fault_repeated": None})
            continue
        nxt = later.iloc[0]
        metric = FAULT_METRIC[tip.fault]
        b, sigma = base.values.loc[tip.corner], base.noise.loc[tip.corner, metric]
        d = float(pd.to_numeric(nxt[metric], errors="coerce") - b[metric])
        still = bool(np.isfinite(d) and FAULT_SIGN[tip.fault] * d / sigma >= Z_FAULT)
        applied = bool(np.isfinite(d) and abs(d) < 0.5 * abs(tip.deviation)) and not still
        tipped = table[(table.corner == tip.corner) & (table.lap_index == tip.lap_index)].segment_time_s
        rows.append({**row, "next_lap_index": int(nxt.lap_index), "applied": applied,
                     "gained_s": round(float(tipped.iloc[0] - nxt.segment_time_s), 3), "fault_repeated": still})
    out = pd.DataFrame(rows, columns=cols)
    out["next_lap_index"] = out.next_lap_index.astype("Int64")
    return out


def follow_up_sessions(result: CoachResult, a: SessionAnalysis, later: list[SessionAnalysis]) -> pd.DataFrame:
    """Across sessions: for each (corner, fault) tipped in ``a``, how often the fault recurs in
    each later session (laps with that input beyond ``Z_FAULT`` σ of ``a``'s baseline), what the
    corner gained there against the tipped laps (``gained_s`` > 0: faster than when the fault
    was made) and against ``a``'s usual time at the corner (``vs_baseline_s``). The later
    analyses must use ``a``'s corners (``analyse(..., reference=a.reference)``)."""
    rows = []
    base = result.baseline
    tipped = result.corners.merge(result.tips[["lap_index", "corner", "fault"]], on=["lap_index", "corner"])
    for other in later:
        t = other.table[other.table.valid & (other.table.session_id == other.session.id)]
        for (corner, fault), g in tipped.groupby(["corner", "fault"], sort=False):
            ct = t[t.corner == corner]
            if ct.empty:
                continue
            metric = FAULT_METRIC[fault]
            z = FAULT_SIGN[fault] * (num(ct[metric]) - base.values.loc[corner, metric]) / base.noise.loc[corner, metric]
            now = float(ct.segment_time_s.median())
            rows.append({"session_id": other.session.id, "corner": corner, "fault": fault, "laps": len(ct),
                         "fault_rate": float((z >= Z_FAULT).mean()),
                         "gained_s": float(g.segment_time_s.median() - now),
                         "vs_baseline_s": float(base.values.loc[corner, "segment_time_s"] - now)})
    return pd.DataFrame(rows, columns=["session_id", "corner", "fault", "laps", "fault_rate", "gained_s",
                                       "vs_baseline_s"])


__all__ = ["CHECKS", "FAULTS", "FAULT_METRIC", "FAULT_SIGN", "METRICS", "Z_FAULT", "Baseline", "CoachResult",
           "baseline", "coach", "coachable_laps", "corner_losses", "cost_text", "diagnose", "fault_cost",
           "fault_cost_sd", "follow_up", "follow_up_sessions", "lap_tips"]
