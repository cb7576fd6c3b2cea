"""A practice session on the distance grid: out lap, timed laps, in lap, with noise and faults.

The session is driven twice with the same noise: once without the faults (the reference
for their cost) and once with them. Everything here works on the session distance grid
(index ``i`` = ``i * ds`` metres from the start/finish line of lap 0); turning the result
into 60 Hz channels is :mod:`pitbox.sim.telemetry`'s job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from pitbox.sim.car import (
    COAST,
    IGNORE_BOUND,
    LOCKUP,
    Car,
    ProfileInputs,
    Zone,
    backward_pass,
    cell_times,
    forward_pass,
    lateral_cap,
)
from pitbox.sim.driver import CornerPlan, DriverSpec, LapGrid, corner_plan
from pitbox.sim.faults import Fault
from pitbox.sim.tracks import Track

log = logging.getLogger(__name__)

#: Excess speed (m/s) over the car's lateral grip limit that counts as running wide.
RUN_WIDE_TOL_MS = 0.05
#: Overshoot after braking late or locking up: the corner's minimum speed comes this many
#: metres late (exit held as much longer) and is lower by OVERSHOOT_KMH_PER_M per metre.
OVERSHOOT_KMH_PER_M = 0.3
OVERSHOOT_MAX_KMH = 10.0
OVERSHOOT_EXIT_FACTOR = 1.5
#: A lock-up of 1 s overshoots the corner by this many metres.
LOCKUP_OVERSHOOT_M_PER_S = 20.0
LOCK_DECEL_FRAC = 0.65


@dataclass
class SessionLayout:
    """Where the session runs on the grid: from the pit box on lap 0 to the box after the in lap."""

    track: Track
    car: Car
    driver: DriverSpec
    grid: LapGrid
    plans: list[CornerPlan]
    laps: int
    in_lap: bool
    i0: int
    i_end: int

    @classmethod
    def build(cls, track: Track, car: Car, driver: DriverSpec, laps: int, in_lap: bool = True) -> SessionLayout:
        grid = LapGrid.of(track)
        plans = corner_plan(track, car, driver, grid)
        n = grid.n
        i0 = int(round(track.pit.box_pct * n))
        i_end = (laps + 2) * n + i0 if in_lap else (laps + 1) * n + plans[0].seg_start
        return cls(track, car, driver, grid, plans, laps, in_lap, i0, i_end)

    @property
    def n_points(self) -> int:
        return self.i_end - self.i0 + 1

    @property
    def index(self) -> np.ndarray:
        """Absolute grid index of every session point."""
        return np.arange(self.i0, self.i_end + 1)

    def pit_mask(self) -> np.ndarray:
        """Points on pit road (out of the box to the pit exit; pit entry to the box)."""
        n, pit = self.grid.n, self.track.pit
        i = self.index
        mask = i <= int(round(pit.exit_pct * n))
        if self.in_lap:
            mask |= i >= (self.laps + 1) * n + int(round(pit.entry_pct * n))
        return mask

    def corner_index(self, lap: int, p: CornerPlan, x: int) -> int:
        """Absolute index of lap position ``x`` of corner ``p`` on ``lap`` (segments may cross the line)."""
        return lap * self.grid.n + x + (self.grid.n if x < p.seg_start else 0)

    def segment(self, lap: int, p: CornerPlan) -> tuple[int, int]:
        return self.corner_index(lap, p, p.seg_start), self.corner_index(lap, p, p.seg_end) + (
            self.grid.n if p.seg_end == p.seg_start else 0)


@dataclass
class Noise:
    """Per timed lap (row = lap number) and corner (column) driver errors."""

    brake_m: np.ndarray       #: brake point shift, positive = earlier
    min_speed_kmh: np.ndarray
    throttle_m: np.ndarray    #: throttle pickup offset, positive = later

    @classmethod
    def draw(cls, rng: np.random.Generator, laps: int, corners: int, driver: DriverSpec) -> Noise:
        shape = (laps + 2, corners)
        return cls(rng.normal(0.0, driver.brake_point_sigma_m, shape),
                   rng.normal(0.0, driver.min_speed_sigma_kmh, shape),
                   rng.normal(0.0, driver.throttle_pickup_sigma_m, shape))

    @classmethod
    def zero(cls, laps: int, corners: int) -> Noise:
        z = np.zeros((laps + 2, corners))
        return cls(z, z.copy(), z.copy())


@dataclass
class Drive:
    """One drive through the session: speed at every grid point and what forced it."""

    speed_ms: np.ndarray
    bound_ms: np.ndarray
    modes: np.ndarray
    time_s: np.ndarray          #: time since leaving the box at every grid point
    wide: np.ndarray            #: above the car's lateral grip: running wide (LatAccel stays at the limit)
    hold_ms: dict[tuple[int, int], float] = field(default_factory=dict)
    wide_m: dict[tuple[int, int], float] = field(default_factory=dict)
    delay_m: dict[tuple[int, int], float] = field(default_factory=dict)


def _base_inputs(lay: SessionLayout) -> tuple[ProfileInputs, np.ndarray]:
    """Grid arrays without the driver's corner-by-corner errors; also the lap number of each point."""
    n, drv, i = lay.grid.n, lay.driver, lay.index
    lap = i // n
    pos = i % n
    kap = lay.grid.curvature[pos]
    grade = lay.grid.grade[pos]
    lat = np.full(len(i), drv.lateral_skill)
    brake = np.full(len(i), drv.braking_skill)
    drive = np.ones(len(i))
    for mask, pace in ((lap == 0, drv.out_lap_pace), (lap > lay.laps, drv.in_lap_pace)):
        lat[mask], brake[mask], drive[mask] = pace
    pit = lay.pit_mask()
    drive[pit] = np.minimum(drive[pit], drv.pit_drive_scale)
    cap = np.full(len(i), np.inf)
    cap[pit] = lay.track.pit.speed_limit_kmh / 3.6
    p = ProfileInputs(lay.grid.ds_m, cap, kap, grade, lat, brake, drive, 0.0, 0.0 if lay.in_lap else 1e3)
    return p, lap


