"""Laps on a common distance grid, and the delta time between two laps with its accuracy.

I/O free: functions take numpy arrays and return numpy arrays.

Distance along the lap is ``LapDistPct`` x the track length (the length measured from the
file's own ``LapDist`` / ``LapDistPct`` ratio when it has ``LapDist``, which iRacing writes as
exactly that product; else the YAML's rounded ``TrackLength``). Only a recording without
``LapDistPct`` falls back to integrating ``Speed``. The start line is distance 0: the sample
just before the crossing has a small negative distance and the one just after a small
positive one, so the crossing time interpolated here is the lap table's crossing time.

Each lap is resampled **once** from its original samples onto the grid: time (and every
continuous channel) linearly in distance, discrete channels (gear, flags) from the last
sample at or before the grid point.

Accuracy of a delta (documented in docs/analysis.md):

* **closure** -- the delta at the finish line against the lap-time difference, both from our
  lap table (must be < 1 ms; by construction it is float rounding) and from iRacing's own
  ``LapLastLapTime`` values (must be < 4 ms: iRacing's value is rounded and its crossing
  is computed at a higher internal rate).
* **alignment error** -- how far the delta at a distance can be from the true delta at that
  distance because each lap is known only at its 60 Hz samples: per lap the largest gap
  between the linear and a monotone cubic (PCHIP) interpolation of time over distance;
  the delta's alignment error is the sum for the two laps. The simulator, which knows the
  true time at every metre, checks it (tests/test_analysis_sim.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pitbox.errors import MissingChannel

DEFAULT_STEP_M = 1.0


def unwrap_distance(pct: np.ndarray, length_m: float, started: bool) -> np.ndarray:
    """Distance along a lap [m] from ``LapDistPct`` (0-1) samples that may wrap once or more.

    ``started`` means the first sample lies just before the start line (so it gets a
    negative distance and the crossing sits at 0).
    """
    pct = np.asarray(pct, dtype=np.float64)
    if len(pct) == 0:
        return pct
    wraps = np.concatenate([[0], np.cumsum(np.diff(pct) < -0.5)])
    d = (pct + wraps) * length_m
    if started:
        d -= length_m
    return np.maximum.accumulate(d)


def integrate_speed(time_s: np.ndarray, speed_ms: np.ndarray) -> np.ndarray:
    """Distance travelled [m] by trapezoidal integration of speed over time (fallback only)."""
    dt = np.diff(np.asarray(time_s, dtype=np.float64))
    v = np.asarray(speed_ms, dtype=np.float64)
    return np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * dt)])


def distance_grid(length_m: float, step_m: float = DEFAULT_STEP_M, start_m: float = 0.0,
                  stop_m: float | None = None) -> np.ndarray:
    """Grid points [m]: every ``step_m`` from the lap's start, and the finish line itself.

    For a part lap (``start_m``/``stop_m``) the points are those of the full-lap grid inside it,
    so part laps line up with full ones.
    """
    stop = length_m if stop_m is None else min(stop_m, length_m)
    first = np.ceil(max(start_m, 0.0) / step_m) * step_m
    grid = np.arange(first, stop, step_m)
    if stop_m is None or stop_m >= length_m:
        grid = np.concatenate([grid[grid < length_m - 1e-9], [length_m]])
    return grid


def resample(distance_m: np.ndarray, values: np.ndarray, grid_m: np.ndarray, kind: str = "linear") -> np.ndarray:
    """Values measured at ``distance_m`` (non-decreasing) at the grid points ``grid_m``.

    ``kind="linear"`` interpolates; ``"step"`` holds the last sample at or before each point.
    """
    values = np.asarray(values)
    if kind == "step":
        idx = np.clip(np.searchsorted(distance_m, grid_m, side="right") - 1, 0, len(values) - 1)
        return values[idx]
    return np.interp(grid_m, distance_m, values.astype(np.float64))


def interpolation_error_s(distance_m: np.ndarray, time_s: np.ndarray, grid_m: np.ndarray) -> float:
    """Largest gap [s] between linear and PCHIP interpolation of time over distance on the grid."""
    from scipy.interpolate import PchipInterpolator

    keep = np.concatenate([[True], np.diff(distance_m) > 1e-9])
    d, t = distance_m[keep], time_s[keep]
    inside = (grid_m >= d[0]) & (grid_m <= d[-1])
    if len(d) < 3 or not inside.any():
        return 0.0
    g = grid_m[inside]
    return float(np.max(np.abs(np.interp(g, d, t) - PchipInterpolator(d, t)(g))))


#: a step between two recorded samples longer than this many ticks has ticks missing in it
GAP_TICKS = 1.5


def sample_gaps_m(distance_m: np.ndarray, time_s: np.ndarray, grid_m: np.ndarray, tick_s: float) -> np.ndarray:
    """Per grid point: the distance [m] between the recorded samples of a stretch with ticks
    missing (dropped records: the step in physics time is over :data:`GAP_TICKS` ticks) that
    the point's value is interpolated from -- the grid points inside the stretch and the one
    on either side of it -- else 0. An event found there (a brake onset, say) is known only to
    be somewhere in that stretch; with every tick recorded its place is within one tick's
    travel, which the driver's own scatter already covers."""
    d, t, grid = (np.asarray(x, np.float64) for x in (distance_m, time_s, grid_m))
    out = np.zeros(len(grid))
    if len(d) < 2 or not len(grid):
        return out
    for k in np.flatnonzero(np.diff(t) > GAP_TICKS * tick_s):
        lo = max(int(np.searchsorted(grid, d[k], "left")) - 1, 0)
        hi = int(np.searchsorted(grid, d[k + 1], "right")) + 1
        out[lo:hi] = np.maximum(out[lo:hi], d[k + 1] - d[k])
    return out


