"""The reference lap the live delta is measured against, and its ``reference`` message.

A :class:`ReferenceLap` holds the reference on the analysis' 1 m distance grid (time since
the line [s] and the traces) plus its corners and map; the after-lap analysis builds it
(:mod:`pitbox.livecoach.analyst`), the core only reads it. Plain data: it crosses the
process boundary by pickling.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("session_best", "all_time_best", "optimal", "lap")
#: Channels the ``reference`` message carries (besides ``time_s``).
MESSAGE_CHANNELS = ("Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear")
MESSAGE_STEP_M = 5.0


@dataclass
class ReferenceLap:
    """A reference lap. Distances [m] from the line along the reference's own length;
    ``time_s`` [s] since its start line at each grid point; ``channels`` on the same grid
    (``Speed`` m/s, pedals 0-1, ``SteeringWheelAngle`` rad, ``Gear``); ``corners`` as dicts
    (``name``, ``start_m``, ``apex_m``, ``end_m``, ``seg_start_m``, ``seg_end_m``);
    ``map_x_m``/``map_y_m`` on the grid (None when no map is known) and its source."""

    kind: str
    label: str
    session: str | None
    lap_index: int | None
    time_s: float
    length_m: float
    distance_m: np.ndarray
    time_at_m: np.ndarray
    channels: dict[str, np.ndarray] = field(default_factory=dict)
    corners: list[dict[str, Any]] = field(default_factory=list)
    map_x_m: np.ndarray | None = None
    map_y_m: np.ndarray | None = None
    map_source: str | None = None
    coach_reference: str | None = None  #: the SESSION:LAP the coaching engine uses with it

    def __post_init__(self) -> None:
        self._d = [float(x) for x in self.distance_m]
        self._t = [float(x) for x in self.time_at_m]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_d", None)
        state.pop("_t", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def time_at(self, distance_m: float) -> float:
        """Time since the line [s] at a distance [m] (linear between grid points, clamped)."""
        d, t = self._d, self._t
        i = bisect.bisect_right(d, distance_m)
        if i <= 0:
            return t[0]
        if i >= len(d):
            return t[-1]
        d0, d1 = d[i - 1], d[i]
        return t[i - 1] + (t[i] - t[i - 1]) * (distance_m - d0) / (d1 - d0) if d1 > d0 else t[i]

    def summary(self) -> dict[str, Any]:
        """What the ``coach`` message says about the reference."""
        return {"kind": self.kind, "label": self.label, "time_s": self.time_s}

    def message(self, step_m: float = MESSAGE_STEP_M) -> dict[str, Any]:
        """The ``reference`` message (contract A): traces on a ``step_m`` grid."""
        grid = np.arange(0.0, self.length_m, step_m)
        grid = np.concatenate([grid, [self.length_m]]) if self.length_m - grid[-1] > 1e-6 else grid
        d = np.asarray(self.distance_m, dtype=np.float64)
        chans = {"time_s": _r(np.interp(grid, d, self.time_at_m), 4)}
        for name in MESSAGE_CHANNELS:
            if name in self.channels:
                v = np.asarray(self.channels[name], dtype=np.float64)
                if name == "Gear":  # discrete: the gear at or before each point
                    idx = np.clip(np.searchsorted(d, grid, side="right") - 1, 0, len(v) - 1)
                    chans[name] = [int(x) for x in v[idx]]
                else:
                    chans[name] = _r(np.interp(grid, d, v), 4)
        mp = None
        if self.map_x_m is not None and self.map_y_m is not None:
            mp = {"x": _r(np.interp(grid, d, self.map_x_m), 2), "y": _r(np.interp(grid, d, self.map_y_m), 2),
                  "source": self.map_source}
        corners = [{k: (round(float(v), 2) if isinstance(v, (float, np.floating)) else v) for k, v in c.items()}
                   for c in self.corners]
        return {"v": 1, "type": "reference", "kind": self.kind, "label": self.label, "session": self.session,
                "lap_index": self.lap_index, "time_s": round(float(self.time_s), 4),
                "length_m": round(float(self.length_m), 3), "step_m": step_m, "distance_m": _r(grid, 2),
                "channels": chans, "map": mp, "corners": corners, "coach_reference": self.coach_reference}


def _r(a: np.ndarray, digits: int) -> list[float | None]:
    return [None if not math.isfinite(x) else round(float(x), digits) for x in np.asarray(a, dtype=np.float64)]


def parse_kind(kind: Any, lap: Any = None) -> tuple[str, str | None]:
    """A checked ``(kind, SESSION:LAP or None)``; raises ValueError naming what was expected."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "lap":
        if not isinstance(lap, str) or ":" not in lap:
            raise ValueError(f"lap: expected SESSION:LAP (LAP is the lap table's lap_index) with kind 'lap', got {lap!r}")
        sess, _, idx = lap.rpartition(":")
        if not idx.strip().isdigit():
            raise ValueError(f"lap: {lap!r}: LAP must be an integer lap_index")
        return kind, lap
    if lap is not None:
        raise ValueError(f"lap: only kind 'lap' takes SESSION:LAP, got kind {kind!r} with {lap!r}")
    return kind, None