def _set(arr: np.ndarray, lay: SessionLayout, a: int, b: int, value: float, how: str = "min") -> None:
    """Apply ``value`` to absolute indices [a, b] clipped to the session."""
    a, b = max(a - lay.i0, 0), min(b - lay.i0, lay.n_points - 1)
    if b < a:
        return
    if how == "min":
        np.minimum(arr[a:b + 1], value, out=arr[a:b + 1])
    else:
        arr[a:b + 1] = value


@dataclass
class CornerMods:
    """What the driver does differently in one corner on one lap (noise plus faults)."""

    early_m: float = 0.0
    late_m: float = 0.0
    brake_noise_m: float = 0.0   #: noise: braking starts this much earlier with less pressure (or later, harder)
    min_speed_kmh: float = 0.0   #: noise on the minimum speed
    low_min_kmh: float = 0.0     #: fault: slower minimum speed
    hold_m: float = 0.0
    coast_s: float = 0.0
    lockup_s: float = 0.0
    delay_m: float = 0.0         #: overshoot (m) after a late brake or a lock-up


def corner_mods(lay: SessionLayout, noise: Noise, faults: list[Fault], lap: int, k: int) -> CornerMods:
    p = lay.plans[k]
    m = CornerMods(min_speed_kmh=float(noise.min_speed_kmh[lap, k]),
                   brake_noise_m=float(noise.brake_m[lap, k]) if p.braking else 0.0)
    shift = 0.0
    hold = lay.driver.throttle_hold_m + float(noise.throttle_m[lap, k])
    for f in faults:
        if f.lap != lap or f.corner != p.name:
            continue
        if f.fault == "brake_early":
            shift += f.size
        elif f.fault == "brake_late":
            shift -= f.size
        elif f.fault == "low_min_speed":
            m.low_min_kmh += f.size
        elif f.fault == "late_throttle":
            hold += f.size
        elif f.fault == "coasting":
            m.coast_s += f.size
        elif f.fault == "lockup":
            m.lockup_s += f.size
    m.early_m, m.late_m = max(shift, 0.0), max(-shift, 0.0)
    m.hold_m = max(hold, 0.0)
    m.delay_m = m.late_m + LOCKUP_OVERSHOOT_M_PER_S * m.lockup_s
    return m


def _brake_onset(lay: SessionLayout, ref: Drive, seg_a: int, min0: int) -> int | None:
    """Relative index of the first cell where ``ref`` slows down between ``seg_a`` and ``min0``."""
    a, b = max(seg_a - lay.i0, 0), min(min0 - lay.i0, lay.n_points - 1)
    falling = np.nonzero(np.diff(ref.speed_ms[a:b + 1]) < -1e-9)[0]
    return a + int(falling[0]) if len(falling) else None