@dataclass
class Trace:
    """One lap resampled on a distance grid.

    ``distance_m`` is the grid [m], ``time_s`` the time since the lap's start line [s] at each
    point, ``channels`` each resampled channel (units as in the file: ``Speed`` m/s, pedals
    0-1, ``SteeringWheelAngle`` rad). Every value on the grid is interpolated.
    """

    session_id: str
    lap_index: int
    length_m: float
    distance_m: np.ndarray
    time_s: np.ndarray
    channels: dict[str, np.ndarray] = field(default_factory=dict)
    lap_time_s: float | None = None
    iracing_time_s: float | None = None
    complete: bool = True
    interp_error_s: float = 0.0
    distance_source: str = "LapDistPct"
    #: the first part of the next lap (distances past the line, time since this lap's start)
    overrun: Trace | None = None
    #: per grid point: how far apart the recorded samples around it are where ticks are
    #: missing between them [m], else 0 (:func:`sample_gaps_m`); None: not known
    gap_m: np.ndarray | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        if name == "distance_m":
            return self.distance_m
        if name == "time_s":
            return self.time_s
        if name not in self.channels:
            raise MissingChannel(f"session {self.session_id} lap_index {self.lap_index}", name)
        return self.channels[name]

    def __contains__(self, name: str) -> bool:
        return name in self.channels or name in ("distance_m", "time_s")

    def time_at(self, distance_m: np.ndarray | float) -> np.ndarray:
        """Time since the start line [s] at any distance [m] (linear between grid points)."""
        return np.interp(distance_m, self.distance_m, self.time_s)

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame({"distance_m": self.distance_m, "time_s": self.time_s, **self.channels})
        df.attrs.update({"session_id": self.session_id, "lap_index": self.lap_index,
                         "track_length_m": self.length_m, "lap_time_s": self.lap_time_s,
                         "interpolated": True})
        return df


@dataclass
class Delta:
    """Delta time of a lap against a reference on the reference's grid.

    ``delta_s`` > 0 means the lap is behind the reference at that distance.
    """

    distance_m: np.ndarray
    delta_s: np.ndarray
    lap_time_s: float | None
    ref_time_s: float | None
    closure_s: float | None  #: delta at the line minus our lap-time difference
    closure_iracing_s: float | None  #: delta at the line minus iRacing's LapLastLapTime difference
    alignment_error_s: float  #: sum of the two laps' interpolation error estimates

    @property
    def at_line_s(self) -> float:
        return float(self.delta_s[-1])

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"distance_m": self.distance_m, "delta_s": self.delta_s})

    def summary(self) -> dict[str, float | None]:
        return {"lap_time_s": self.lap_time_s, "ref_time_s": self.ref_time_s,
                "delta_at_line_s": self.at_line_s, "closure_s": self.closure_s,
                "closure_iracing_s": self.closure_iracing_s, "alignment_error_s": self.alignment_error_s}


def compute_delta(lap: Trace, ref: Trace) -> Delta:
    """Delta time [s] of ``lap`` against ``ref`` at every grid point of ``ref``.

    Laps from sessions whose measured track lengths differ slightly are aligned by the
    fraction of the lap (each lap's distance scaled to the reference's length).
    """
    scale = lap.length_m / ref.length_m
    grid = ref.distance_m
    x = grid * scale
    if lap.complete:  # both ends are the line: rounding of the scale must not leave the lap
        x = np.clip(x, lap.distance_m[0], lap.distance_m[-1])
    t_lap = np.interp(x, lap.distance_m, lap.time_s, left=np.nan, right=np.nan)
    delta = t_lap - ref.time_s
    closure = closure_ir = None
    if lap.complete and ref.complete and lap.lap_time_s is not None and ref.lap_time_s is not None:
        closure = float(delta[-1] - (lap.lap_time_s - ref.lap_time_s))
        if lap.iracing_time_s is not None and ref.iracing_time_s is not None:
            closure_ir = float(delta[-1] - (lap.iracing_time_s - ref.iracing_time_s))
    return Delta(grid, delta, lap.lap_time_s, ref.lap_time_s, closure, closure_ir,
                 float(lap.interp_error_s + ref.interp_error_s))


def segment_times(trace: Trace, bounds_m: np.ndarray) -> np.ndarray:
    """Time [s] spent between consecutive distances in ``bounds_m`` (interpolated on the grid)."""
    return np.diff(trace.time_at(np.asarray(bounds_m, dtype=np.float64)))
