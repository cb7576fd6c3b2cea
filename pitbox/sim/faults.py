"""Fault specs ``LAP:CORNER:FAULT:SIZE``, e.g. ``4:T3:brake_early:15``.

The fault words are the ones analysis and coaching report, so they are defined once here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pitbox.sim.errors import SimError

#: fault -> (unit, largest size accepted, what it means)
FAULTS: dict[str, tuple[str, float, str]] = {
    "brake_early": ("m", 120.0, "starts braking SIZE metres before the usual point and rolls to the corner at its minimum speed"),
    "brake_late": ("m", 60.0, "starts braking SIZE metres after the usual point, overshoots and runs wide"),
    "low_min_speed": ("km/h", 40.0, "takes the corner's slowest part SIZE km/h slower than the usual minimum speed"),
    "late_throttle": ("m", 150.0, "holds the minimum speed SIZE metres longer before picking up the throttle"),
    "coasting": ("s", 3.0, "after releasing the brake, SIZE seconds with neither throttle nor brake"),
    "lockup": ("s", 2.0, "locks a front wheel for SIZE seconds early in the braking zone, then overshoots"),
}
#: Faults that act on the braking zone and need a corner with braking.
BRAKING_FAULTS = ("brake_early", "brake_late", "lockup")


@dataclass(frozen=True)
class Fault:
    """One injected fault: on ``lap`` (the ``Lap`` channel's number), in ``corner``."""

    lap: int
    corner: str
    fault: str
    size: float

    @property
    def unit(self) -> str:
        return FAULTS[self.fault][0]

    @property
    def spec(self) -> str:
        return f"{self.lap}:{self.corner}:{self.fault}:{self.size:g}"


def parse_fault(spec: str | Fault) -> Fault:
    """Parse ``LAP:CORNER:FAULT:SIZE``; the corner is checked later against the track."""
    if isinstance(spec, Fault):
        return _check(spec, spec.spec)
    parts = str(spec).strip().split(":")
    if len(parts) != 4:
        raise SimError(f"fault {spec!r}: expected LAP:CORNER:FAULT:SIZE, e.g. 4:T3:brake_early:15")
    lap_s, corner, fault, size_s = (p.strip() for p in parts)
    try:
        lap = int(lap_s)
    except ValueError:
        raise SimError(f"fault {spec!r}: LAP must be a whole number, found {lap_s!r}") from None
    try:
        size = float(size_s)
    except ValueError:
        raise SimError(f"fault {spec!r}: SIZE must be a number, found {size_s!r}") from None
    return _check(Fault(lap, corner, fault.lower(), size), spec)


def _check(f: Fault, spec: object) -> Fault:
    if f.fault not in FAULTS:
        raise SimError(f"fault {spec!r}: unknown fault {f.fault!r}; expected one of {', '.join(FAULTS)}")
    unit, largest, _ = FAULTS[f.fault]
    if not 0 < f.size <= largest:
        raise SimError(f"fault {spec!r}: {f.fault} size must be in (0, {largest:g}] {unit}, found {f.size:g}")
    if not f.corner:
        raise SimError(f"fault {spec!r}: CORNER is empty")
    return f


def parse_faults(specs: Iterable[str | Fault] | None) -> list[Fault]:
    """Parse specs; a string may hold several separated by commas or spaces."""
    out: list[Fault] = []
    for spec in specs or ():
        if isinstance(spec, Fault):
            out.append(parse_fault(spec))
            continue
        for part in str(spec).replace(",", " ").split():
            out.append(parse_fault(part))
    return out


def validate_faults(faults: Sequence[Fault], laps: int, corners: Sequence[str], braking: dict[str, bool],
                    track: str) -> list[Fault]:
    """Check laps and corners against the session; normalise corner names to the track's spelling."""
    by_lower = {c.lower(): c for c in corners}
    seen: set[tuple[int, str, str]] = set()
    out = []
    for f in faults:
        if not 1 <= f.lap <= laps:
            raise SimError(f"fault {f.spec!r}: LAP must be a timed lap 1..{laps} of this session, found {f.lap}")
        name = by_lower.get(f.corner.lower())
        if name is None:
            raise SimError(f"fault {f.spec!r}: track {track} has no corner {f.corner!r}; corners are {', '.join(corners)}")
        if f.fault in BRAKING_FAULTS and not braking.get(name, True):
            raise SimError(f"fault {f.spec!r}: corner {name} of {track} is taken without braking; "
                           f"{f.fault} needs a braking corner")
        key = (f.lap, name, f.fault)
        if key in seen:
            raise SimError(f"fault {f.spec!r}: the same fault is given twice for lap {f.lap} corner {name}")
        seen.add(key)
        out.append(Fault(f.lap, name, f.fault, f.size))
    return out
