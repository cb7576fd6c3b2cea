"""Tyres: the last pit-stall snapshot and its age, never a stale value shown as live.

iRacing updates the tyre temperatures, pressures and wear in live memory only while the car
sits in its pit stall (``PlayerCarInPitStall``); on track the memory keeps whatever it last
held. The coach therefore copies the tyre channels only while the car is in the stall and
reports that copy with its age (0 while still in the stall).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TyreSnapshot:
    values: dict[str, float] = field(default_factory=dict)
    session_time_s: float | None = None
    lap: int | None = None
    in_stall: bool = False

    def take(self, values: dict[str, Any], session_time_s: float, lap: int | None) -> None:
        """The car is in its stall: these are current values."""
        self.values = {k: round(float(v), 3) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        self.session_time_s = session_time_s
        self.lap = lap
        self.in_stall = True

    def left_stall(self) -> None:
        self.in_stall = False

    def reset(self) -> None:
        self.values = {}
        self.session_time_s = None
        self.lap = None
        self.in_stall = False

    def state(self, now_s: float | None) -> dict[str, Any]:
        """The ``tyres`` block of the ``coach`` message: ``snapshot`` (channel -> value, units
        as iRacing's: °C, kPa, wear fraction), its ``age_s`` and the ``lap`` it was taken on."""
        if self.session_time_s is None or not self.values:
            return {"snapshot": None, "age_s": None, "lap": None, "in_stall": False}
        age = 0.0 if self.in_stall or now_s is None else max(now_s - self.session_time_s, 0.0)
        return {"snapshot": dict(self.values), "age_s": round(age, 2), "lap": self.lap, "in_stall": self.in_stall}