def _apply_corner(lay: SessionLayout, p_in: ProfileInputs, lap: int, k: int, m: CornerMods,
                  tmpl: Template | None, ref: Drive | None = None) -> float:
    """Write one corner's caps, grip and zones into ``p_in``; returns the hold speed used.

    ``tmpl`` (the session driven with grip noise only) gives the minimum speed to hold and
    the braking curve that an early brake shifts forward; ``ref`` (the drive without faults)
    the brake point that a late brake moves.
    """
    plan, ds = lay.plans[k], lay.grid.ds_m
    idx = lambda x: lay.corner_index(lap, plan, x)  # noqa: E731
    seg_a, seg_b = lay.segment(lap, plan)
    v_ref = plan.v_min_ms
    scale = ((v_ref + m.min_speed_kmh / 3.6) / v_ref) ** 2 if v_ref > 0 else 1.0
    lat = float(np.clip(lay.driver.lateral_skill * scale, 0.6, 1.0))
    _set(p_in.lat_scale, lay, seg_a, seg_b, lat, how="set")
    min0, min1 = idx(plan.min0), idx(plan.min1)
    if m.brake_noise_m and plan.braking:
        zone_m = max((plan.min0 - plan.brake) % lay.grid.n * ds, 10.0)
        scale = lay.driver.braking_skill * zone_m / (zone_m + m.brake_noise_m)
        _set(p_in.brake_scale, lay, seg_a, min1, float(np.clip(scale, 0.5, 1.0)), how="set")
    a, b = min0 - lay.i0, min1 - lay.i0
    lat_cap = lateral_cap(p_in.curvature_1pm[max(a, 0):b + 1], lay.car, lat)
    v_hold = tmpl.holds[(lap, k)] if tmpl is not None else float(lat_cap.min()) if len(lat_cap) else v_ref
    v_low = v_hold - (m.low_min_kmh + min(OVERSHOOT_KMH_PER_M * m.delay_m, OVERSHOOT_MAX_KMH)) / 3.6
    if v_low < v_hold:
        _set(p_in.cap_ms, lay, min0 - 2, min1 + 2, max(v_low, 3.0))
    if m.early_m > 0:
        _early_cap(lay, p_in, seg_a, min0, m.early_m, v_hold, tmpl)
    if m.late_m >= ds:
        # keep accelerating from where braking would start until the fault-free brake point + late_m
        onset = _brake_onset(lay, ref, seg_a, min0) if ref is not None else None
        until = onset + int(round(m.late_m / ds)) if onset is not None else -1
        p_in.zones.append(Zone(IGNORE_BOUND, seg_a - lay.i0, length=int(round(m.late_m / ds)) + 1,
                               window_end=min1 - lay.i0, trigger=True, until=until))
    hold_pts = int(round((m.hold_m + OVERSHOOT_EXIT_FACTOR * m.delay_m) / ds))
    if hold_pts > 0:
        _set(p_in.cap_ms, lay, min1, min1 + hold_pts, max(min(v_hold, v_low), 3.0))
    if m.coast_s > 0:
        p_in.zones.append(Zone(COAST, min0 - lay.i0, duration_s=m.coast_s))
    if m.lockup_s > 0:
        p_in.zones.append(Zone(LOCKUP, seg_a - lay.i0, duration_s=m.lockup_s, window_end=min1 - lay.i0,
                               lock_decel_frac=LOCK_DECEL_FRAC, trigger=True))
    return v_hold


def _early_cap(lay: SessionLayout, p_in: ProfileInputs, seg_a: int, min0: int, early_m: float, v_hold: float,
               tmpl: Template | None) -> None:
    """Brake ``early_m`` metres before the template's brake point with the same speed drop
    pattern (its braking curve moved forward and down), then hold the minimum speed."""
    a, b = max(seg_a - lay.i0, 0), min(min0 - lay.i0, lay.n_points - 1)
    if b <= a:
        return
    shift = early_m / lay.grid.ds_m
    j = np.arange(a, b + 1, dtype=float)
    if tmpl is None:
        cap = np.where(j >= b - shift, v_hold, np.inf)
    else:
        v0 = tmpl.speed_ms
        falling = np.nonzero(np.diff(v0[a:b + 1]) < -1e-9)[0]
        onset = a + (int(falling[0]) if len(falling) else b - a)
        grid = np.arange(len(v0))
        drop = float(v0[onset] - np.interp(onset - shift, grid, v0))
        curve = np.maximum(np.interp(j + shift, grid, v0) - drop, v_hold)
        cap = np.where(j + shift >= b, v_hold, np.where(j >= onset - shift, curve, np.inf))
    np.minimum(p_in.cap_ms[a:b + 1], cap, out=p_in.cap_ms[a:b + 1])


