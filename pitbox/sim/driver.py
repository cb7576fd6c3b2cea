"""The driver: skill, noise, and the corner plan derived from the car's fastest profile.

The driver follows the car's fastest profile at a set skill (a fraction of the lateral grip
and of the braking limit) and, on every timed lap and corner, with random errors:

* brake point: shifted by N(0, ``brake_point_sigma_m``) metres (earlier = rolls to the
  corner at its minimum speed; later = brakes harder, or overshoots when that is not enough);
* minimum speed: N(0, ``min_speed_sigma_kmh``) km/h through a change of the grip used,
  never above the car's grip limit;
* throttle pickup: holds the minimum speed ``throttle_hold_m`` + N(0, ``throttle_pickup_sigma_m``)
  metres (at least 0) before accelerating.

A corner *segment* runs from ``corner_lead_m`` before the corner's brake point (in the
noise-free profile) to the start of the next corner's segment, so the segments cover the lap
and a fault's cost on the following straight counts at its corner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pitbox.sim.car import Car, periodic_profile
from pitbox.sim.tracks import Track
from pitbox.tracks import CornerFile, CornerRange

#: Speed margin (m/s) that delimits a corner's minimum-speed region.
MIN_REGION_MS = 0.15
#: A later point of the corner at most this much (m/s) above its minimum is a second apex.
LAST_APEX_MS = 0.8
#: A corner whose speed drops less than this (m/s) before its apex is taken without braking.
FLAT_DROP_MS = 0.5


@dataclass(frozen=True)
class DriverSpec:
    """Driver skill and noise. Sigmas are per timed lap and corner."""

    name: str = "Sim Driver"
    user_id: int = 990001
    car_number: str = "7"
    lateral_skill: float = 0.97
    braking_skill: float = 0.94
    throttle_hold_m: float = 4.0
    brake_point_sigma_m: float = 3.0
    min_speed_sigma_kmh: float = 0.6
    throttle_pickup_sigma_m: float = 1.5
    steering_sigma_rad: float = 0.004
    pedal_sigma: float = 0.004
    accel_sigma_ms2: float = 0.04
    #: out lap and in lap: (lateral, braking, drive) scales
    out_lap_pace: tuple[float, float, float] = (0.90, 0.80, 0.90)
    in_lap_pace: tuple[float, float, float] = (0.85, 0.70, 0.75)
    pit_drive_scale: float = 0.40

    def noise_dict(self) -> dict[str, float]:
        return {
            "brake_point_sigma_m": self.brake_point_sigma_m,
            "min_speed_sigma_kmh": self.min_speed_sigma_kmh,
            "throttle_pickup_sigma_m": self.throttle_pickup_sigma_m,
            "throttle_hold_m": self.throttle_hold_m,
            "lateral_skill": self.lateral_skill,
            "braking_skill": self.braking_skill,
            "steering_sigma_rad": self.steering_sigma_rad,
            "pedal_sigma": self.pedal_sigma,
            "accel_sigma_ms2": self.accel_sigma_ms2,
        }


@dataclass(frozen=True)
class CornerPlan:
    """Reference points of one corner on the lap grid (indices 0..n-1, step ``ds``).

    ``seg_start``..``seg_end`` is the corner's segment (``seg_end`` may be below
    ``seg_start`` when it wraps over the line); ``brake`` the brake (or lift) point;
    ``apex`` the minimum-speed point, ``min0``..``min1`` the minimum-speed region;
    ``v_min_ms`` the noise-free minimum speed; ``direction`` +1 left, -1 right.
    """

    name: str
    seg_start: int
    seg_end: int
    brake: int
    min0: int
    apex: int
    min1: int
    v_min_ms: float
    braking: bool
    direction: int


@dataclass(frozen=True)
class LapGrid:
    """The lap on a grid of ``n`` cells of ``ds_m`` metres (``n * ds_m`` = track length)."""

    n: int
    ds_m: float
    curvature: np.ndarray
    grade: np.ndarray

    @classmethod
    def of(cls, track: Track, step_m: float = 1.0) -> LapGrid:
        n = max(10, round(track.length_m / step_m))
        ds = track.length_m / n
        s = np.arange(n) * ds
        return cls(n, ds, track.curvature(s), track.grade_at(s))


def _walk(v: np.ndarray, i: int, step: int, ok, stop: int) -> int:
    while i + step != stop and ok(v[i + step], v[i]):
        i += step
    return i


def corner_plan(track: Track, car: Car, driver: DriverSpec, grid: LapGrid | None = None) -> list[CornerPlan]:
    """Brake points, minimum-speed regions and segments from the driver's noise-free profile."""
    grid = grid or LapGrid.of(track)
    n = grid.n
    v1 = periodic_profile(grid.curvature, grid.grade, grid.ds_m, car, driver.lateral_skill, driver.braking_skill)[:n]
    v = np.tile(v1, 3)  # index n + i is lap position i; walks may cross the line
    raw = []
    prev_end = None
    for c in track.corners:
        a, b = n + int(round(c.start_m / grid.ds_m)), n + int(round(c.end_m / grid.ds_m))
        apex = a + int(np.argmin(v[a:b + 1]))
        vmin = float(v[apex])
        lim = vmin + MIN_REGION_MS
        min0 = _walk(v, apex, -1, lambda nxt, cur, lim=lim: nxt <= lim, a - 1)
        min1 = _walk(v, apex, +1, lambda nxt, cur, lim=lim: nxt <= lim, b + 1)
        # a compound corner (chicane) ends at its last slow point, not its first apex
        slow = np.nonzero(v[min1:b + 1] <= vmin + LAST_APEX_MS)[0]
        if len(slow):
            min1 = _walk(v, min1 + int(slow[-1]), +1, lambda nxt, cur: nxt <= cur + 1e-9, b + 1)
        floor = prev_end if prev_end is not None and prev_end < min0 else min0 - n // 4
        brake = _walk(v, min0, -1, lambda nxt, cur: nxt >= cur - 1e-9, floor)
        braking = bool(v[brake] - vmin > FLAT_DROP_MS)
        if not braking:
            brake = a
        direction = int(np.sign(grid.curvature[apex % n])) or 1
        raw.append((c.name, brake, min0, apex, min1, vmin, braking, direction))
        prev_end = min1
    lead = int(round(track.corner_lead_m / grid.ds_m))
    plans = []
    for k, (name, brake, min0, apex, min1, vmin, braking, direction) in enumerate(raw):
        prev_min1 = raw[k - 1][4] - (n if k == 0 else 0)
        start = max(brake - lead, (prev_min1 + brake) // 2)
        plans.append([name, start, brake, min0, apex, min1, vmin, braking, direction])
    out = []
    for k, p in enumerate(plans):
        nxt = plans[(k + 1) % len(plans)][1]
        out.append(CornerPlan(p[0], p[1] % n, nxt % n, p[2] % n, p[3] % n, p[4] % n, p[5] % n, p[6], p[7], p[8]))
    return out


def plan_corner_file(track: Track, plans: list[CornerPlan], grid: LapGrid) -> CornerFile:
    """The corner file of a simulated track: segments covering the whole lap."""
    n = grid.n
    corners = [CornerRange(p.name, p.seg_start / n, p.seg_end / n, p.apex / n, p.brake / n) for p in plans]
    return CornerFile(track.name, track.config, corners, source="simulated", covers_lap=True)


def computed_corner_file(track: Track, car: Car | None = None, driver: DriverSpec | None = None) -> CornerFile:
    """The corner file a simulated track should ship, computed from the driver's profile."""
    grid = LapGrid.of(track)
    return plan_corner_file(track, corner_plan(track, car or Car(), driver or DriverSpec(), grid), grid)


CORNER_FILE_HEADER = """PitBox corner file: corner names by LapDistPct range, keyed by WeekendInfo.TrackName and
TrackConfigName exactly as iRacing writes them. start_pct..end_pct is the corner's segment
(end < start wraps over the line); apex_pct and brake_pct are optional.
Simulated tracks (source: simulated) cover the whole lap: each segment starts corner_lead_m
before the corner's brake point and ends where the next one starts. Regenerate with
  python -c "from pitbox.sim.driver import write_shipped_corner_files; write_shipped_corner_files()"
"""


def write_shipped_corner_files() -> list[str]:
    """Regenerate ``<track>.corners.yaml`` for every shipped simulated track (a maintainer's tool)."""
    from pitbox.sim.tracks import list_tracks, load_track
    from pitbox.tracks import TRACKS_DIR, write_corner_file

    written = []
    for name in list_tracks():
        track = load_track(name)
        write_corner_file(TRACKS_DIR / f"{name}.corners.yaml", computed_corner_file(track), CORNER_FILE_HEADER)
        written.append(name)
    return written
