"""Turn a drive on the distance grid into 60 Hz channels named and typed as iRacing writes them.

Kinematics are exact between grid points (constant acceleration per cell), so ``Speed`` and
the position are continuous and the line crossings fall on known times. Sign conventions
follow iRacing's files: ``LatAccel``, ``YawRate``, ``SteeringWheelAngle`` and ``VelocityY``
are positive to the left; ``Yaw`` is counter-clockwise from east, ``YawNorth`` clockwise
from north; ``Throttle``, ``Brake``, ``Clutch`` and ``LapDistPct`` are fractions 0..1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pitbox.ibt.layout import VarType
from pitbox.sim.car import COAST, LOCKUP, G
from pitbox.sim.session import Drive, SessionLayout

TICK_RATE = 60
#: Seconds in the pit stall before leaving and after stopping.
PRE_ROLL_S = 4.0
POST_ROLL_S = 3.0
#: Length (m) over which the pit lane leaves and rejoins the racing line.
PIT_RAMP_M = 80.0
#: irsdk_TrkLoc
TRK_IN_PIT_STALL, TRK_APPROACHING_PITS, TRK_ON_TRACK = 1, 2, 3
SESSION_STATE_RACING = 4

#: (name, type, unit, description) in the order of a 2024 iRacing file.
CHANNELS: list[tuple[str, VarType, str, str]] = [
    ("SessionTime", VarType.DOUBLE, "s", "Seconds since session start"),
    ("SessionTick", VarType.INT, "", "Current update number"),
    ("SessionNum", VarType.INT, "", "Session number"),
    ("SessionState", VarType.INT, "irsdk_SessionState", "Session state"),
    ("SessionUniqueID", VarType.INT, "", "Session ID"),
    ("IsOnTrack", VarType.BOOL, "", "1=Car on track physics running with player in car"),
    ("PlayerTrackSurface", VarType.INT, "irsdk_TrkLoc", "Players car track surface type"),
    ("PlayerCarMyIncidentCount", VarType.INT, "", "Players own incident count for this session"),
    ("PlayerCarInPitStall", VarType.BOOL, "", "Players car is properly in there pitstall"),
    ("OnPitRoad", VarType.BOOL, "", "Is the player car on pit road between the cones"),
    ("SteeringWheelAngle", VarType.FLOAT, "rad", "Steering wheel angle"),
    ("Throttle", VarType.FLOAT, "%", "0=off throttle to 1=full throttle"),
    ("Brake", VarType.FLOAT, "%", "0=brake released to 1=max pedal force"),
    ("Clutch", VarType.FLOAT, "%", "0=disengaged to 1=fully engaged"),
    ("Gear", VarType.INT, "", "-1=reverse  0=neutral  1..n=current gear"),
    ("RPM", VarType.FLOAT, "revs/min", "Engine rpm"),
    ("Lap", VarType.INT, "", "Laps started count"),
    ("LapCompleted", VarType.INT, "", "Laps completed count"),
    ("LapDist", VarType.FLOAT, "m", "Meters traveled from S/F this lap"),
    ("LapDistPct", VarType.FLOAT, "%", "Percentage distance around lap"),
    ("LapBestLapTime", VarType.FLOAT, "s", "Players best lap time"),
    ("LapLastLapTime", VarType.FLOAT, "s", "Players last lap time"),
    ("LapCurrentLapTime", VarType.FLOAT, "s", "Estimate of players current lap time as shown in F3 box"),
    ("Speed", VarType.FLOAT, "m/s", "GPS vehicle speed"),
    ("Yaw", VarType.FLOAT, "rad", "Yaw orientation"),
    ("YawNorth", VarType.FLOAT, "rad", "Yaw orientation relative to north"),
    ("Lat", VarType.DOUBLE, "deg", "Latitude in decimal degrees"),
    ("Lon", VarType.DOUBLE, "deg", "Longitude in decimal degrees"),
    ("Alt", VarType.FLOAT, "m", "Altitude in meters"),
    ("IsOnTrackCar", VarType.BOOL, "", "1=Car on track physics running"),
    ("SteeringWheelAngleMax", VarType.FLOAT, "rad", "Steering wheel max angle"),
    ("BrakeABSactive", VarType.BOOL, "", "true if abs is currently reducing brake force pressure"),
    ("FuelLevelPct", VarType.FLOAT, "%", "Percent fuel remaining"),
    ("VelocityY", VarType.FLOAT, "m/s", "Y velocity"),
    ("VelocityX", VarType.FLOAT, "m/s", "X velocity"),
    ("YawRate", VarType.FLOAT, "rad/s", "Yaw rate"),
    ("LatAccel", VarType.FLOAT, "m/s^2", "Lateral acceleration (including gravity)"),
    ("LongAccel", VarType.FLOAT, "m/s^2", "Longitudinal acceleration (including gravity)"),
    ("FuelLevel", VarType.FLOAT, "l", "Liters of fuel remaining"),
    ("RFspeed", VarType.FLOAT, "m/s", "RF wheel speed"),
    ("LFspeed", VarType.FLOAT, "m/s", "LF wheel speed"),
    ("RRspeed", VarType.FLOAT, "m/s", "RR wheel speed"),
    ("LRspeed", VarType.FLOAT, "m/s", "LR wheel speed"),
]
NUMPY = {VarType.DOUBLE: np.float64, VarType.FLOAT: np.float32, VarType.INT: np.int32, VarType.BOOL: np.bool_}


@dataclass
class Ticks:
    """The session at 60 Hz: time since leaving the box, distance, speed, acceleration, cell."""

    tau_s: np.ndarray        #: time since the car left the box (negative in the pre-roll)
    s_abs_m: np.ndarray      #: session distance from lap 0's start/finish line
    speed_ms: np.ndarray
    accel_ms2: np.ndarray    #: dv/dt, exact per grid cell
    cell: np.ndarray         #: grid cell index (relative to the session start)
    moving: np.ndarray       #: between leaving the box and stopping in it
    cross_tau_s: np.ndarray  #: tau of the crossing into lap k (index k; nan for lap 0)


def tick_kinematics(lay: SessionLayout, d: Drive) -> Ticks:
    """Exact constant-acceleration kinematics per grid cell, sampled at 60 Hz."""
    ds, t, v = lay.grid.ds_m, d.time_s, d.speed_ms
    t_end = float(t[-1])
    post = POST_ROLL_S if lay.in_lap else 0.0
    n_ticks = int(math.floor((PRE_ROLL_S + t_end + post) * TICK_RATE)) + 1
    tau = np.arange(n_ticks) / TICK_RATE - PRE_ROLL_S
    j = np.clip(np.searchsorted(t, tau, side="right") - 1, 0, len(t) - 2)
    a = (v[j + 1] ** 2 - v[j] ** 2) / (2 * ds)
    dt = np.clip(tau - t[j], 0.0, t[j + 1] - t[j])
    s_rel = j * ds + v[j] * dt + a * dt * dt / 2
    speed = v[j] + a * dt
    moving = (tau >= 0) & (tau <= t_end)
    s_rel = np.where(tau < 0, 0.0, np.where(tau > t_end, (len(t) - 1) * ds, s_rel))
    speed = np.where(moving, np.maximum(speed, 0.0), 0.0)
    a = np.where(moving, a, 0.0)
    n = lay.grid.n
    last_lap = lay.i_end // n
    cross = np.full(last_lap + 1, np.nan)
    for k in range(1, last_lap + 1):
        i = k * n - lay.i0
        if 0 <= i < len(t):
            cross[k] = t[i]
    return Ticks(tau, lay.i0 * ds + s_rel, speed, a, j, moving, cross)


def smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` samples (edges use the available samples)."""
    if width <= 1:
        return x.astype(float)
    k = np.ones(width)
    num = np.convolve(x, k, mode="same")
    den = np.convolve(np.ones_like(x, dtype=float), k, mode="same")
    return num / den


