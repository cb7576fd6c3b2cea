"""A quasi-steady-state point-mass car and its speed profile by forward-backward integration.

The car has a friction-circle (g-g ellipse) grip limit that grows with aero downforce, a
braking limit, a power limit through a gearbox (torque curve, ratios, RPM), aero drag,
rolling resistance and engine braking. Units: m, s, kg, N; speeds ``*_ms`` in m/s,
accelerations in m/s^2, curvature in 1/m.

:func:`speed_profile` is the core: given per-point caps and limits on a distance grid it
returns the fastest speed that respects them (backward pass for braking, forward pass for
acceleration). The driver model feeds it caps and *forced zones* (coasting, a lock-up, a
late brake) to drive the way a human would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

G = 9.80665
#: Speed step (m/s) of the drive-force and gear tables.
TABLE_DV = 0.05
TABLE_VMAX = 120.0


@dataclass(frozen=True)
class Car:
    """A GT-class car. ``mu_*`` are tyre friction coefficients; aero coefficients are C*A in m^2."""

    car_path: str = "pitboxsim_gt"
    screen_name: str = "PitBox Sim GT"
    screen_name_short: str = "Sim GT"
    car_id: int = 990100
    mass_kg: float = 1350.0
    mu_lat: float = 1.45
    mu_brake: float = 1.40
    mu_drive: float = 0.80          #: traction limit of the driven (rear) axle, as a fraction of total weight
    cla_m2: float = 1.2              #: downforce coefficient x area
    cda_m2: float = 0.80             #: drag coefficient x area
    air_density: float = 1.18
    crr: float = 0.012
    drive_efficiency: float = 0.90
    wheel_radius_m: float = 0.34
    wheelbase_m: float = 2.60
    track_width_m: float = 1.62
    steering_ratio: float = 13.0     #: steering-wheel angle / road-wheel angle
    understeer_rad_per_ms2: float = 0.0025
    steering_lock_rad: float = 9.42
    gear_ratios: tuple[float, ...] = (3.10, 2.20, 1.72, 1.40, 1.18, 1.00)
    final_drive: float = 3.60
    idle_rpm: float = 1100.0
    redline_rpm: float = 7400.0
    launch_rpm: float = 3000.0
    #: torque curve: (rpm, N*m)
    torque_curve: tuple[tuple[float, float], ...] = (
        (1000, 300), (2000, 420), (3000, 500), (4000, 560), (5000, 585), (6000, 565), (7000, 500), (7400, 450))
    engine_brake_nm: float = 60.0    #: engine-braking torque at 1000 rpm, growing linearly to 2x at redline
    brake_pedal_margin: float = 1.30  #: brake force at Brake=1 / tyre-limited brake force
    abs: bool = False
    fuel_max_l: float = 100.0
    fuel_full_throttle_lps: float = 0.030  #: litres per second at full throttle and redline
    _tables: dict = field(default_factory=dict, compare=False, repr=False)

    # -- aero and resistance ------------------------------------------------------------
    @property
    def k_downforce(self) -> float:
        """Downforce per unit mass per v^2 (1/m): a_down = k v^2."""
        return 0.5 * self.air_density * self.cla_m2 / self.mass_kg

    @property
    def k_drag(self) -> float:
        """Drag deceleration per v^2 (1/m)."""
        return 0.5 * self.air_density * self.cda_m2 / self.mass_kg

    def lat_limit(self, v_ms: np.ndarray | float, scale: float | np.ndarray = 1.0) -> np.ndarray:
        """Largest lateral acceleration (m/s^2) at speed ``v_ms``, grip scaled by ``scale``."""
        v = np.asarray(v_ms, dtype=float)
        return self.mu_lat * scale * (G + self.k_downforce * v * v)

    def brake_limit(self, v_ms: np.ndarray | float) -> np.ndarray:
        """Largest tyre-limited braking deceleration (m/s^2), without drag."""
        v = np.asarray(v_ms, dtype=float)
        return self.mu_brake * (G + self.k_downforce * v * v)

    def resistance(self, v_ms: np.ndarray | float) -> np.ndarray:
        """Drag plus rolling resistance deceleration (m/s^2)."""
        v = np.asarray(v_ms, dtype=float)
        return self.k_drag * v * v + self.crr * G

    # -- engine and gearbox -----------------------------------------------------------------
    def torque(self, rpm: np.ndarray | float) -> np.ndarray:
        rpm_pts, nm = zip(*self.torque_curve, strict=True)
        return np.interp(rpm, rpm_pts, nm)

    def rpm_in_gear(self, v_ms: np.ndarray | float, gear: np.ndarray | int) -> np.ndarray:
        """Engine RPM at road speed ``v_ms`` in ``gear`` (1-based), clutch engaged."""
        ratios = np.asarray(self.gear_ratios)
        g = np.clip(np.asarray(gear), 1, len(ratios))
        return np.asarray(v_ms, dtype=float) * ratios[g - 1] * self.final_drive / self.wheel_radius_m * 60 / (2 * math.pi)

    def _build_tables(self) -> dict:
        v = np.arange(0.0, TABLE_VMAX + TABLE_DV, TABLE_DV)
        forces = np.zeros((len(self.gear_ratios), len(v)))
        for i, ratio in enumerate(self.gear_ratios):
            rpm = self.rpm_in_gear(v, i + 1)
            f = self.torque(np.maximum(rpm, self.launch_rpm)) * ratio * self.final_drive * self.drive_efficiency
            forces[i] = np.where(rpm <= self.redline_rpm, f / self.wheel_radius_m, 0.0)
        gear = np.argmax(forces, axis=0) + 1
        fmax = forces.max(axis=0)
        gear[fmax <= 0] = len(self.gear_ratios)
        return {"v": v, "force": fmax, "gear": gear}

    def _table(self) -> dict:
        if not self._tables:
            self._tables.update(self._build_tables())
        return self._tables

    def drive_force(self, v_ms: np.ndarray | float) -> np.ndarray:
        """Largest drive force at the wheels (N) in the best gear at ``v_ms``."""
        t = self._table()
        return np.interp(v_ms, t["v"], t["force"])

    def gear_for_speed(self, v_ms: np.ndarray | float) -> np.ndarray:
        """The gear the driver uses at ``v_ms``: the one with the most drive force."""
        t = self._table()
        idx = np.clip(np.rint(np.asarray(v_ms, dtype=float) / TABLE_DV).astype(int), 0, len(t["v"]) - 1)
        return t["gear"][idx]

    def engine_brake_force(self, v_ms: np.ndarray | float) -> np.ndarray:
        """Engine-braking force (N, positive) at zero throttle in the driver's gear."""
        v = np.asarray(v_ms, dtype=float)
        gear = self.gear_for_speed(v)
        rpm = np.clip(self.rpm_in_gear(v, gear), self.idle_rpm, self.redline_rpm)
        nm = self.engine_brake_nm * (1 + (rpm - 1000) / (self.redline_rpm - 1000))
        ratios = np.asarray(self.gear_ratios)[gear - 1]
        return np.where(v > 1.0, nm * ratios * self.final_drive / self.wheel_radius_m, 0.0)

    def drive_table(self) -> tuple[list[float], list[float], list[float]]:
        """Per TABLE_DV step: max drive accel (m/s^2, traction-limited), coast decel (m/s^2, engine
        braking + resistance, positive), tyre brake decel (m/s^2, positive) — as lists for loops."""
        t = self._table()
        v = t["v"]
        drive = np.minimum(t["force"] / self.mass_kg, self.mu_drive * (G + self.k_downforce * v * v))
        coast = self.engine_brake_force(v) / self.mass_kg + self.resistance(v)
        return drive.tolist(), coast.tolist(), self.brake_limit(v).tolist()


