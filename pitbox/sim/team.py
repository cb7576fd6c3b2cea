"""A simulated team: drivers of different skill and habits, several tracks and setups, imported
into a store (for demos, tests and the team-archive benchmark).

Each driver is a :class:`~pitbox.sim.driver.DriverSpec` (grip used in corners and under
braking, and the per-lap noise of brake point, minimum speed and throttle pickup) plus
*habits*: the faults the driver tends to make, and how often (``fault_rate``: the chance that
a timed lap holds one, in a random corner, of a random size in :data:`FAULT_SIZES`). Drivers
gain a little skill every session (``learning``). Every session picks a track (each driver
rotates through all of them), one of the driver's setups (:data:`SETUPS`: different aero on
the same car, named in the YAML's ``DriverSetupName`` and ``CarSetup``), a start date (one
session a week per driver) and a session type (every fourth one is a qualifying session).

Everything follows from ``seed``: the same arguments give the same sessions, byte for byte.
Driver names go into the session YAML (``DriverInfo.Drivers[].UserName``), so the catalogue
and the team index see distinct drivers.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pitbox.sim.car import Car
from pitbox.sim.driver import DriverSpec
from pitbox.sim.errors import SimError

#: First names of the simulated drivers (ASCII, as iRacing writes user names).
TEAM_NAMES = ("Ana Costa", "Ben Okafor", "Chloe Martin", "Dev Patel", "Elsa Berg", "Felix Wagner", "Gina Rossi",
              "Hiro Sato", "Ines Duarte", "Jon Eriksen", "Kai Mueller", "Lena Novak")
#: Fault -> (smallest, largest) size drawn for a habit, in the fault's unit.
FAULT_SIZES: dict[str, tuple[float, float]] = {
    "brake_early": (8.0, 25.0), "late_throttle": (8.0, 30.0), "low_min_speed": (2.0, 8.0),
    "coasting": (0.3, 1.0), "brake_late": (5.0, 12.0), "lockup": (0.2, 0.5),
}
BRAKING_FAULTS = ("brake_early", "brake_late", "lockup")
#: Setup name -> (changes to the car, extra ``CarSetup`` YAML items).
SETUPS: dict[str, tuple[dict[str, float], dict[str, dict[str, str]]]] = {
    "baseline": ({}, {"Aero": {"RearWingAngle": "9.0 deg", "FrontFlap": "3 clicks"}}),
    "low_drag": ({"cla_m2": 1.0, "cda_m2": 0.72}, {"Aero": {"RearWingAngle": "5.0 deg", "FrontFlap": "1 clicks"}}),
    "high_downforce": ({"cla_m2": 1.45, "cda_m2": 0.90},
                       {"Aero": {"RearWingAngle": "13.0 deg", "FrontFlap": "5 clicks"}}),
}
#: First session week of a simulated team (UTC).
TEAM_EPOCH = datetime(2025, 1, 6, 18, 0, tzinfo=timezone.utc)
MAX_SKILL = 0.985


@dataclass(frozen=True)
class TeamDriver:
    """A simulated team member: skill and noise (``spec``) and habits."""

    spec: DriverSpec
    fault_rate: float  #: chance that a timed lap holds one fault
    habits: tuple[str, ...]  #: the faults this driver makes
    setups: tuple[str, ...]  #: the setups this driver uses
    learning: float  #: grip fraction gained per session (lateral and braking skill)

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "lateral_skill": round(self.spec.lateral_skill, 4),
                "braking_skill": round(self.spec.braking_skill, 4),
                "brake_point_sigma_m": round(self.spec.brake_point_sigma_m, 2),
                "min_speed_sigma_kmh": round(self.spec.min_speed_sigma_kmh, 2),
                "throttle_pickup_sigma_m": round(self.spec.throttle_pickup_sigma_m, 2),
                "fault_rate": round(self.fault_rate, 3), "habits": list(self.habits), "setups": list(self.setups),
                "learning": self.learning}


def team_drivers(n: int, seed: int = 0) -> list[TeamDriver]:
    """``n`` drivers from the fastest and cleanest to the slowest and most error-prone."""
    if not isinstance(n, int) or not 1 <= n <= len(TEAM_NAMES):
        raise SimError(f"drivers must be a whole number 1..{len(TEAM_NAMES)}, found {n!r}")
    rng = np.random.default_rng([seed, 0x7EA])
    out = []
    faults = list(FAULT_SIZES)
    for i in range(n):
        x = i / max(n - 1, 1)  # 0 = the team's best, 1 = its slowest
        spec = DriverSpec(
            name=TEAM_NAMES[i], user_id=991000 + i, car_number=str(11 + i),
            lateral_skill=0.975 - 0.06 * x + float(rng.uniform(-0.004, 0.004)),
            braking_skill=0.95 - 0.08 * x + float(rng.uniform(-0.004, 0.004)),
            throttle_hold_m=3.0 + 5.0 * x,
            brake_point_sigma_m=2.0 + 5.0 * x, min_speed_sigma_kmh=0.4 + 1.4 * x,
            throttle_pickup_sigma_m=1.0 + 4.0 * x)
        habits = tuple(sorted(rng.choice(faults, size=2, replace=False).tolist()))
        setups = ("baseline",) if i % 3 == 0 else ("baseline", "low_drag") if i % 3 == 1 else ("high_downforce", "low_drag")
        out.append(TeamDriver(spec, fault_rate=0.1 + 0.4 * x, habits=habits, setups=setups,
                              learning=0.002 if i % 2 == 0 else 0.0005))
    return out


@dataclass(frozen=True)
class TeamSession:
    """One planned session of the team."""

    driver: int  #: index into the driver list
    number: int  #: the driver's session number, from 0
    track: str
    setup: str
    session_type: str
    start: datetime
    seed: int
    faults: tuple[str, ...]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _car(setup: str) -> Car:
    changes, _ = SETUPS[setup]
    return dataclasses.replace(Car(), **changes)


def session_driver(d: TeamDriver, number: int) -> DriverSpec:
    """The driver's spec in their ``number``-th session (a little more skill each time)."""
    gain = d.learning * number
    return dataclasses.replace(d.spec, lateral_skill=min(d.spec.lateral_skill + gain, MAX_SKILL),
                               braking_skill=min(d.spec.braking_skill + gain, MAX_SKILL))


