"""Public entry points: :func:`simulate_session` (writes ``.ibt`` + ground truth) and
:func:`simulate_to_channels` (the same session in memory)."""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pitbox.ibt.writer import write_ibt
from pitbox.sim.car import COAST, LOCKUP, Car
from pitbox.sim.driver import CornerPlan, DriverSpec, plan_corner_file
from pitbox.sim.errors import SimError
from pitbox.sim.faults import FAULTS, Fault, parse_faults, validate_faults
from pitbox.sim.session import (
    Drive,
    Noise,
    SessionLayout,
    drive_session,
    min_time_lap,
    reference_lap_time,
    template,
)
from pitbox.sim.session_info import (
    car_setup,
    driver_info,
    render,
    session_info,
    split_time_info,
    track_temps,
    weekend_info,
)
from pitbox.sim.telemetry import CHANNELS, PRE_ROLL_S, TICK_RATE, Extras, build_channels, tick_kinematics
from pitbox.sim.tracks import load_track
from pitbox.tracks import load_corner_file

log = logging.getLogger(__name__)

TRUTH_FORMAT = "pitbox-sim-truth"
TRUTH_VERSION = 1
MAX_LAPS = 200
#: Earliest start date of a simulated session; the seed adds days and hours.
EPOCH = datetime(2024, 3, 1, tzinfo=timezone.utc)


@dataclass
class SimResult:
    """What :func:`simulate_session` wrote: the ``.ibt``, the ground truth beside it, the lap times."""

    ibt_path: Path
    truth_path: Path
    truth_npz_path: Path
    lap_times_s: dict[int, float]
    track: str
    seed: int
    faults: list[dict[str, Any]]
    n_rows: int

    def summary(self) -> dict[str, Any]:
        return {
            "ibt": str(self.ibt_path), "truth": str(self.truth_path), "truth_npz": str(self.truth_npz_path),
            "track": self.track, "seed": self.seed, "rows": self.n_rows,
            "lap_times_s": {str(k): round(v, 4) for k, v in self.lap_times_s.items()},
            "faults": self.faults,
        }


@dataclass
class SimSession:
    """A simulated session in memory: channels as written to the ``.ibt``, its YAML and the truth."""

    channels: dict[str, np.ndarray]
    session_yaml: str
    truth: dict[str, Any]
    truth_arrays: dict[str, np.ndarray]
    start_date: int
    types: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    descs: dict[str, str] = field(default_factory=dict)

    @property
    def lap_times_s(self) -> dict[int, float]:
        return {lap["lap"]: lap["lap_time_s"] for lap in self.truth["laps"] if lap["lap_time_s"] is not None}

    def write(self, out: str | os.PathLike[str]) -> SimResult:
        """Write the ``.ibt`` and, beside it, ``<stem>.truth.json`` and ``<stem>.truth.npz``."""
        out = Path(out)
        if out.parent and not out.parent.is_dir():
            raise SimError(f"{out}: folder {out.parent} does not exist")
        truth_path, npz_path = truth_paths(out)
        truth = dict(self.truth, ibt=out.name, time_grid=npz_path.name)
        write_ibt(out, self.channels, self.session_yaml, types=self.types, units=self.units, descs=self.descs,
                  tick_rate=TICK_RATE, start_date=self.start_date)
        truth_path.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
        write_npz(npz_path, self.truth_arrays)
        log.info("wrote %s (%d rows) and its ground truth", out, len(self.channels["SessionTime"]))
        return SimResult(out, truth_path, npz_path, self.lap_times_s, truth["track"]["name"], truth["seed"],
                         truth["faults"], len(self.channels["SessionTime"]))