def lateral_cap(curvature_1pm: np.ndarray, car: Car, scale: np.ndarray | float = 1.0) -> np.ndarray:
    """Highest speed (m/s) at which ``v^2 |curvature|`` stays within the scaled lateral grip."""
    k = np.abs(np.asarray(curvature_1pm, dtype=float))
    mu = car.mu_lat * np.asarray(scale, dtype=float)
    denom = k - mu * car.k_downforce
    with np.errstate(divide="ignore", invalid="ignore"):
        cap = np.where(denom > 1e-12, np.sqrt(mu * G / np.maximum(denom, 1e-12)), np.inf)
    return np.minimum(cap, TABLE_VMAX - 1.0)


#: Forced-zone modes of :func:`speed_profile`.
FREE, IGNORE_BOUND, COAST, LOCKUP = 0, 1, 2, 3


@dataclass
class Zone:
    """A forced zone of the forward pass.

    ``COAST`` runs ``duration_s`` seconds, ``IGNORE_BOUND`` (a late brake: keep accelerating)
    ``length`` points, ``LOCKUP`` ``duration_s`` seconds. A zone starts at index ``start``,
    or, when ``trigger`` is set, is armed there and fires where braking would first be needed
    (the driver's own brake point) if that comes before ``window_end``.
    """

    mode: int
    start: int
    duration_s: float = 0.0
    length: int = 0
    window_end: int = 0
    lock_decel_frac: float = 0.65
    trigger: bool = False
    until: int = -1   #: IGNORE_BOUND: last index of the zone (instead of ``length``) once fired


