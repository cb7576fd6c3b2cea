"""Sessions and laps, in the spirit of FastF1 but on plain DataFrames.

>>> s = load_session("20150528-185046")          # store id (or prefix), .parquet or .ibt path
>>> fastest = s.laps.pitbox.pick_fastest()         # a row of the lap table (valid laps only)
>>> tel = s.lap(fastest).telemetry(["Speed"])      # measured samples with time_s, distance_m
>>> on_d = tel.pitbox.on_distance()                # resampled on the distance grid
>>> d = s.lap(2).delta_to(s.reference())           # delta time with its closure

References come from anywhere: a lap of this session, ``"SESSION:LAP"`` for another store
session or an ``.ibt`` file (``"C:/telemetry/x.ibt:3"``), or a :class:`Lap`. The default is
the session's fastest valid lap. Invalid laps (pit, off track, incident, reset, incomplete)
never become a best lap or the default reference; naming one explicitly is allowed when
it is complete.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from pitbox.analysis import accessor as _accessor  # noqa: F401  (registers DataFrame.pitbox)
from pitbox.analysis.align import (
    DEFAULT_STEP_M,
    Delta,
    Trace,
    compute_delta,
    distance_grid,
    integrate_speed,
    interpolation_error_s,
    resample,
    sample_gaps_m,
    unwrap_distance,
)
from pitbox.analysis.channels import TRACE_CHANNELS
from pitbox.analysis.errors import BadReference, NoValidLap, ReferenceLapNotFound, TrackMismatch
from pitbox.analysis.source import Source, open_source
from pitbox.errors import PitboxError

log = logging.getLogger(__name__)

#: How much of the next lap a complete lap's trace carries (for segments over the line).
OVERRUN_FRACTION = 0.35
_LENGTH = re.compile(r"^\s*([0-9.]+)\s*(km|mi|m)\s*$", re.I)


def parse_track_length(text: str) -> float | None:
    """``"3.21 km"`` / ``"2.00 mi"`` / ``"576 m"`` -> metres (None when unreadable)."""
    m = _LENGTH.match(str(text or ""))
    if not m:
        return None
    factor = {"km": 1000.0, "mi": 1609.344, "m": 1.0}[m.group(2).lower()]
    return float(m.group(1)) * factor


class Session:
    """One driving session: metadata, YAML, lap table and lazily read channels."""

    def __init__(self, source: Source, data: str | os.PathLike[str] | None = None):
        self.source = source
        self.data = data
        self._traces: dict[tuple[int, float], Trace] = {}

    # -- identity --------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.source.id

    @property
    def meta(self) -> dict[str, Any]:
        return self.source.meta

    @property
    def info(self) -> dict[str, Any]:
        """The parsed session YAML (``WeekendInfo``, ``DriverInfo``, ``SplitTimeInfo`` …)."""
        return self.source.info

    @property
    def track(self) -> str:
        return str(self.meta.get("track", "unknown"))

    @property
    def track_config(self) -> str:
        return str(self.meta.get("track_config", "") or "")

    @property
    def car(self) -> str:
        return str(self.meta.get("car", "unknown"))

    @property
    def driver(self) -> str:
        return str(self.meta.get("driver", "unknown"))

    @property
    def simulated(self) -> bool:
        wi = self.info.get("WeekendInfo") or {}
        return bool(self.meta.get("simulated")) or str(wi.get("source", "")) == "simulated"

    @property
    def tick_rate(self) -> float:
        return float(self.meta.get("tick_rate", 60) or 60)

    @cached_property
    def physics_time_s(self) -> np.ndarray:
        """Per row: physics time [s], ``SessionTime`` with the sim's hitches taken out (ticks
        in which ``SessionTime`` advanced and the car did not; see :func:`pitbox.laps.physics_time`).
        Every time base of the analysis (lap times, delta, segment, phase and sector times)
        counts this time, as iRacing's lap timer does; ``SessionTime`` stays as recorded."""
        from pitbox.laps import physics_time

        src = self.source
        names = ["SessionTime", *(n for n in ("LapDistPct", "SessionTick") if src.has(n))]
        c = src.columns(names)
        t = c["SessionTime"].astype(np.float64)
        if "LapDistPct" not in c:
            return t
        return physics_time(t, c["LapDistPct"], self.tick_rate, c.get("SessionTick"))

    def lap_clock(self, row: pd.Series, rows: tuple[int, int]) -> np.ndarray:
        """Physics time [s] since ``row``'s start line for the rows ``rows`` (a, b) of the session."""
        a, b = rows
        st = self.channels(["SessionTime"])["SessionTime"].astype(np.float64)
        phys = self.physics_time_s
        lo, hi = max(int(row.start_row) - 1, 0), min(int(row.start_row) + 1, len(st))
        start = float(np.interp(float(row.start_s), st[lo:hi], phys[lo:hi]))
        return phys[a:b] - start

    def __repr__(self) -> str:
        return f"<Session {self.id}: {self.track} {self.car} {self.driver}, {len(self.laps)} laps>"

    # -- laps ------------------------------------------------------------------------
    @property
    def laps(self) -> pd.DataFrame:
        """The lap table (a plain DataFrame; ``.pitbox`` accessor for picking laps)."""
        df = self.source.laps.copy()
        df.attrs["pitbox_session"] = self.id
        return df

    def lap(self, lap: int | pd.Series | Lap) -> Lap:
        """A lap by its ``lap_index`` (or a lap-table row)."""
        if isinstance(lap, Lap):
            return lap
        idx = int(lap["lap_index"]) if isinstance(lap, pd.Series) else int(lap)
        table = self.source.laps
        hit = table[table.lap_index == idx]
        if hit.empty:
            raise ReferenceLapNotFound(
                f"session {self.id}: no lap_index {idx}: expected 0..{len(table) - 1} (see 'pitbox laps {self.id}')")
        return Lap(self, idx, hit.iloc[0])

    def valid_laps(self) -> pd.DataFrame:
        t = self.source.laps
        return t[t.valid & t.complete & t.time_s.notna()]

    def fastest_lap(self, valid_only: bool = True) -> Lap:
        """The fastest complete lap (valid ones only unless ``valid_only=False``)."""
        t = self.valid_laps() if valid_only else self.source.laps[self.source.laps.complete]
        if t.empty:
            kind = "valid complete" if valid_only else "complete"
            raise NoValidLap(f"session {self.id}: no {kind} lap (lap table reasons: "
                             f"{', '.join(sorted(set(self.source.laps.reason) - {''})) or 'none'})")
        return self.lap(int(t.loc[t.time_s.idxmin(), "lap_index"]))

    def reference(self, spec: object = None) -> Lap:
        """A reference lap: ``None`` (fastest valid lap), a lap index, ``"SESSION:LAP"``, or a Lap."""
        if spec is None:
            return self.fastest_lap()
        ref = resolve_lap(spec, self.data, default_session=self)
        check_same_track(self, ref.session)
        if not ref.complete:
            raise BadReference(f"session {ref.session.id} lap_index {ref.lap_index} is not a complete lap "
                               f"({ref.row.reason}): a reference must start and end at the line")
        if not ref.valid:
            log.info("reference %s:%s is not a valid lap (%s); used because it was asked for",
                     ref.session.id, ref.lap_index, ref.row.reason)
        return ref

    # -- channels and distance ---------------------------------------------------------
    @cached_property
    def track_length_m(self) -> float:
        """Lap length [m]: ``LapDist``/``LapDistPct`` when the file has both, else the YAML's."""
        src = self.source
        if src.has("LapDist") and src.has("LapDistPct"):
            c = src.columns(["LapDist", "LapDistPct"])
            pct, dist = c["LapDistPct"].astype(np.float64), c["LapDist"].astype(np.float64)
            m = (pct > 0.05) & (pct < 0.95) & (dist > 0)
            if m.sum() > 10:
                return float(np.median(dist[m] / pct[m]))
        wi = self.info.get("WeekendInfo") or {}
        length = parse_track_length(wi.get("TrackLength", self.meta.get("track_length", "")))
        if length is None:
            raise PitboxError(f"session {self.id}: WeekendInfo.TrackLength: expected e.g. '3.21 km', "
                              f"found {wi.get('TrackLength')!r}, and no LapDist channel")
        return length

    def channels(self, names: Sequence[str], rows: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        return self.source.columns(names, rows)

    def available(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if self.source.has(n)]

    def trace(self, lap_index: int, step_m: float = DEFAULT_STEP_M, channels: Sequence[str] | None = None) -> Trace:
        """Lap ``lap_index`` resampled on the distance grid (cached per step)."""
        key = (int(lap_index), float(step_m))
        if channels is None and key in self._traces:
            return self._traces[key]
        tr = build_trace(self, self.lap(lap_index), step_m, channels)
        if channels is None:
            self._traces[key] = tr
        return tr


@dataclass
class Lap:
    """One lap of a session: its lap-table row and its telemetry."""

    session: Session
    lap_index: int
    row: pd.Series

    @property
    def time_s(self) -> float | None:
        v = self.row.time_s
        return None if pd.isna(v) else float(v)

    @property
    def complete(self) -> bool:
        return bool(self.row.complete)

    @property
    def valid(self) -> bool:
        return bool(self.row.valid)

    @property
    def label(self) -> str:
        return f"{self.session.id}:{self.lap_index}"

    def __repr__(self) -> str:
        t = f"{self.time_s:.3f} s" if self.time_s is not None else "incomplete"
        return f"<Lap {self.label} (lap {int(self.row.lap)}, {t}{'' if self.valid else ', ' + str(self.row.reason)})>"

    def rows(self) -> tuple[int, int, bool, bool]:
        """(first row, stop row, starts at the line, ends at the line), including the sample
        before the start line and the one after the finish line when the lap crosses them."""
        return lap_rows(self.session, self.row)

    def telemetry(self, channels: Sequence[str] | None = None) -> pd.DataFrame:
        """Measured samples of the lap (no interpolation) with ``time_s``, physics time since
        the start line [s] (:attr:`Session.physics_time_s`), and ``distance_m`` from it [m];
        includes the sample on each side of the line."""
        names = list(channels) if channels is not None else self.session.available(TRACE_CHANNELS)
        a, b, _, _ = self.rows()
        t, d = lap_time_distance(self.session, self.row)
        cols = self.session.channels(names, (a, b))
        df = pd.DataFrame({"time_s": t, "distance_m": d, **cols})
        df.attrs.update({"session_id": self.session.id, "lap_index": self.lap_index,
                         "track_length_m": self.session.track_length_m, "lap_time_s": self.time_s,
                         "kinds": {n: self.session.source.kinds.get(n, "linear") for n in names}})
        return df

    def trace(self, step_m: float = DEFAULT_STEP_M) -> Trace:
        return self.session.trace(self.lap_index, step_m)

    def on_distance(self, channels: Sequence[str] | None = None, step_m: float = DEFAULT_STEP_M) -> pd.DataFrame:
        """The lap resampled once on the distance grid (``distance_m``, ``time_s``, channels)."""
        if channels is None:
            return self.trace(step_m).to_frame()
        return build_trace(self.session, self, step_m, channels).to_frame()

    def delta_to(self, ref: Lap, step_m: float = DEFAULT_STEP_M) -> Delta:
        """Delta time of this lap against ``ref`` (> 0: behind), with closure and alignment error."""
        check_same_track(self.session, ref.session)
        return compute_delta(self.trace(step_m), ref.trace(step_m))


# -- lap rows, time and distance ---------------------------------------------------------

def lap_rows(session: Session, row: pd.Series) -> tuple[int, int, bool, bool]:
    a, b = int(row.start_row), int(row.end_row)
    n = session.source.n_rows
    edge = session.channels(["Lap", "LapDistPct"], (max(a - 1, 0), min(b + 1, n)))
    lap, pct = edge["Lap"], edge["LapDistPct"]
    started = a > 0 and int(lap[0]) + 1 == int(lap[1]) and pct[0] > 0.5 and pct[1] < 0.5
    ended = b < n and int(lap[-2]) + 1 == int(lap[-1]) and pct[-2] > 0.5 and pct[-1] < 0.5
    return a - int(started), b + int(ended), started, ended


def lap_time_distance(session: Session, row: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per sample of the lap (see :func:`lap_rows`): physics time since the start line [s]
    (:attr:`Session.physics_time_s`) and distance from it [m]."""
    a, b, started, _ = lap_rows(session, row)
    t = session.lap_clock(row, (a, b))
    names = ["LapDistPct"] if session.source.has("LapDistPct") else ["Speed"]
    c = session.channels(names, (a, b))
    if "LapDistPct" in c:
        d = unwrap_distance(c["LapDistPct"], session.track_length_m, started)
    else:
        d = integrate_speed(t, c["Speed"])
        if row.complete:
            d *= session.track_length_m / np.interp(float(row.time_s), t, d)
    return t, d


def build_trace(session: Session, lap: Lap, step_m: float = DEFAULT_STEP_M,
                channels: Sequence[str] | None = None) -> Trace:
    """Resample a lap once from its original samples onto the distance grid (and, for a
    complete lap followed by more driving, the first :data:`OVERRUN_FRACTION` of the next lap
    as :attr:`Trace.overrun`, for corner segments that run over the line)."""
    row = lap.row
    names = list(channels) if channels is not None else session.available(TRACE_CHANNELS)
    a, b, _, _ = lap_rows(session, row)
    t, d = lap_time_distance(session, row)
    length = session.track_length_m
    complete = bool(row.complete)
    grid = distance_grid(length, step_m) if complete else distance_grid(length, step_m, d[0], d[-1])
    cols = session.channels(names, (a, b))
    kinds = session.source.kinds
    resampled = {n: resample(d, v, grid, kinds.get(n, "linear")) for n, v in cols.items()}
    t_grid = np.interp(grid, d, t)
    ir = row.iracing_time_s
    tr = Trace(session.id, lap.lap_index, length, grid, t_grid, resampled,
               lap_time_s=float(row.time_s) if complete else None,
               iracing_time_s=None if pd.isna(ir) else float(ir), complete=complete,
               interp_error_s=interpolation_error_s(d, t, grid),
               distance_source="LapDistPct" if session.source.has("LapDistPct") else "Speed",
               gap_m=sample_gaps_m(d, t, grid, 1.0 / session.tick_rate))
    if complete and session.source.has("LapDistPct"):
        tr.overrun = _overrun(session, row, names, step_m)
    return tr


def _overrun(session: Session, row: pd.Series, names: list[str], step_m: float) -> Trace | None:
    """The start of the lap driven after ``row`` (same stretch of driving), on the grid
    ``L + step, L + 2 step …`` with time since ``row``'s start line."""
    table = session.source.laps
    nxt = table[(table.lap_index == int(row.lap_index) + 1) & (table.start_row == int(row.end_row))]
    if nxt.empty:
        return None
    length = session.track_length_m
    a = int(row.end_row) - 1
    b = min(int(nxt.iloc[0].end_row) + 1, session.source.n_rows)
    flags = session.available(["OnPitRoad", "PlayerTrackSurface"])
    c = session.channels(["LapDistPct", *names, *flags], (a, b))
    d = unwrap_distance(c["LapDistPct"], length, started=True) + length
    t = session.lap_clock(row, (a, b))
    stop = min(float(d[-1]), length * (1 + OVERRUN_FRACTION))
    grid = length + np.arange(step_m, stop - length + 1e-9, step_m)
    if len(grid) < 2:
        return None
    kinds = session.source.kinds
    return Trace(session.id, int(row.lap_index), length, grid, np.interp(grid, d, t),
                 {n: resample(d, c[n], grid, kinds.get(n, "linear")) for n in [*names, *flags]}, complete=False,
                 gap_m=sample_gaps_m(d, t, grid, 1.0 / session.tick_rate))


# -- loading and references --------------------------------------------------------------

def load_session(session: str | os.PathLike[str] | Session, data: str | os.PathLike[str] | None = None,
                 session_num: int | None = None) -> Session:
    """A session from the store (id, unique id prefix, ``.parquet`` path) or an ``.ibt`` file.

    ``data`` is the store folder (default ``$PITBOX_DATA`` or ``./data``).
    """
    if isinstance(session, Session):
        return session
    return Session(open_source(session, data, session_num), data)


def parse_lap_spec(spec: str) -> tuple[str, int]:
    """``"SESSION:LAP"`` -> (session, lap_index). SESSION may be a path with a drive letter."""
    text = str(spec)
    if ":" not in text:
        raise BadReference(f"{text!r}: expected SESSION:LAP (LAP is the lap table's lap_index)")
    sess, _, lap = text.rpartition(":")
    try:
        return sess, int(lap)
    except ValueError:
        raise BadReference(f"{text!r}: LAP {lap!r} is not an integer lap_index") from None


def resolve_lap(spec: object, data: str | os.PathLike[str] | None = None,
                default_session: Session | None = None) -> Lap:
    """A :class:`Lap` from an int (lap of ``default_session``), ``"SESSION:LAP"`` or a Lap."""
    if isinstance(spec, Lap):
        return spec
    if isinstance(spec, (int, np.integer)) or (isinstance(spec, str) and spec.isdigit()):
        if default_session is None:
            raise BadReference(f"lap {spec}: expected SESSION:LAP when no session is open")
        return default_session.lap(int(spec))
    sess, idx = parse_lap_spec(str(spec))
    if default_session is not None and sess in (default_session.id, str(default_session.source.path)):
        return default_session.lap(idx)
    return load_session(sess, data).lap(idx)


def check_same_track(a: Session, b: Session) -> None:
    """Raise :class:`TrackMismatch` unless both sessions are on the same track and layout."""
    if a is b:
        return
    ta, tb = (a.track, a.track_config), (b.track, b.track_config)
    if ta != tb:
        raise TrackMismatch(f"session {b.id} is at {'/'.join(filter(None, tb))!r} but session {a.id} is at "
                            f"{'/'.join(filter(None, ta))!r}: a reference must be on the same track and layout")
    la, lb = a.track_length_m, b.track_length_m
    if abs(la - lb) > 0.01 * max(la, lb):
        raise TrackMismatch(f"session {b.id}: track length {lb:.1f} m differs from {la:.1f} m of session {a.id}")


def grid_points(session: Session, step_m: float = DEFAULT_STEP_M) -> np.ndarray:
    return distance_grid(session.track_length_m, step_m)


__all__ = ["Lap", "Session", "load_session", "parse_lap_spec", "resolve_lap", "check_same_track",
           "parse_track_length"]
