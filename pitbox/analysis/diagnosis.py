"""Diagnosis of one lap at one corner: which input is a fault, against a baseline and its
noise scale. Shared by the coaching engine (:mod:`pitbox.analysis.coaching`) and the
explanations (:mod:`pitbox.analysis.explain`), so both name a mistake the same way.

An input is faulty when it is at least :data:`Z_FAULT` σ from the baseline in the fault's
direction. When several are, the first in :data:`CHECKS` order is the cause (lock-up, which
wheel speeds show beyond doubt, then braking point, coasting, minimum speed, throttle
pickup) and the others its consequences. Faults are named in the simulator's words.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FAULTS = ("brake_early", "brake_late", "low_min_speed", "late_throttle", "coasting", "lockup")
Z_FAULT = 4.0
Z_CAUSE = 2.0  #: a cause seen together with a clear consequence needs less evidence
#: input -> (floor of its noise scale, unit)
METRICS: dict[str, tuple[float, str]] = {
    "brake_point_m": (2.0, "m"),
    "lockup_s": (0.05, "s"),
    "min_speed_kmh": (0.8, "km/h"),
    "coasting_s": (0.1, "s"),
    "throttle_pickup_m": (2.0, "m"),
    "segment_entry_speed_kmh": (1.0, "km/h"),  #: not a fault: how fast the car arrives from the corner before
}
#: diagnosis order: (input, fault, direction of the fault: +1 above the baseline, -1 below)
CHECKS: tuple[tuple[str, str, float], ...] = (
    ("lockup_s", "lockup", 1.0),
    ("brake_point_m", "brake_early", -1.0), ("brake_point_m", "brake_late", 1.0), ("coasting_s", "coasting", 1.0),
    ("min_speed_kmh", "low_min_speed", -1.0), ("throttle_pickup_m", "late_throttle", 1.0),
)
#: input -> how far this lap's value may be off because ticks are missing around it [same unit]
GAPS = {"brake_point_m": "brake_point_gap_m", "throttle_pickup_m": "throttle_pickup_gap_m"}
FAULT_METRIC = {f: m for m, f, _ in CHECKS}
FAULT_SIGN = {f: s for _, f, s in CHECKS}


def num(s: pd.Series) -> pd.Series:
    """A column as floats (None and text become NaN)."""
    return pd.to_numeric(s, errors="coerce").astype(float)


def mad_sigma(x: pd.Series) -> float:
    """Robust σ (1.4826 x median absolute deviation); NaN with fewer than 3 values."""
    x = num(x).dropna()
    if len(x) < 3:
        return np.nan
    return float(1.4826 * np.median(np.abs(x - x.median())))


def floored_noise(ct: pd.DataFrame) -> pd.Series:
    """Each input's robust σ over the rows of one corner, never under its floor (:data:`METRICS`)."""
    return pd.Series({m: max(mad_sigma(ct[m]), floor) if m in ct else floor
                      for m, (floor, _) in METRICS.items()}).fillna(pd.Series({m: v[0] for m, v in METRICS.items()}))


def gap(row: pd.Series, metric: str) -> float:
    """How far ``row``'s ``metric`` may be off because ticks are missing from the recording
    around it (:data:`GAPS`; 0 when every tick is there or the input has no such measure)."""
    g = pd.to_numeric(row.get(GAPS.get(metric, ""), 0.0), errors="coerce")
    return 0.0 if pd.isna(g) else float(g)


def _z(row: pd.Series, base: pd.Series, noise: pd.Series, metric: str, sign: float) -> float | None:
    """The lap's deviation from the baseline in the fault's direction, in σ, after the
    benefit of the doubt: the smallest deviation the recording allows (:func:`gap`)."""
    if metric not in row or metric not in base:
        return None
    v, b = pd.to_numeric(row[metric], errors="coerce"), pd.to_numeric(base[metric], errors="coerce")
    if pd.isna(v) or pd.isna(b):
        return None
    return (sign * float(v - b) - gap(row, metric)) / float(noise[metric])


def diagnose(row: pd.Series, base: pd.Series, noise: pd.Series) -> tuple[str, float, float, str] | None:
    """The fault of one lap at one corner: (fault, deviation from the baseline, z, unit), or
    None when no input stands out. Deviations: brake point [m] (+ later), lock-up [s],
    minimum speed [km/h] (- slower), coasting [s], throttle pickup [m] (+ later).

    Where ticks are missing around the lap's brake point or throttle pickup, the deviation
    counts only beyond the stretch they leave unknown (:func:`gap`): a brake onset that fell in
    a 30 m hole is no fault unless it is early by more than 30 m and the usual scatter.

    Braking early *and* carrying less speed through the apex is ``low_min_speed`` (the driver
    slowed the car more than needed); braking early at the usual apex speed is ``brake_early``.
    A slow apex after braking later than usual (by :data:`Z_CAUSE` σ or more) is ``brake_late``:
    the car ran wide.
    """
    for metric, fault, sign in CHECKS:
        z = _z(row, base, noise, metric, sign)
        if z is None or z < Z_FAULT:
            continue
        if fault == "brake_early":
            zv = _z(row, base, noise, "min_speed_kmh", -1.0)
            if zv is not None and zv >= Z_FAULT:
                fault, metric, z = "low_min_speed", "min_speed_kmh", zv
        elif fault == "low_min_speed":
            zb = _z(row, base, noise, "brake_point_m", 1.0)
            if zb is not None and zb >= Z_CAUSE:
                fault, metric, z = "brake_late", "brake_point_m", zb
        d = float(pd.to_numeric(row[metric], errors="coerce") - pd.to_numeric(base[metric], errors="coerce"))
        return fault, d, z, METRICS[metric][1]
    return None
