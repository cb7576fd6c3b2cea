"""The :class:`Corner` value every corner module passes around (immutable: a step that
changes a corner, such as naming or segmentation, returns new corners)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Corner:
    """One corner. Distances [m] from the start line along the lap."""

    number: int
    name: str
    direction: str  #: "left" or "right"
    start_m: float  #: turn-in (where the curvature ramp extrapolates to zero)
    apex_m: float  #: peak curvature
    end_m: float  #: exit (where the curvature ramp extrapolates to zero)
    angle_deg: float  #: how far the corner turns the car
    seg_start_m: float = float("nan")  #: start of the corner's segment (before its braking zone)
    seg_end_m: float = float("nan")  #: end of its segment (the next segment's start; > length when it wraps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