@dataclass
class ProfileInputs:
    """Per-point inputs of :func:`speed_profile` on a grid of step ``ds_m``.

    ``cap_ms``: speed caps (lateral grip, pit limiter, driver targets); ``curvature_1pm``;
    ``grade``: dz/ds; ``lat_scale``: fraction of lateral grip the driver uses;
    ``brake_scale``: fraction of the braking limit; ``drive_scale``: fraction of drive force.
    """

    ds_m: float
    cap_ms: np.ndarray
    curvature_1pm: np.ndarray
    grade: np.ndarray
    lat_scale: np.ndarray
    brake_scale: np.ndarray
    drive_scale: np.ndarray
    v_start_ms: float = 0.0
    v_end_ms: float = 0.0
    zones: list[Zone] = field(default_factory=list)
    #: fraction of the braking limit used when above the envelope (after a late brake or a lock-up)
    recover_scale: float = 1.0


def _idx(v: float) -> int:
    i = int(v / TABLE_DV + 0.5)
    return i if i < int(TABLE_VMAX / TABLE_DV) else int(TABLE_VMAX / TABLE_DV)


def backward_pass(p: ProfileInputs, car: Car) -> np.ndarray:
    """Braking envelope: the highest speed at each point from which the driver can still meet
    every later cap, braking at ``brake_scale`` of the limit inside the g-g ellipse."""
    _, _, brake = car.drive_table()
    cap = p.cap_ms.tolist()
    kap = np.abs(p.curvature_1pm).tolist()
    grade = p.grade.tolist()
    lat = (car.mu_lat * p.lat_scale).tolist()
    bs = p.brake_scale.tolist()
    kd, kdrag, crr_g, ds2 = car.k_downforce, car.k_drag, car.crr * G, 2 * p.ds_m
    n = len(cap)
    out = [0.0] * n
    v1 = min(cap[-1], p.v_end_ms)
    out[-1] = v1
    sqrt = math.sqrt
    for i in range(n - 2, -1, -1):
        v1sq = v1 * v1
        ay_lim = lat[i + 1] * (G + kd * v1sq)
        r = kap[i + 1] * v1sq / ay_lim if ay_lim > 0 else 1.0
        ell = sqrt(1.0 - r * r) if r < 1.0 else 0.0
        a = bs[i] * brake[_idx(v1)] * ell + kdrag * v1sq + crr_g + G * grade[i]
        if a < 0.3:
            a = 0.3
        v0 = sqrt(v1sq + ds2 * a)
        c = cap[i]
        v1 = v0 if v0 < c else c
        out[i] = v1
    return np.asarray(out)