def truth_paths(ibt_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(<stem>.truth.json, <stem>.truth.npz)`` beside an ``.ibt``."""
    p = Path(ibt_path)
    return p.with_name(p.stem + ".truth.json"), p.with_name(p.stem + ".truth.npz")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """``np.savez`` layout with fixed zip timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
    return path


def read_truth(ibt_path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Ground truth written beside a simulated ``.ibt``: the JSON dict and the npz arrays."""
    jpath, npath = truth_paths(ibt_path)
    try:
        truth = json.loads(jpath.read_text(encoding="utf-8"))
        with np.load(npath) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise SimError(f"{jpath}: cannot read the ground truth: {exc}") from None
    return truth, arrays


# ---------------------------------------------------------------------------------------
def simulate_to_channels(track: str = "pitboxsim_demo", laps: int = 8, faults: Sequence[str | Fault] = (),
                         seed: int = 0, *, driver: DriverSpec | None = None, car: Car | None = None,
                         in_lap: bool = True, session_type: str = "Practice", setup_name: str = "baseline",
                         setup_items: dict[str, dict[str, str]] | None = None,
                         start: datetime | None = None) -> SimSession:
    """Simulate a practice session (out lap, ``laps`` timed laps, in lap) without writing it.

    ``faults`` are ``LAP:CORNER:FAULT:SIZE`` specs (or :class:`Fault`); LAP is the ``Lap``
    channel's number of a timed lap (1..laps). The same arguments give the same arrays.
    ``session_type`` goes to the YAML's ``SessionType``; ``setup_name`` (``<name>.sto``) and
    ``setup_items`` (extra ``CarSetup`` sections of preformatted values) describe the car's
    setup (the physics comes from ``car``); ``start`` (UTC) replaces the seeded start date.
    """
    if not isinstance(laps, int) or not 1 <= laps <= MAX_LAPS:
        raise SimError(f"laps must be a whole number 1..{MAX_LAPS}, found {laps!r}")
    if not isinstance(seed, int) or seed < 0:
        raise SimError(f"seed must be a whole number >= 0, found {seed!r}")
    trk = load_track(track)
    car, driver = car or Car(), driver or DriverSpec()
    lay = SessionLayout.build(trk, car, driver, laps, in_lap)
    names = [p.name for p in lay.plans]
    fault_list = validate_faults(parse_faults(faults), laps, names, {p.name: p.braking for p in lay.plans}, trk.name)
    noise_rng, tel_rng, meta_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    noise = Noise.draw(noise_rng, laps, len(lay.plans), driver)
    tmpl = template(lay, noise)
    clean = drive_session(lay, noise, [], tmpl)
    driven = drive_session(lay, noise, fault_list, tmpl, clean) if fault_list else clean
    tk = tick_kinematics(lay, driven)
    extras = Extras(session_time0=float(np.round(meta_rng.uniform(30.0, 300.0) * TICK_RATE) / TICK_RATE),
                    session_unique_id=int(meta_rng.integers(1, 2**31 - 1)),
                    fuel_start_l=float(np.round(meta_rng.uniform(30.0, 60.0), 1)))
    seeded_start = EPOCH + timedelta(days=int(meta_rng.integers(0, 365)), hours=int(meta_rng.integers(9, 18)),
                                     minutes=int(meta_rng.integers(0, 60)))
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)  # a naive start is UTC
    start = seeded_start if start is None else start.astimezone(timezone.utc)
    surface_c, air_c = track_temps(float(meta_rng.uniform()), float(meta_rng.uniform()))
    session_id = int(meta_rng.integers(100_000, 999_999))
    channels = build_channels(lay, driven, tk, extras, tel_rng)
    truth, arrays = ground_truth(lay, driven, clean, fault_list, seed, extras)
    fuel_truth(truth, channels["SessionTime"], extras)
    lap_times = {lap["lap"]: lap["lap_time_s"] for lap in truth["laps"] if lap["lap_time_s"] is not None}
    timed = {k: v for k, v in lap_times.items() if 1 <= k <= laps}
    best_lap = min(timed, key=timed.get) if timed else None
    sections = {
        "WeekendInfo": weekend_info(trk, session_id, extras.session_unique_id, surface_c, air_c,
                                    start.strftime("%Y-%m-%d")),
        "SessionInfo": session_info(max(lap_times) if lap_times else 0, lap_times, best_lap,
                                    session_type=session_type),
        "DriverInfo": driver_info(car, driver, trk, truth["reference_lap_time_s"], setup_name),
        "SplitTimeInfo": split_time_info(trk),
        "CarSetup": car_setup(extras.fuel_start_l, setup_items),
    }
    types = {name: typ for name, typ, _, _ in CHANNELS}
    return SimSession(channels, render(sections), truth, arrays, int(start.timestamp()), types,
                      {name: unit for name, _, unit, _ in CHANNELS}, {name: desc for name, _, _, desc in CHANNELS})


def simulate_session(track: str = "pitboxsim_demo", laps: int = 8, faults: Sequence[str | Fault] = (),
                     seed: int = 0, *, out: str | os.PathLike[str], driver: DriverSpec | None = None,
                     car: Car | None = None, in_lap: bool = True) -> SimResult:
    """Simulate a practice session and write ``out`` (``.ibt``) with its ground truth beside it."""
    return simulate_to_channels(track, laps, faults, seed, driver=driver, car=car, in_lap=in_lap).write(out)


# ---------------------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------------------
def fuel_truth(truth: dict[str, Any], session_time_s: np.ndarray, extras: Extras) -> None:
    """Add the fuel in the tank at each lap's start and end crossing [l] (the simulator's
    unrounded fuel, linear between ticks, at the exact crossing times) and the fuel used."""
    fuel = extras.fuel_l
    if fuel is None:
        return
    t = np.asarray(session_time_s, dtype=np.float64)
    truth["fuel"] = {"start_l": extras.fuel_start_l, "rate": "fuel_full_throttle_lps x throttle x "
                     "clip(rpm / redline, 0.15, 1) + 0.0003 l/s, summed per tick"}
    for lap in truth["laps"]:
        f0, f1 = np.interp([lap["start_session_time_s"], lap["end_session_time_s"]], t, fuel)
        lap["fuel_start_l"], lap["fuel_end_l"] = round(float(f0), 5), round(float(f1), 5)
        lap["fuel_used_l"] = round(float(f0 - f1), 5)


def _t(d: Drive, lay: SessionLayout, i: int) -> float:
    return float(d.time_s[min(max(i - lay.i0, 0), lay.n_points - 1)])


def _measure(lay: SessionLayout, d: Drive, lap: int, p: CornerPlan) -> dict[str, float]:
    """Brake point, minimum speed, throttle pickup, coasting and lock-up time in one segment."""
    a, b = (x - lay.i0 for x in lay.segment(lap, p))
    a, b = max(a, 0), min(b, lay.n_points - 1)
    ds = lay.grid.ds_m
    v = d.speed_ms[a:b + 1]
    acc = (v[1:] ** 2 - v[:-1] ** 2) / (2 * ds)
    i_min = int(np.argmin(v))
    braking = np.nonzero(acc[:i_min] < -2.0)[0]
    after = np.nonzero(v[i_min:] > v[i_min] + 0.5)[0]  # clearly away from the minimum: on the throttle
    dt = d.time_s[a + 1:b + 1] - d.time_s[a:b]
    modes = d.modes[a:b]
    return {
        "brake_m": float(braking[0] * ds) if len(braking) else float("nan"),
        "min_speed_kmh": float(v[i_min] * 3.6),
        "throttle_m": float((i_min + after[0]) * ds) if len(after) else float("nan"),
        "coasting_s": float(dt[modes == COAST].sum()),
        "lockup_s": float(dt[modes == LOCKUP].sum()),
    }


def _fault_record(lay: SessionLayout, f: Fault, seg_cost: dict, driven: Drive, clean: Drive,
                  shared: list[str]) -> dict[str, Any]:
    k = [p.name for p in lay.plans].index(f.corner)
    p = lay.plans[k]
    mf, mc = _measure(lay, driven, f.lap, p), _measure(lay, clean, f.lap, p)
    n = lay.grid.n
    lap_cost = (_t(driven, lay, (f.lap + 1) * n) - _t(driven, lay, f.lap * n)) - (
        _t(clean, lay, (f.lap + 1) * n) - _t(clean, lay, f.lap * n))
    others = {name: c for (lap, name), c in seg_cost.items() if lap == f.lap and name != f.corner}
    return {
        "spec": f.spec, "lap": f.lap, "corner": f.corner, "fault": f.fault, "size": f.size, "unit": f.unit,
        "cost_s": round(seg_cost[(f.lap, f.corner)], 4),
        "lap_cost_s": round(lap_cost, 4),
        "largest_other_segment_cost_s": round(max((abs(c) for c in others.values()), default=0.0), 4),
        "shared_with": shared,
        "measured": {
            "brake_point_shift_m": _r(mf["brake_m"] - mc["brake_m"]),
            "min_speed_change_kmh": _r(mf["min_speed_kmh"] - mc["min_speed_kmh"]),
            "throttle_pickup_shift_m": _r(mf["throttle_m"] - mc["throttle_m"]),
            "coasting_s": _r(mf["coasting_s"]),
            "lockup_s": _r(mf["lockup_s"]),
            "run_wide_m": _r(driven.wide_m.get((f.lap, k), 0.0)),
        },
    }


def _r(x: float, nd: int = 3) -> float | None:
    return None if not np.isfinite(x) else round(float(x), nd)


def _time_grid(lay: SessionLayout, d: Drive, laps: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Time (s) since each lap's start crossing at every whole metre of the lap."""
    L, ds, n = lay.track.length_m, lay.grid.ds_m, lay.grid.n
    dist = np.arange(0.0, np.floor(L) + 1.0)
    out = np.full((len(laps), len(dist)), np.nan)
    for r, lap in enumerate(laps):
        a = lap * n - lay.i0
        if a < 0 or a + n >= lay.n_points:
            continue
        s = np.arange(n + 1) * ds
        t = d.time_s[a:a + n + 1] - d.time_s[a]
        out[r] = np.interp(dist, s, t)
    return dist, out


def ground_truth(lay: SessionLayout, driven: Drive, clean: Drive, faults: list[Fault], seed: int,
                 extras: Extras) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Ground-truth dict (JSON) and arrays (npz) of a session."""
    n, trk = lay.grid.n, lay.track
    st0 = extras.session_time0 + PRE_ROLL_S
    last_lap = lay.i_end // n
    seg_cost: dict[tuple[int, str], float] = {}
    laps_out = []
    for lap in range(0, last_lap + 1):
        complete = 1 <= lap and (lap + 1) * n <= lay.i_end
        start_i, end_i = max(lap * n, lay.i0), min((lap + 1) * n, lay.i_end)
        rec: dict[str, Any] = {
            "lap": lap,
            "kind": "out" if lap == 0 else "timed" if lap <= lay.laps else "in" if complete else "pit",
            "start_session_time_s": round(st0 + _t(driven, lay, start_i), 4),
            "end_session_time_s": round(st0 + _t(driven, lay, end_i), 4),
            "lap_time_s": round(_t(driven, lay, end_i) - _t(driven, lay, start_i), 4) if complete else None,
            "fault_free_lap_time_s": round(_t(clean, lay, end_i) - _t(clean, lay, start_i), 4) if complete else None,
            "faults": [f.spec for f in faults if f.lap == lap],
        }
        if 1 <= lap <= lay.laps:
            segs = []
            for p in lay.plans:
                a, b = lay.segment(lap, p)
                td, tc = _t(driven, lay, b) - _t(driven, lay, a), _t(clean, lay, b) - _t(clean, lay, a)
                seg_cost[(lap, p.name)] = td - tc
                segs.append({"corner": p.name, "time_s": round(td, 4), "fault_free_time_s": round(tc, 4),
                             "cost_s": round(td - tc, 4)})
            rec["segments"] = segs
        laps_out.append(rec)
    fault_recs = []
    for f in faults:
        shared = [g.spec for g in faults if g is not f and g.lap == f.lap and g.corner == f.corner]
        fault_recs.append(_fault_record(lay, f, seg_cost, driven, clean, shared))
    complete_laps = [r["lap"] for r in laps_out if r["lap_time_s"] is not None]
    dist, t_driven = _time_grid(lay, driven, complete_laps)
    _, t_clean = _time_grid(lay, clean, complete_laps)
    starts = np.array([st0 + _t(driven, lay, lap * n) for lap in complete_laps])
    cf = load_corner_file(trk.name, trk.config) or plan_corner_file(trk, lay.plans, lay.grid)
    truth = {
        "format": TRUTH_FORMAT,
        "version": TRUTH_VERSION,
        "source": "simulated",
        "seed": seed,
        "track": {"name": trk.name, "config": trk.config, "length_m": round(trk.length_m, 4)},
        "car": lay.car.screen_name,
        "laps_timed": lay.laps,
        "in_lap": lay.in_lap,
        "reference_lap_time_s": round(reference_lap_time(lay), 4),
        "min_time_lap_s": round(min_time_lap(trk, lay.car), 4),
        "noise": lay.driver.noise_dict(),
        "fault_units": {k: v[0] for k, v in FAULTS.items()},
        "corners": [{"name": c.name, "start_pct": round(c.start_pct, 6), "end_pct": round(c.end_pct, 6),
                     "apex_pct": c.apex_pct and round(c.apex_pct, 6), "brake_pct": c.brake_pct and round(c.brake_pct, 6)}
                    for c in cf.corners],
        "faults": fault_recs,
        "laps": laps_out,
    }
    arrays = {
        "distance_m": dist,
        "lap": np.asarray(complete_laps, dtype=np.int32),
        "time_s": t_driven,
        "fault_free_time_s": t_clean,
        "session_time_s": t_driven + starts[:, None] if len(starts) else t_driven,
    }
    return truth, arrays
