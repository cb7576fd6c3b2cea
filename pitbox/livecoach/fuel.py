"""Fuel: use per lap, laps left with a range, and fuel to add (I/O free).

Use per lap is ``FuelLevel`` at the start line minus at the finish line, each interpolated
at the line-crossing time (as :func:`pitbox.analysis.fuel_per_lap` does offline), over the
complete laps of the **stint**: laps that touched pit road are left out, and a stint ends
when fuel is added (the level rises).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: A rise of the fuel level by more than this [l] between two ticks is a refuel (new stint).
REFUEL_L = 0.05


@dataclass
class FuelTarget:
    """What "fuel to add" aims at: ``laps`` more laps after the current one, or ``minutes``
    of driving; None of both: the session's own remaining laps or time when iRacing gives
    a finite one (``SessionLapsRemainEx``, ``SessionTimeRemain``)."""

    laps: float | None = None
    minutes: float | None = None


@dataclass
class FuelTracker:
    """Fuel per lap over the current stint [l]."""

    target: FuelTarget = field(default_factory=FuelTarget)
    uses_l: list[float] = field(default_factory=list)  #: per complete, pit-free lap of the stint
    lap_times_s: list[float] = field(default_factory=list)
    level_l: float | None = None

    def tick(self, level_l: float) -> None:
        """A new ``FuelLevel`` sample [l]; a rise starts a new stint."""
        if not math.isfinite(level_l):
            return
        if self.level_l is not None and level_l > self.level_l + REFUEL_L:
            self.uses_l.clear()
        self.level_l = level_l

    def lap(self, used_l: float | None, lap_time_s: float | None) -> None:
        """A complete lap that did not touch pit road: fuel used [l] and its time [s]."""
        if used_l is not None and math.isfinite(used_l) and used_l > 0:
            self.uses_l.append(float(used_l))
        if lap_time_s is not None and math.isfinite(lap_time_s) and lap_time_s > 0:
            self.lap_times_s.append(float(lap_time_s))

    def reset(self) -> None:
        self.uses_l.clear()
        self.lap_times_s.clear()
        self.level_l = None

    @property
    def per_lap_mean3_l(self) -> float | None:
        return self._stats()[0]

    @property
    def per_lap_p65_l(self) -> float | None:
        return self._stats()[1]

    def _stats(self) -> tuple[float | None, float | None, float | None, float | None, float | None]:
        """(mean of the last 3, 65th percentile, min, max of the stint's uses, mean of the
        last 3 lap times), computed once per change of the lap lists."""
        key = (len(self.uses_l), self.uses_l[-1] if self.uses_l else None, len(self.lap_times_s))
        if key != getattr(self, "_key", None):
            u = self.uses_l
            self._cache = (float(np.mean(u[-3:])) if u else None, float(np.percentile(u, 65)) if u else None,
                           min(u) if u else None, max(u) if u else None,
                           float(np.mean(self.lap_times_s[-3:])) if self.lap_times_s else None)
            self._key = key
        return self._cache

    def state(self, lap_fraction: float | None = None, laps_remain: float | None = None,
              time_remain_s: float | None = None) -> dict[str, Any]:
        """The ``fuel`` block of the ``coach`` message. ``lap_fraction``: how much of the
        current lap is driven (0-1); ``laps_remain``/``time_remain_s``: the session's."""
        level = self.level_l
        mean3, p65, lo, hi, lap_s = self._stats()
        out: dict[str, Any] = {"level_l": _r(level), "per_lap_mean3_l": _r(mean3), "per_lap_p65_l": _r(p65),
                               "laps_left": None, "laps_left_min": None, "laps_left_max": None, "to_add_l": None,
                               "stint_laps": len(self.uses_l)}
        if level is None or mean3 is None or mean3 <= 0:
            return out
        out["laps_left"] = _r(level / mean3, 2)
        out["laps_left_min"] = _r(level / hi, 2) if hi else None
        out["laps_left_max"] = _r(level / lo, 2) if lo else None
        out["to_add_l"] = self._to_add(level, p65 or mean3, lap_fraction, laps_remain, time_remain_s, lap_s)
        return out

    def _to_add(self, level: float, per_lap: float, lap_fraction: float | None, laps_remain: float | None,
                time_remain_s: float | None, lap_s: float | None) -> dict[str, Any] | None:
        rest = 1.0 - min(max(lap_fraction or 0.0, 0.0), 1.0)  # of the current lap
        t = self.target
        if t.laps is not None:
            laps, minutes = float(t.laps), None
        elif t.minutes is not None:
            if lap_s is None:
                return None
            laps, minutes = max(t.minutes * 60.0 / lap_s - rest, 0.0), float(t.minutes)
        elif laps_remain is not None and math.isfinite(laps_remain) and 0 <= laps_remain < 10000:
            laps, minutes = float(laps_remain), None
        elif time_remain_s is not None and math.isfinite(time_remain_s) and 0 <= time_remain_s < 86400 and lap_s:
            laps, minutes = max(time_remain_s / lap_s - rest, 0.0), round(time_remain_s / 60.0, 2)
        else:
            return None
        need = (rest + laps) * per_lap
        return {"laps": _r(laps, 2), "minutes": minutes, "l": _r(max(need - level, 0.0), 2)}


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)