def _pit_offset(lay: SessionLayout, s_abs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed lateral offset of the pit lane (m, positive left) and its first and second derivative."""
    L, pit = lay.track.length_m, lay.track.pit
    sign = 1.0 if pit.side == "left" else -1.0
    o, d1, d2 = np.zeros_like(s_abs), np.zeros_like(s_abs), np.zeros_like(s_abs)
    spans = [(lay.i0 * lay.grid.ds_m, pit.exit_pct * L, -1)]
    if lay.in_lap:
        spans.append(((lay.laps + 1) * L + pit.entry_pct * L, lay.i_end * lay.grid.ds_m, +1))
    for a, b, ramp_dir in spans:
        inside = (s_abs >= a) & (s_abs <= b)
        if ramp_dir < 0:
            u = np.clip((b - s_abs) / PIT_RAMP_M, 0.0, 1.0)
            du = -1.0 / PIT_RAMP_M
        else:
            u = np.clip((s_abs - a) / PIT_RAMP_M, 0.0, 1.0)
            du = 1.0 / PIT_RAMP_M
        ramp = (u > 0) & (u < 1)
        o = np.where(inside, sign * pit.offset_m * (3 * u**2 - 2 * u**3), o)
        d1 = np.where(inside & ramp, sign * pit.offset_m * (6 * u - 6 * u**2) * du, d1)
        d2 = np.where(inside & ramp, sign * pit.offset_m * (6 - 12 * u) * du * du, d2)
    return o, d1, d2


def lap_timing(tk: Ticks, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Lap counters and iRacing's lap-time channels (``LapLastLapTime`` reads -1 for a moment after
    the line, then the crossing-to-crossing time; the out lap stays -1)."""
    cross = tk.cross_tau_s
    k_max = len(cross) - 1
    c = np.searchsorted(np.nan_to_num(cross[1:], nan=np.inf), tk.tau_s, side="right")  # crossings so far
    lags = np.round(rng.uniform(0.6, 1.2, k_max + 1) * TICK_RATE) / TICK_RATE
    values = np.full(k_max + 1, -1.0)
    for k in range(2, k_max + 1):
        if np.isfinite(cross[k]) and np.isfinite(cross[k - 1]):
            values[k] = cross[k] - cross[k - 1]
    upd = np.where(np.isfinite(cross), cross + lags, np.inf)
    updated = (c > 0) & (tk.tau_s >= upd[c])
    last = np.where(c == 0, 0.0, np.where(updated, values[c], -1.0))
    best = np.zeros(len(tk.tau_s))
    running = np.inf
    bests = np.zeros(k_max + 1)
    for k in range(1, k_max + 1):
        if values[k] > 0:
            running = min(running, values[k])
        bests[k] = running if np.isfinite(running) else 0.0
    # before the update of crossing c the best is the one after crossing c-1's update
    best = np.where(c == 0, 0.0, np.where(updated, bests[c], bests[np.maximum(c - 1, 0)]))
    prev_cross = np.where(c >= 2, cross[np.maximum(c - 1, 0)], np.nan)
    cur = np.where(c == 0, 0.0, np.where(updated, tk.tau_s - cross[np.maximum(c, 1)],
                                         np.where(c >= 2, tk.tau_s - prev_cross, 0.0)))
    return {"last": last, "best": best, "current": np.nan_to_num(cur), "crossings": c}


@dataclass
class Extras:
    """Per-session constants written into channels."""

    session_time0: float
    session_unique_id: int
    fuel_start_l: float
    #: the fuel in the tank at every tick [l], unrounded (filled by :func:`build_channels`; truth)
    fuel_l: np.ndarray | None = None


def build_channels(lay: SessionLayout, d: Drive, tk: Ticks, extras: Extras,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """All channels of :data:`CHANNELS`, typed as iRacing writes them."""
    track, car, drv = lay.track, lay.car, lay.driver
    L, nt = track.length_m, len(tk.tau_s)
    s_abs, v = tk.s_abs_m, tk.speed_ms
    lap = np.floor(s_abs / L + 1e-12).astype(np.int32)
    lap_dist = np.clip(s_abs - lap * L, 0.0, L)
    o, do, d2o = _pit_offset(lay, s_abs)
    x, y = track.xy(lap_dist)
    psi = track.heading(lap_dist) + np.arctan(do)
    x, y = x - o * np.sin(psi), y + o * np.cos(psi)
    kappa = track.curvature(lap_dist) + d2o
    with np.errstate(divide="ignore", invalid="ignore"):
        k_lim = np.where(v > 0.5, car.lat_limit(v) / np.maximum(v, 0.5) ** 2, np.abs(kappa))
    k_eff = np.sign(kappa) * np.minimum(np.abs(kappa), k_lim)
    grade = track.grade_at(lap_dist)
    modes = np.where(tk.moving, d.modes[np.clip(tk.cell, 0, len(d.modes) - 1)], 0)
    lat_true = v * v * k_eff
    pit_mask = _on_pit_road(lay, s_abs)
    stall = ~tk.moving

    throttle, brake = _pedals(lay, tk, modes, grade)
    throttle = _pedal_noise(smooth(throttle, 7), rng, drv.pedal_sigma)
    brake = _pedal_noise(smooth(brake, 7), rng, drv.pedal_sigma)
    brake = np.where(modes == LOCKUP, 1.0, brake)
    gear, rpm, clutch = _drivetrain(lay, tk, v, throttle, rng)
    wheels, abs_active = _wheels(lay, tk, v, k_eff, brake, modes, rng)
    steer = car.steering_ratio * (np.arctan(car.wheelbase_m * k_eff) + car.understeer_rad_per_ms2 * lat_true)
    steer = np.clip(steer + rng.normal(0, drv.steering_sigma_rad, nt) * tk.moving, -car.steering_lock_rad,
                    car.steering_lock_rad)
    long_acc = smooth(tk.accel_ms2, 5) + G * grade + rng.normal(0, drv.accel_sigma_ms2, nt)
    lat_acc = lat_true + rng.normal(0, drv.accel_sigma_ms2, nt)
    yaw_rate = v * k_eff + rng.normal(0, 0.002, nt) * tk.moving
    fuel_rate = car.fuel_full_throttle_lps * throttle * np.clip(rpm / car.redline_rpm, 0.15, 1.0) + 0.0003
    fuel = extras.fuel_start_l - np.cumsum(fuel_rate) / TICK_RATE
    extras.fuel_l = fuel
    lat_deg, lon_deg = track.to_latlon(x, y)
    timing = lap_timing(tk, rng)
    session_time = extras.session_time0 + np.arange(nt) / TICK_RATE
    yaw = np.angle(np.exp(1j * psi))
    surface = np.where(stall, TRK_IN_PIT_STALL, np.where(pit_mask, TRK_APPROACHING_PITS, TRK_ON_TRACK))
    ch: dict[str, np.ndarray] = {
        "SessionTime": session_time,
        "SessionTick": np.rint(session_time * TICK_RATE),
        "SessionNum": np.zeros(nt),
        "SessionState": np.full(nt, SESSION_STATE_RACING),
        "SessionUniqueID": np.full(nt, extras.session_unique_id),
        "IsOnTrack": np.ones(nt, bool),
        "PlayerTrackSurface": surface,
        "PlayerCarMyIncidentCount": np.zeros(nt),
        "PlayerCarInPitStall": stall,
        "OnPitRoad": pit_mask | stall,
        "SteeringWheelAngle": steer,
        "Throttle": throttle,
        "Brake": brake,
        "Clutch": clutch,
        "Gear": gear,
        "RPM": rpm,
        "Lap": lap,
        "LapCompleted": lap - 1,
        "LapDist": lap_dist,
        "LapDistPct": lap_dist / L,
        "LapBestLapTime": timing["best"],
        "LapLastLapTime": timing["last"],
        "LapCurrentLapTime": timing["current"],
        "Speed": v,
        "Yaw": yaw,
        "YawNorth": np.mod(np.pi / 2 - psi, 2 * np.pi),
        "Lat": lat_deg,
        "Lon": lon_deg,
        "Alt": track.origin_alt + track.elevation(lap_dist),
        "IsOnTrackCar": np.ones(nt, bool),
        "SteeringWheelAngleMax": np.full(nt, car.steering_lock_rad),
        "BrakeABSactive": abs_active,
        "FuelLevelPct": fuel / car.fuel_max_l,
        "VelocityY": -0.004 * v * lat_true / G,
        "VelocityX": v,
        "YawRate": yaw_rate,
        "LatAccel": lat_acc,
        "LongAccel": long_acc,
        "FuelLevel": fuel,
        **wheels,
    }
    return {name: np.asarray(ch[name]).astype(NUMPY[typ]) for name, typ, _, _ in CHANNELS}


def _on_pit_road(lay: SessionLayout, s_abs: np.ndarray) -> np.ndarray:
    L, pit = lay.track.length_m, lay.track.pit
    mask = s_abs <= pit.exit_pct * L
    if lay.in_lap:
        mask |= s_abs >= (lay.laps + 1) * L + pit.entry_pct * L
    return mask


def _pedals(lay: SessionLayout, tk: Ticks, modes: np.ndarray, grade: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Throttle and brake (0..1) from the force the motion needs at each tick."""
    car, v = lay.car, tk.speed_ms
    need = tk.accel_ms2 + G * grade + car.resistance(v)          # per unit mass, at the wheels
    eb = car.engine_brake_force(v) / car.mass_kg
    drive = car.drive_force(v) / car.mass_kg
    throttle = np.clip((need + eb) / (drive + eb), 0.0, 1.0)
    brake = np.clip(-(need + eb) / (car.brake_pedal_margin * car.brake_limit(v)), 0.0, 1.0)
    throttle = np.where(need + eb > 0, throttle, 0.0)
    free = modes == 0
    throttle = np.where(free | (modes == 1), throttle, 0.0)
    brake = np.where((modes == COAST), 0.0, brake)
    stalled = ~tk.moving
    brake = np.where(stalled, 1.0, brake)
    throttle = np.where(stalled, 0.0, throttle)
    return throttle, brake


def _pedal_noise(x: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    noisy = x + rng.normal(0, sigma, len(x)) * (x > 0.02) * (x < 0.98)
    return np.clip(noisy, 0.0, 1.0)


def _drivetrain(lay: SessionLayout, tk: Ticks, v: np.ndarray, throttle: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gear, RPM and clutch: neutral in the stall, a clutch launch out of the box."""
    car = lay.car
    nt = len(v)
    gear = _hold_gears(car, v)
    gear = np.where(tk.moving, gear, 0)
    rpm = car.rpm_in_gear(v, np.maximum(gear, 1))
    launch = np.clip(tk.tau_s / 1.2, 0.0, 1.0)
    stop = np.clip(v / 4.0, 0.0, 1.0)
    end_phase = tk.tau_s > tk.tau_s[tk.moving][-1] - 5.0 if tk.moving.any() else np.zeros(nt, bool)
    clutch = np.where(tk.moving, np.where(end_phase, stop, launch), 0.0)
    slip_rpm = car.idle_rpm + (car.launch_rpm - car.idle_rpm) * np.clip(throttle * 2, 0, 1)
    rpm = np.where(clutch < 1.0, np.maximum(rpm, slip_rpm * (1 - clutch) + car.idle_rpm * clutch), rpm)
    rpm = np.where(tk.moving, rpm, car.idle_rpm + rng.normal(0, 3.0, nt))
    return gear, np.clip(rpm, 0, car.redline_rpm), clutch


def _hold_gears(car, v: np.ndarray, margin_ms: float = 2.0) -> np.ndarray:
    """The driver's gear with hysteresis: up as soon as the next gear pulls harder, down only
    when the lower gear would still pull harder ``margin_ms`` faster (no hunting)."""
    up = car.gear_for_speed(v).astype(np.int32).tolist()
    down = car.gear_for_speed(v + margin_ms).astype(np.int32).tolist()
    out = np.empty(len(v), dtype=np.int32)
    cur = up[0]
    for i in range(len(v)):
        if up[i] > cur:
            cur = up[i]
        elif down[i] < cur:
            cur = down[i]
        out[i] = cur
    return out


def _wheels(lay: SessionLayout, tk: Ticks, v: np.ndarray, k_eff: np.ndarray, brake: np.ndarray,
            modes: np.ndarray, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Wheel speeds (m/s): inner wheels slower in a turn, slip under braking and drive, and a
    locked front wheel (inside of the corner) far below ``Speed`` during a lock-up."""
    car = lay.car
    nt = len(v)
    half = car.track_width_m / 2
    drive_frac = np.clip(tk.accel_ms2 / G, 0.0, 1.0)
    front = 1 - 0.03 * brake
    rear = (1 - 0.015 * brake) * (1 + 0.03 * drive_frac)
    left, right = 1 - k_eff * half, 1 + k_eff * half
    w = {"RFspeed": v * right * front, "LFspeed": v * left * front,
         "RRspeed": v * right * rear, "LRspeed": v * left * rear}
    locked = modes == LOCKUP
    abs_active = np.zeros(nt, bool)
    if locked.any():
        # inside front wheel of the corner being braked for: right for a right-hander
        corner_dir = _corner_direction(lay, tk.s_abs_m)
        ramp = smooth(locked.astype(float), 9)
        if car.abs:
            cycle = 0.75 + 0.15 * np.sin(2 * np.pi * 8 * tk.tau_s)
            factor = 1 - ramp * (1 - cycle)
            w["RFspeed"] = w["RFspeed"] * factor
            w["LFspeed"] = w["LFspeed"] * factor
            abs_active = locked
        else:
            inside = 1 - ramp * (1 - 0.01)
            outside = 1 - ramp * 0.45
            right_in = corner_dir < 0
            w["RFspeed"] = w["RFspeed"] * np.where(right_in, inside, outside)
            w["LFspeed"] = w["LFspeed"] * np.where(right_in, outside, inside)
    noise = 0.02 * tk.moving + 1e-3
    return {k: np.maximum(val + rng.normal(0, 1, nt) * noise * 0.5, 0.0) for k, val in w.items()}, abs_active


def _corner_direction(lay: SessionLayout, s_abs: np.ndarray) -> np.ndarray:
    """+1/-1: direction of the corner whose segment holds each point."""
    n = lay.grid.n
    pos = np.floor(s_abs / lay.grid.ds_m).astype(int) % n
    table = np.ones(n, dtype=int)
    for p in lay.plans:
        if p.seg_start < p.seg_end:
            table[p.seg_start:p.seg_end] = p.direction
        else:
            table[p.seg_start:] = p.direction
            table[:p.seg_end] = p.direction
    return table[pos]