_BRAKING: dict[tuple, dict[str, bool]] = {}


def _braking_corners(track: str, car: Car, spec: DriverSpec) -> dict[str, bool]:
    """Which corners the driver brakes for (as the simulator plans them)."""
    from pitbox.sim.driver import corner_plan
    from pitbox.sim.tracks import load_track

    key = (track, car.cla_m2, car.cda_m2, spec)
    if key not in _BRAKING:
        _BRAKING[key] = {p.name: p.braking for p in corner_plan(load_track(track), car, spec)}
    return _BRAKING[key]


def plan_team(drivers: Sequence[TeamDriver], sessions: int, laps: int, seed: int = 0,
              tracks: Sequence[str] | None = None, epoch: datetime = TEAM_EPOCH) -> list[TeamSession]:
    """Every session of the team, in date order (deterministic from ``seed``)."""
    from pitbox.sim.tracks import list_tracks

    tracks = list(tracks) if tracks else list_tracks()
    if not isinstance(sessions, int) or sessions < 1:
        raise SimError(f"sessions must be a whole number >= 1, found {sessions!r}")
    plan = []
    for i, d in enumerate(drivers):
        for k in range(sessions):
            rng = np.random.default_rng([seed, i, k])
            track = tracks[(i + k) % len(tracks)]
            setup = d.setups[int(rng.integers(len(d.setups)))]
            spec = session_driver(d, k)
            braking = _braking_corners(track, _car(setup), spec)
            faults = []
            for lap in range(1, laps + 1):
                if rng.random() >= d.fault_rate:
                    continue
                fault = str(d.habits[int(rng.integers(len(d.habits)))])
                names = [c for c, b in braking.items() if b or fault not in BRAKING_FAULTS]
                lo, hi = FAULT_SIZES[fault]
                corner = names[int(rng.integers(len(names)))]
                faults.append(f"{lap}:{corner}:{fault}:{round(float(rng.uniform(lo, hi)), 2):g}")
            start = epoch + timedelta(weeks=k, hours=i, minutes=int(rng.integers(0, 50)))
            plan.append(TeamSession(i, k, track, setup, "Qualify" if k % 4 == 3 else "Practice", start,
                                    _seed(seed, i, k), tuple(faults)))
    return sorted(plan, key=lambda s: (s.start, s.driver))