def build_inputs(lay: SessionLayout, noise: Noise, faults: list[Fault], tmpl: Template | None = None,
                 ref: Drive | None = None) -> tuple[ProfileInputs, dict]:
    """Profile inputs for the whole session (``tmpl``, ``ref``: see :func:`_apply_corner`)."""
    p_in, _ = _base_inputs(lay)
    p_in.recover_scale = 1.0
    used: dict[tuple[int, int], float] = {}
    mods = {}
    for lap in range(1, lay.laps + 1):
        for k in range(len(lay.plans)):
            m = corner_mods(lay, noise, faults, lap, k)
            used[(lap, k)] = _apply_corner(lay, p_in, lap, k, m, tmpl, ref)
            mods[(lap, k)] = m
    p_in.cap_ms = np.minimum(p_in.cap_ms, lateral_cap(p_in.curvature_1pm, lay.car, p_in.lat_scale))
    p_in.zones.sort(key=lambda z: z.start)
    return p_in, {"holds": used, "mods": mods}


def _run(lay: SessionLayout, p_in: ProfileInputs) -> Drive:
    """Drive once (backward pass, then forward pass) and time it."""
    bound = backward_pass(p_in, lay.car)
    v, modes = forward_pass(p_in, lay.car, bound)
    t = np.concatenate([[0.0], np.cumsum(cell_times(v, lay.grid.ds_m))])
    cap = lateral_cap(p_in.curvature_1pm, lay.car, 1.0)
    return Drive(v, bound, modes, t, wide=v > cap + RUN_WIDE_TOL_MS)


def _run_wide(lay: SessionLayout, d: Drive) -> dict[tuple[int, int], float]:
    """Metres of each corner segment driven above the car's lateral grip (running wide)."""
    wide = d.wide
    out = {}
    for lap in range(1, lay.laps + 1):
        for k, p in enumerate(lay.plans):
            a, b = (max(min(x - lay.i0, lay.n_points - 1), 0) for x in lay.segment(lap, p))
            count = int(np.count_nonzero(wide[a:b]))
            if count:
                out[(lap, k)] = count * lay.grid.ds_m
    return out


def drive_session(lay: SessionLayout, noise: Noise, faults: list[Fault], tmpl: Template | None = None,
                  ref: Drive | None = None) -> Drive:
    """Drive the session with the driver's noise and the given faults (``ref``: the same
    session without faults, whose brake points late brakes are measured from)."""
    p_in, info = build_inputs(lay, noise, faults, tmpl, ref)
    d = _run(lay, p_in)
    d.hold_ms = info["holds"]
    d.wide_m = _run_wide(lay, d)
    d.delay_m = {key: m.delay_m for key, m in info["mods"].items() if m.delay_m > 0}
    return d


@dataclass
class Template:
    """The session driven with grip noise only: each corner's minimum speed per lap (``holds``)
    and the speed profile whose braking curves early brakes shift forward."""

    holds: dict[tuple[int, int], float]
    speed_ms: np.ndarray


def template(lay: SessionLayout, noise: Noise) -> Template:
    """Drive with the minimum-speed noise only (no brake-point or throttle errors, no faults)."""
    zero = np.zeros_like(noise.brake_m)
    bare = Noise(zero, noise.min_speed_kmh, np.full_like(noise.throttle_m, -1e9))
    p_in, _ = build_inputs(lay, bare, [])
    d = _run(lay, p_in)
    holds = {}
    for lap in range(1, lay.laps + 1):
        for k, p in enumerate(lay.plans):
            a = lay.corner_index(lap, p, p.min0) - lay.i0
            b = lay.corner_index(lap, p, p.min1) - lay.i0
            holds[(lap, k)] = float(d.speed_ms[a:b + 1].min())
    return Template(holds, d.speed_ms)


def reference_lap_time(lay: SessionLayout) -> float:
    """Noise-free, fault-free lap time of the driver (a flying lap)."""
    from pitbox.sim.car import periodic_profile

    g = lay.grid
    v = periodic_profile(g.curvature, g.grade, g.ds_m, lay.car, lay.driver.lateral_skill, lay.driver.braking_skill)
    return float(cell_times(v, g.ds_m).sum())


def min_time_lap(track: Track, car: Car, step_m: float = 1.0) -> float:
    """The car's minimum lap time (s) at its full grip and braking limit."""
    from pitbox.sim.car import periodic_profile

    g = LapGrid.of(track, step_m)
    v = periodic_profile(g.curvature, g.grade, g.ds_m, car)
    return float(cell_times(v, g.ds_m).sum())
