"""Corner phases: braking, entry, apex and exit as fixed distances from the reference lap
(so laps compare), and the time a lap spends in each."""

from __future__ import annotations

import numpy as np

from pitbox.analysis.align import Trace
from pitbox.analysis.corners.metrics import lap_corner_metrics
from pitbox.analysis.corners.model import Corner
from pitbox.analysis.corners.window import window


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
        w = window(trace, a, max(b, a))
        out[f"{name}_s"] = float(np.interp(b, w.d, w.t) - np.interp(a, w.d, w.t)) if len(w.d) > 1 else np.nan
    return out