@dataclass
class TeamResult:
    """What :func:`simulate_team` made: the drivers, each session and its store id."""

    data: Path
    drivers: list[TeamDriver]
    sessions: list[dict[str, Any]] = field(default_factory=list)
    index: Any = None  #: the :class:`pitbox.team.index.IndexReport` of the new sessions

    def summary(self) -> dict[str, Any]:
        return {"data": str(self.data), "drivers": [d.describe() for d in self.drivers],
                "sessions": self.sessions,
                "index": self.index.to_dict() if self.index is not None else None}


def _simulate_one(args: tuple[TeamSession, TeamDriver, int, bool, str, str | None]) -> dict[str, Any]:
    """Simulate, write and import one session (runs in a worker process when ``jobs`` > 1)."""
    from pitbox.sim.api import simulate_to_channels
    from pitbox.store import import_file

    s, d, laps, in_lap, data, keep = args
    _, yaml_items = SETUPS[s.setup]
    sim = simulate_to_channels(s.track, laps, list(s.faults), s.seed, driver=session_driver(d, s.number),
                               car=_car(s.setup), in_lap=in_lap, session_type=s.session_type,
                               setup_name=s.setup, setup_items=yaml_items, start=s.start)
    stem = f"{s.start:%Y%m%d-%H%M}-{d.name.split()[0].lower()}-{s.track}"
    with tempfile.TemporaryDirectory(prefix="pitbox-team-") as tmp:
        folder = Path(keep) if keep else Path(tmp)
        result = sim.write(folder / f"{stem}.ibt")
        imported = import_file(result.ibt_path, data)
    return {"driver": d.name, "number": s.number, "track": s.track, "setup": s.setup,
            "session_type": s.session_type, "start": s.start.isoformat(), "seed": s.seed, "faults": list(s.faults),
            "sessions": imported.sessions, "status": imported.status,
            "lap_times_s": {str(k): round(v, 4) for k, v in result.lap_times_s.items()}}


def simulate_team(data: str | os.PathLike[str], drivers: int = 5, sessions: int = 3, laps: int = 3, seed: int = 0,
                  tracks: Sequence[str] | None = None, *, in_lap: bool = True, jobs: int = 1, progress: bool = False,
                  keep_ibt: str | os.PathLike[str] | None = None, index: bool = True) -> TeamResult:
    """Simulate ``sessions`` sessions of ``laps`` timed laps for each of ``drivers`` drivers and
    import them into the store ``data`` (then index them unless ``index=False``).

    ``keep_ibt`` keeps the ``.ibt`` files and their ground truth in that folder (otherwise they
    are deleted once imported); ``jobs`` > 1 simulates in that many processes.
    """
    from pitbox.store import Store

    if not isinstance(laps, int) or laps < 1:
        raise SimError(f"laps must be a whole number >= 1, found {laps!r}")
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    team = team_drivers(drivers, seed)
    plan = plan_team(team, sessions, laps, seed, tracks)
    if keep_ibt is not None:
        Path(keep_ibt).mkdir(parents=True, exist_ok=True)
    work = [(s, team[s.driver], laps, in_lap, str(data), None if keep_ibt is None else str(keep_ibt)) for s in plan]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(work), unit="session", desc="simulate team")
    done: list[dict[str, Any]] = []
    try:
        if jobs > 1 and len(work) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(min(jobs, len(work))) as pool:
                for r in pool.map(_simulate_one, work):
                    done.append(r)
                    if bar is not None:
                        bar.update()
        else:
            for w in work:
                done.append(_simulate_one(w))
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()
    store = Store(data)
    store.refresh()
    result = TeamResult(data, team, done)
    if index:
        from pitbox.team.index import index_sessions

        paths = [store.resolve(sid) for r in done for sid in r["sessions"]]
        result.index = index_sessions(data, paths, progress=progress, jobs=jobs)
    return result


__all__ = ["FAULT_SIZES", "SETUPS", "TEAM_NAMES", "TeamDriver", "TeamResult", "TeamSession", "plan_team",
           "session_driver", "simulate_team", "team_drivers"]