def forward_pass(p: ProfileInputs, car: Car, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accelerate as hard as grip and power allow, never above ``bound`` (except in forced
    zones); when above it (after a lock-up or a late brake), brake at ``recover_scale`` of the
    braking limit (outside the g-g ellipse: the car runs wide) until back on the envelope.

    Returns the speed (m/s) at each point and the forced mode of each cell.
    """
    drive, coast, brake = car.drive_table()
    ub = bound.tolist()
    cap = p.cap_ms.tolist()
    kap = np.abs(p.curvature_1pm).tolist()
    grade = p.grade.tolist()
    lat = (car.mu_lat * p.lat_scale).tolist()
    dsc = p.drive_scale.tolist()
    kd, kdrag, crr_g, ds2 = car.k_downforce, car.k_drag, car.crr * G, 2 * p.ds_m
    rec = p.recover_scale
    n = len(ub)
    starts: dict[int, list[Zone]] = {}
    for z in p.zones:
        starts.setdefault(z.start, []).append(z)
    out = [0.0] * n
    modes = [FREE] * n
    v = min(p.v_start_ms, ub[0])
    out[0] = v
    sqrt = math.sqrt
    mode, left_s, left_n, lock_frac = FREE, 0.0, 0, 0.65
    armed: list[Zone] = []
    for i in range(n - 1):
        for z in starts.get(i, ()):
            if z.trigger:
                armed.append(z)
            else:
                mode, left_s, left_n, lock_frac = z.mode, z.duration_s, z.length, z.lock_decel_frac
        vsq = v * v
        j = _idx(v)
        grav = G * grade[i]
        v_floor_sq = vsq - ds2 * (rec * brake[j] + kdrag * vsq + crr_g + grav)
        v_floor = sqrt(v_floor_sq) if v_floor_sq > 0 else 0.0
        target = ub[i + 1]
        if mode == FREE or mode == IGNORE_BOUND:
            ay_lim = lat[i] * (G + kd * vsq)
            r = kap[i] * vsq / ay_lim if ay_lim > 0 else 1.0
            ell = sqrt(1.0 - r * r) if r < 1.0 else 0.0
            nsq = vsq + ds2 * (dsc[i] * drive[j] * ell - kdrag * vsq - crr_g - grav)
            nv = sqrt(nsq) if nsq > 0 else 0.05
        if mode == FREE:
            while armed and i >= armed[0].window_end:
                armed.pop(0)
            if armed and nv > target + 1e-6:
                z = armed.pop(0)
                mode, left_n, left_s, lock_frac = z.mode, z.length, z.duration_s, z.lock_decel_frac
                if z.until >= 0:
                    left_n = z.until - i
        if mode == IGNORE_BOUND:
            target = cap[i + 1]
            left_n -= 1
            if left_n <= 0:
                mode = FREE
            modes[i] = IGNORE_BOUND
        elif mode == COAST or mode == LOCKUP:
            dec = coast[j] + grav if mode == COAST else lock_frac * brake[j] + kdrag * vsq + crr_g + grav
            nsq = vsq - ds2 * dec
            nv = sqrt(nsq) if nsq > 0 else 0.05
            modes[i] = mode
            if mode == LOCKUP:
                target = nv
            left_s -= ds2 / (v + nv) if v + nv > 0 else 0.0
            if left_s <= 0:
                mode = FREE
        if nv > target:
            nv = target if target > v_floor else v_floor
        out[i + 1] = nv
        v = nv
    return np.asarray(out), np.asarray(modes, dtype=np.int8)


def speed_profile(p: ProfileInputs, car: Car) -> tuple[np.ndarray, np.ndarray]:
    """``(speed_ms, bound_ms)``: the driven speed and the braking envelope it follows."""
    bound = backward_pass(p, car)
    v, _ = forward_pass(p, car, bound)
    return v, bound


def cell_times(v_ms: np.ndarray, ds_m: float) -> np.ndarray:
    """Time (s) to cross each grid cell at constant acceleration between its end speeds."""
    v = np.asarray(v_ms, dtype=float)
    return 2 * ds_m / np.maximum(v[:-1] + v[1:], 1e-9)


def periodic_profile(curvature_1pm: np.ndarray, grade: np.ndarray, ds_m: float, car: Car,
                     lat_scale: float = 1.0, brake_scale: float = 1.0,
                     cap_ms: np.ndarray | None = None) -> np.ndarray:
    """Fastest speed (m/s) around a closed lap: the middle lap of three driven back to back."""
    n = len(curvature_1pm)
    k3 = np.tile(curvature_1pm, 3)
    cap = lateral_cap(k3, car, lat_scale)
    if cap_ms is not None:
        cap = np.minimum(cap, np.tile(cap_ms, 3))
    p = ProfileInputs(ds_m, cap, k3, np.tile(grade, 3), np.full(3 * n, lat_scale), np.full(3 * n, brake_scale),
                      np.ones(3 * n), v_start_ms=float(cap.min()), v_end_ms=float(cap.min()))
    v, _ = speed_profile(p, car)
    return v[n:2 * n + 1]
