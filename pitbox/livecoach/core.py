"""The live coach's core: fed one frame at a time, no I/O, no threads.

>>> coach = LiveCoach()                          # reference: the session's best valid lap
>>> derived = coach.feed(tick, session_time, values)   # {"pitbox_delta_s": .., ...} for this frame
>>> for job in coach.jobs(): result = analyst.handle(job); coach.deliver(result)  # after-lap work
>>> coach.messages()                             # reference / coach / tip messages to publish

Per tick (a few µs): the lap distance, the running delta to the reference by distance, the
predicted lap time, the per-corner delta of the lap so far, fuel and the tyre snapshot.
Laps are split at the line exactly as :func:`pitbox.laps.lap_table` splits them (Lap +1,
crossing time interpolated in ``LapDistPct``; all-zero rows and a falling lap number end a
stretch of driving, as a reset to the pits does), so the live lap time of a lap is the lap
table's. The after-lap work (lap-table row, new session best, coaching tips, references from
the store) is handed out as :mod:`~pitbox.livecoach.jobs` for an
:class:`~pitbox.livecoach.analyst.Analyst` that runs elsewhere (another process beside the
recorder); its results come back through :meth:`LiveCoach.deliver`.

Session boundaries follow the recorder's rules (``SessionUniqueID``/``SessionNum`` change,
the tick count going back, the driver re-entering the car), so the coach's rows are the
stored session's rows.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

import numpy as np

from pitbox.laps import MIN_TICK_PCT, NEIGHBOUR_STEPS, TICK_TOLERANCE
from pitbox.livecoach import jobs as J
from pitbox.livecoach.frames import TYRE_CHANNELS, FrameReader, read_channels
from pitbox.livecoach.fuel import FuelTarget, FuelTracker
from pitbox.livecoach.reference import ReferenceLap, parse_kind
from pitbox.livecoach.tyres import TyreSnapshot

log = logging.getLogger(__name__)

DERIVED = ("pitbox_delta_s", "pitbox_predicted_lap_s", "pitbox_lap_dist_m")
COACH_PERIOD_S = 1.0
CHUNK_ROWS = 600
#: the after-lap coaching waits until the next lap has covered the last corner's segment
#: (which runs over the line) plus this margin [m], so the analysis sees what was driven.
OVERRUN_MARGIN_M = 2.0
_NAN1 = (math.nan,)


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


class _Corners:
    """Per-corner delta of one lap, from the reference's corner segments (which tile the
    lap; the one holding the line wraps over it and is counted in two parts)."""

    def __init__(self, corners: list[dict[str, Any]], length_m: float):
        segs = sorted((float(c["seg_start_m"]) % length_m, str(c["name"])) for c in corners
                       if c.get("seg_start_m") is not None and math.isfinite(float(c["seg_start_m"])))
        self.bounds = [b for b, _ in segs]
        self.names = [n for _, n in segs]
        self.order = [str(c["name"]) for c in corners]
        self.reset()

    def reset(self) -> None:
        self.k = 0
        self.at: list[float] = []
        self.prev_x = 0.0
        self.prev_delta = 0.0

    def update(self, x: float, delta: float) -> None:
        b = self.bounds
        while self.k < len(b) and b[self.k] <= x:
            bx = b[self.k]
            dx = x - self.prev_x
            self.at.append(self.prev_delta + (delta - self.prev_delta) * (bx - self.prev_x) / dx if dx > 0 else delta)
            self.k += 1
        self.prev_x, self.prev_delta = x, delta

    def deltas(self, delta_now: float) -> list[dict[str, Any]]:
        """Time gained (-) or lost (+) in each corner's segment so far this lap [s]."""
        if not self.bounds:
            return []
        got: dict[str, float] = {}
        n, at, k = len(self.bounds), self.at, self.k
        wrap = self.names[-1]
        if self.bounds[0] > 0:
            got[wrap] = (at[0] if k >= 1 else delta_now)
        for j in range(k):
            end = at[j + 1] if j + 1 < k else delta_now
            if j == n - 1:
                got[wrap] = got.get(wrap, 0.0) + end - at[j]
            else:
                got[self.names[j]] = end - at[j]
        return [{"corner": c, "delta_s": round(got[c], 3)} for c in self.order if c in got]


class LiveCoach:
    """The I/O-free live coach (see the module docs).

    ``reference``: ``"session_best"`` (default), ``"all_time_best"``, ``"optimal"`` or
    ``"lap"`` with ``lap="SESSION:LAP"``. ``fuel_laps``/``fuel_minutes``: the target of
    "fuel to add" (default: the session's remaining laps or time when finite).
    ``coach_period_s``: the ``coach`` message is sent at most this often [s of session
    time] (and right after each lap).
    """

    def __init__(self, reference: str = "session_best", lap: str | None = None, *,
                 fuel_laps: float | None = None, fuel_minutes: float | None = None,
                 coach_period_s: float = COACH_PERIOD_S, chunk_rows: int = CHUNK_ROWS):
        self._ref_kind, self._ref_lap = parse_kind(reference, lap)
        self._ref_seq = 0
        self.coach_period_s = coach_period_s
        self.chunk_rows = chunk_rows
        self._fuel_target = FuelTarget(fuel_laps, fuel_minutes)
        self._jobs: deque[Any] = deque()
        self._messages: deque[dict[str, Any]] = deque()
        self._session_key = 0
        self.reference: ReferenceLap | None = None
        self.reference_error: str | None = None
        self.tips: list[dict[str, Any]] = []  #: the session's tips (messages), oldest first
        self.laps: list[dict[str, Any]] = []  #: lap-table rows of the completed laps
        self.corner_rows: list[dict[str, Any]] = []  #: per-corner table rows of the coached laps
        #: every lap the after-lap analysis coached: lap_index, lap, cut_tick, tips (count), elapsed_s
        self.coached: list[dict[str, Any]] = []
        self.meta: dict[str, Any] | None = None
        self.info: dict[str, Any] | None = None
        self.frames = 0
        self._new_session(None, None, None)

    # -- session ---------------------------------------------------------------------------
    def _new_session(self, meta: dict[str, Any] | None, info: dict[str, Any] | None, first_tick: int | None) -> None:
        self._session_key += 1
        self._reader = FrameReader()
        self._core: Any = None
        self._core_names: Any = None
        self._rows: list[tuple] = []
        self._rows_first = 0
        self._row = 0
        self._first_tick = first_tick
        self._last_tick: int | None = None
        self._key: tuple[Any, Any] | None = None
        self._on_track = False
        self._had_on_track = False
        self._prev: tuple[float, int, float, float] | None = None  # t, Lap, LapDistPct, FuelLevel
        self._blank = True
        self._lap_index: int | None = None
        self._lap_count = 0
        self._prev_tick = 0
        self._phys_prev: tuple[float, float, float] | None = None
        self._hitch_s = 0.0  #: SessionTime the sim hitched so far this session [s]
        self._regular: deque[tuple[int, float]] = deque(maxlen=4)
        self.tick_rate = float((meta or {}).get("tick_rate") or 60.0)
        self._lap: int | None = None
        self._lap_start_t: float | None = None
        self._lap_start_fuel: float | None = None
        self._lap_pit = False
        self._lap_frac = 0.0
        self._lap_x: list[float] = []
        self._lap_tl: list[float] = []
        self._pending_coach: tuple[int, int] | None = None  # (crossing_row, lap)
        self._overrun_m: float | None = None
        self._length_m: float | None = None  #: LapDist / LapDistPct of this session's data
        self._length_yaml: float | None = None if info is None else _yaml_length(info)
        self._corners: _Corners | None = None
        self._delta: float | None = None
        self._last_lap_s: float | None = None
        self._last_lap_delta_s: float | None = None
        self._last_lap_ref: str | None = None
        self._last_crossing_row: int | None = None
        self._last_corner_deltas: list[dict[str, Any]] = []
        self._best_lap_s: float | None = None
        self._t = math.nan
        self._tick = 0
        self._pct = math.nan
        self._next_state_t = -math.inf
        self._remain: tuple[float, float] = (math.nan, math.nan)
        self.fuel = FuelTracker(self._fuel_target)
        self.tyres = TyreSnapshot()
        self.tips = []
        self.laps = []
        self.corner_rows = []
        self.coached = []
        self.meta, self.info = meta, info
        self.reference = None  # a stored reference is asked for again once the new session's track is known
        self._corners = None
        self._jobs.append(J.NewSession(self._session_key, meta, info))
        if meta is not None and self._ref_kind in ("all_time_best", "lap"):
            self._ask_reference()

    @property
    def session_id(self) -> str | None:
        return None if self.meta is None else self.meta.get("id")

    def set_session(self, meta: Mapping[str, Any]) -> None:
        """The stream's ``session`` message (``meta``: ``id``, ``track``, ``car`` …). A
        session the coach has already started by itself (from the frames) takes its meta; a
        meta with another ``id`` after the first one starts a new session."""
        meta = dict(meta)
        if self.meta is not None and meta.get("id") != self.meta.get("id") and self._row > 0 \
                and not self._fresh_session():
            self._flush_rows()
            self._new_session(meta, None, None)
            return
        self.meta = meta
        self._jobs.append(J.SessionInfo(self._session_key, meta=meta))
        if self._ref_kind in ("all_time_best", "lap") and self.reference is None:
            self._ask_reference()

    def _fresh_session(self) -> bool:
        return self.meta is None

    def set_session_info(self, info: Mapping[str, Any]) -> None:
        """The stream's ``session_info`` message (the parsed session YAML)."""
        self.info = dict(info)
        self._length_yaml = _yaml_length(self.info)
        self._jobs.append(J.SessionInfo(self._session_key, info=self.info))
        if self._ref_kind in ("all_time_best", "lap") and self.reference is None:
            self._ask_reference()

    # -- reference -------------------------------------------------------------------------
    def set_reference(self, kind: str, lap: str | None = None) -> None:
        """Switch the reference while driving: ``session_best``, ``all_time_best``,
        ``optimal`` or ``lap`` with ``lap="SESSION:LAP"``. Raises ValueError for a bad
        choice; a lap that cannot be found is reported in the ``coach`` message's
        ``reference_error`` (the previous reference stays)."""
        self._ref_kind, self._ref_lap = parse_kind(kind, lap)
        self._ask_reference()

    def _ask_reference(self) -> None:
        self._ref_seq += 1
        self._flush_rows()
        self._jobs.append(J.SetReference(self._session_key, self._ref_kind, self._ref_lap, self._ref_seq))

    @property
    def reference_kind(self) -> tuple[str, str | None]:
        return self._ref_kind, self._ref_lap

    def use_reference(self, ref: ReferenceLap) -> None:
        """Measure against a :class:`ReferenceLap` built elsewhere (kept until the next
        switch; its ``kind`` becomes the reference kind, so an automatic session best does not
        replace it unless ``kind`` is ``session_best``)."""
        self._ref_kind, self._ref_lap = ref.kind, None
        self._ref_seq += 1  # answers to earlier requests are stale now
        self._use_reference(ref)

    def _use_reference(self, ref: ReferenceLap) -> None:
        self.reference = ref
        self.reference_error = None
        self._set_corners(ref)
        self._recompute_lap()
        self._messages.append(ref.message())
        self._queue_state()

    def _set_corners(self, ref: ReferenceLap) -> None:
        self._corners = _Corners(ref.corners, ref.length_m) if ref.corners else None
        overrun = [float(c["seg_end_m"]) - ref.length_m for c in ref.corners if c.get("seg_end_m") is not None]
        if overrun and self._overrun_m is None:
            self._overrun_m = max(max(overrun), 0.0)

    def _recompute_lap(self) -> None:
        """Delta and corner deltas of the lap so far against the (new) reference."""
        ref = self.reference
        if self._corners is not None:
            self._corners.reset()
        if ref is None or self._lap_start_t is None:
            self._delta = None
            return
        delta = None
        for x, tl in zip(self._lap_x, self._lap_tl, strict=True):
            delta = tl - ref.time_at(x * ref.length_m)
            if self._corners is not None:
                self._corners.update(x * ref.length_m, delta)
        self._delta = delta

    # -- frames ----------------------------------------------------------------------------
    def on_message(self, msg: Mapping[str, Any]) -> dict[str, Any] | None:
        """Any stream message: ``frame`` (returns its derived channels), ``history`` (its
        frames in order), ``session``, ``session_info``; others are ignored."""
        kind = msg.get("type")
        if kind == "frame":
            return self.feed(int(msg["tick"]), float(msg["t"]), msg["values"])
        if kind == "history":
            out = None
            for f in msg.get("frames") or ():
                out = self.feed(int(f["tick"]), float(f["t"]), f["values"])
            return out
        if kind == "session":
            self.set_session(msg["meta"])
        elif kind == "session_info":
            self.set_session_info(msg["info"])
        return None

    def feed(self, tick: int, session_time: float, values: Mapping[str, Any] | np.void) -> dict[str, Any]:
        """One frame: ``tick`` (iRacing's tick count), ``session_time`` [s] and its channel
        values (a dict, or the recorder's decoded row). Returns the derived channels of this
        frame: ``pitbox_delta_s`` [s] (> 0: slower than the reference at this distance),
        ``pitbox_predicted_lap_s`` [s], ``pitbox_lap_dist_m`` [m from the line]; None where
        unknown (no reference yet, an out lap, after a reset)."""
        if self._last_tick is not None and tick == self._last_tick:
            return self._derived()  # the same tick again (a reconnect): not a new row
        row = self._reader.read(values)
        if self._core is None or self._core_names is not self._reader.names:
            self._compile_core()
        uid, num, on_track, lap, pct, speed, fuel, pit, stall, laps_remain, time_remain, dist, stick = \
            self._core(row + _NAN1)
        uid = 0 if uid != uid else uid
        num = 0 if num != num else num
        on_track = bool(on_track)  # NaN (no IsOnTrack channel) counts as on track
        if self._row > 0 and ((uid, num) != self._key or (self._last_tick is not None and tick < self._last_tick)
                              or (on_track and not self._on_track and self._had_on_track)):
            self._end_session()
            self._new_session(None, None, tick)
            row = self._reader.read(values)
            self._compile_core()
        self.frames += 1
        self._key = (uid, num)
        self._on_track = on_track
        self._had_on_track |= on_track
        self._prev_tick = self._tick
        self._last_tick = self._tick = tick
        if self._first_tick is None:
            self._first_tick = tick
        t = float(session_time)
        self._t = t
        r = self._row
        self._rows.append(row)
        self._row += 1
        lap = int(lap) if lap == lap else 0
        pit = pit is True or (pit == pit and bool(pit))
        self._pct = pct
        self._remain = (laps_remain, time_remain)
        if self._length_m is None and 0.01 < pct < 0.99 and dist > 0:
            self._length_m = dist / pct
        if fuel == fuel:
            self.fuel.tick(fuel)
        if stall is True or (stall == stall and stall):
            self.tyres.take(read_channels(values, TYRE_CHANNELS), t, lap)
        elif self.tyres.in_stall:
            self.tyres.left_stall()
        self._laps(r, self._physics(t, pct, stick), lap, pct, speed, fuel, pit)
        if self._pending_coach is not None:
            self._maybe_coach(r, tick, pit)
        if len(self._rows) >= self.chunk_rows:
            self._flush_rows()
        if t >= self._next_state_t:
            self._queue_state()
        return self._derived()

    def _compile_core(self) -> None:
        """One itemgetter for the channels the core reads each tick (NaN when absent)."""
        names = self._reader.names or ()
        where = {n: k for k, n in enumerate(names)}
        missing = len(names)
        self._core = itemgetter(*[where.get(n, missing) for n in (
            "SessionUniqueID", "SessionNum", "IsOnTrack", "Lap", "LapDistPct", "Speed", "FuelLevel", "OnPitRoad",
            "PlayerCarInPitStall", "SessionLapsRemainEx", "SessionTimeRemain", "LapDist", "SessionTick")])
        self._core_names = self._reader.names

    def _derived(self) -> dict[str, Any]:
        d = self._delta
        ref = self.reference
        length = self._length_m or (ref.length_m if ref is not None else self._length_yaml)
        pct = self._pct
        return {"pitbox_delta_s": None if d is None else round(d, 4),
                "pitbox_predicted_lap_s": None if d is None or ref is None else round(ref.time_s + d, 4),
                "pitbox_lap_dist_m": None if length is None or not math.isfinite(pct) else round(pct * length, 2)}

    def _physics(self, t: float, pct: float, session_tick: float) -> float:
        """Physics time [s]: ``SessionTime`` with the sim's hitches taken out, as
        :func:`pitbox.laps.hitch_ticks` tells them (a step of ``k`` >= 2 ticks in which the car
        covered ``m`` ticks' distance holds ``k - m`` hitched ticks), judged here on the regular
        one-tick steps before the gap (the lap table also looks at those after it)."""
        prev = self._phys_prev
        self._phys_prev = (t, pct, session_tick)
        if prev is None:
            return t - self._hitch_s
        k = round((t - prev[0]) * self.tick_rate)
        dp = pct - prev[1]
        if dp < -0.5:
            dp += 1.0
        if k == 1:
            if 0 <= dp < 0.5:
                self._regular.append((self._row, dp))
        elif k >= 2:
            near = [d for row, d in self._regular if self._row - row <= NEIGHBOUR_STEPS + 1]
            per_tick = near[-1] if near else math.nan
            m = dp / per_tick if per_tick >= MIN_TICK_PCT else math.nan
            phys = k
            if m == m and abs(m - round(m)) <= TICK_TOLERANCE and 1 <= round(m) < k:
                phys = round(m)
            elif m != m and session_tick == session_tick and prev[2] == prev[2]:
                phys = min(max(int(session_tick - prev[2]), 1), k)
            self._hitch_s += (k - phys) / self.tick_rate
        return t - self._hitch_s

    def _laps(self, r: int, t: float, lap: int, pct: float, speed: float, fuel: float, pit: bool) -> None:
        """Line crossings and resets, as :func:`pitbox.laps.lap_table` finds them; ``t`` is
        physics time [s]."""
        blank = lap == 0 and pct == 0 and (speed == 0 or math.isnan(speed))
        prev = self._prev
        if blank:
            if not self._blank and self._lap_start_t is not None:
                log.debug("reset at row %d", r)
            self._blank = True
            self._abort_lap()
            self._lap_index = None
            self._prev = None
            return
        if self._blank or prev is None or lap < prev[1]:  # a new stretch of driving (lap_table's segment)
            self._lap_index = self._lap_count
            self._lap_count += 1
            self._blank = False
            self._abort_lap()
            self._lap = lap
            self._lap_pit = pit
        elif lap == prev[1] + 1:
            p0, p1 = prev[2], pct
            frac = (1.0 - p0) / max(p1 + 1.0 - p0, 1e-12) if p0 > 0.5 and p1 < 0.5 else 1.0
            frac = min(max(frac, 0.0), 1.0)
            t_cross = prev[0] + frac * (t - prev[0])
            fuel_cross = prev[3] + frac * (fuel - prev[3])
            if self._lap_start_t is not None:
                self._lap_complete(r, t_cross, fuel_cross)
            self._lap_index = self._lap_count
            self._lap_count += 1
            self._start_lap(lap, t_cross, fuel_cross, pit)
        else:
            self._lap_pit |= pit
        self._prev = (t, lap, pct, fuel)
        if self._lap_start_t is None:
            return
        x = pct if pct >= self._lap_frac - 0.5 else pct + 1.0
        x = max(x, self._lap_frac)
        self._lap_frac = x
        tl = t - self._lap_start_t
        self._lap_x.append(x)
        self._lap_tl.append(tl)
        ref = self.reference
        if ref is None:
            self._delta = None
            return
        xm = x * ref.length_m
        delta = tl - ref.time_at(xm)
        self._delta = delta
        if self._corners is not None:
            self._corners.update(xm, delta)

    def _abort_lap(self) -> None:
        self._lap_start_t = None
        self._lap_start_fuel = None
        self._delta = None
        self._lap_x, self._lap_tl = [], []
        self._lap_frac = 0.0
        if self._corners is not None:
            self._corners.reset()

    def _start_lap(self, lap: int, t_cross: float, fuel_cross: float, pit: bool) -> None:
        self._lap = lap
        self._lap_start_t = t_cross
        self._lap_start_fuel = fuel_cross
        self._lap_pit = pit
        self._lap_frac = 0.0
        self._lap_x, self._lap_tl = [], []
        if self._corners is not None:
            self._corners.reset()
        self._next_state_t = -math.inf  # a coach message at the end of this frame (the new lap's)

    def _lap_complete(self, crossing_row: int, t_cross: float, fuel_cross: float) -> None:
        assert self._lap_start_t is not None
        lap_time = t_cross - self._lap_start_t
        self._last_lap_s = lap_time
        ref = self.reference
        self._last_lap_ref = None if ref is None else ref.label
        if ref is not None:
            self._last_lap_delta_s = lap_time - ref.time_s
            if self._corners is not None:
                self._corners.update(ref.length_m, self._last_lap_delta_s)
                self._last_corner_deltas = self._corners.deltas(self._last_lap_delta_s)
        else:
            self._last_lap_delta_s = None
            self._last_corner_deltas = []
        if not self._lap_pit:
            used = None if self._lap_start_fuel is None else self._lap_start_fuel - fuel_cross
            self.fuel.lap(used, lap_time)
        lap = int(self._lap) if self._lap is not None else -1
        self._last_crossing_row = crossing_row
        self._flush_rows()
        self._jobs.append(J.LapDone(self._session_key, crossing_row, lap, self._ref_kind, self._ref_lap))
        if self._pending_coach is not None:  # the previous lap's coaching is still waiting: run it now
            self._issue_coach(crossing_row - 1, self._prev_tick)
        self._pending_coach = (crossing_row, lap)
        self._next_state_t = -math.inf  # a coach message at the end of this frame (the new lap's)

    def _maybe_coach(self, r: int, tick: int, pit: bool) -> None:
        crossing_row, _ = self._pending_coach  # type: ignore[misc]
        if r == crossing_row:
            return
        need = self._overrun_m
        length = self.reference.length_m if self.reference is not None else (self._length_m or self._length_yaml or 0.0)
        covered = need is not None and self._lap_start_t is not None and \
            self._lap_frac * length >= need + OVERRUN_MARGIN_M
        if covered or need is None or pit or self._lap_start_t is None:
            self._issue_coach(r, tick)

    def _issue_coach(self, cut_row: int, cut_tick: int) -> None:
        if self._pending_coach is None:
            return
        crossing_row, _ = self._pending_coach
        self._pending_coach = None
        self._flush_rows()
        self._jobs.append(J.Coach(self._session_key, crossing_row, cut_row, cut_tick, self._ref_kind, self._ref_lap))

    def _end_session(self) -> None:
        """The session ends: coach a lap still waiting on what was recorded."""
        if self._pending_coach is not None and self._row > 0:
            self._issue_coach(self._row - 1, self._tick)
        self._flush_rows()

    def finish(self) -> None:
        """The stream ended (the recorder stops): run what is still waiting."""
        self._end_session()

    def _flush_rows(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        first, self._rows_first = self._rows_first, self._rows_first + len(rows)
        dtype = self._reader.dtype
        try:
            arr = np.array(rows, dtype=dtype)
        except (ValueError, TypeError, OverflowError):
            cols = list(zip(*rows, strict=True))
            arr = np.zeros(len(rows), dtype=dtype)
            for name, col in zip(dtype.names or (), cols, strict=True):
                v = np.asarray(col, dtype=np.float64)
                arr[name] = np.nan_to_num(v, nan=0.0) if dtype[name].kind != "f" else v
        self._jobs.append(J.Rows(self._session_key, first, arr))

    # -- results of the after-lap analysis ------------------------------------------------
    def deliver(self, result: Any) -> None:
        """A result of the analyst (:mod:`pitbox.livecoach.jobs`); stale ones are ignored."""
        if isinstance(result, J.CoachResult) and result.session == self._session_key - 1:
            for tip in result.tips:  # the last lap of the session just left: its tips still count
                self._messages.append({"v": 1, "type": "tip", **tip})
            return
        if getattr(result, "session", None) != self._session_key:
            return
        if isinstance(result, J.ReferenceResult):
            if result.seq != self._ref_seq:
                return
            if result.reference is not None:
                self._use_reference(result.reference)
            else:
                self.reference_error = result.error
                self._queue_state()
        elif isinstance(result, J.LapResult):
            if result.row is not None:
                self.laps.append(result.row)
                if result.row.get("time_s") is not None and result.crossing_row == self._last_crossing_row:
                    self._last_lap_s = float(result.row["time_s"])  # the lap table's own time of the lap just done
            self._best_lap_s = result.best_lap_s
            if result.reference is not None and result.reference.kind == self._ref_kind:
                self._use_reference(result.reference)
            else:
                self._queue_state()
        elif isinstance(result, J.CoachResult):
            if result.overrun_m is not None:
                self._overrun_m = result.overrun_m
            self.corner_rows.extend(result.corner_row)
            if result.lap_index is not None:
                self.coached.append({"lap_index": result.lap_index, "lap": result.lap, "cut_tick": result.cut_tick,
                                     "tips": len(result.tips), "elapsed_s": round(result.elapsed_s, 3),
                                     "error": result.error})
            if result.error:
                log.warning("after-lap analysis of lap %s failed: %s", result.lap, result.error)
            for tip in result.tips:
                msg = {"v": 1, "type": "tip", **tip}
                self.tips.append(msg)
                self._messages.append(msg)
            if result.reference is not None and result.reference.kind == self._ref_kind:
                self._use_reference(result.reference)
            self._queue_state()

    # -- output ----------------------------------------------------------------------------
    def jobs(self) -> list[Any]:
        """Work for the after-lap analyst, oldest first (taken: each is returned once)."""
        out = list(self._jobs)
        self._jobs.clear()
        return out

    def messages(self) -> list[dict[str, Any]]:
        """``reference``, ``coach`` and ``tip`` messages to publish, oldest first (taken)."""
        out = list(self._messages)
        self._messages.clear()
        return out

    def _queue_state(self) -> None:
        self._next_state_t = self._t + self.coach_period_s if math.isfinite(self._t) else -math.inf
        self._messages.append(self.state())

    def state(self) -> dict[str, Any]:
        """The ``coach`` message now (contract A, plus ``delta_s``, ``last_lap_delta_s`` and
        ``last_lap_corner_deltas`` with ``last_lap_reference`` (the label they were measured
        against), ``lap_dist_m``, ``reference_error``, ``session``, ``t``, ``tick``)."""
        ref = self.reference
        d = self._delta
        corners = self._corners.deltas(d) if self._corners is not None and d is not None else []
        length = self._length_m or (ref.length_m if ref is not None else self._length_yaml)
        lap_fraction = self._pct if math.isfinite(self._pct) else None
        laps_remain, time_remain = self._remain
        return {
            "v": 1, "type": "coach", "session": self.session_id, "t": _r(self._t), "tick": self._tick,
            "lap": self._lap, "lap_index": self._lap_index,
            "reference": None if ref is None else ref.summary(), "reference_error": self.reference_error,
            "corner_deltas": corners, "last_lap_corner_deltas": self._last_corner_deltas,
            "delta_s": _r(d, 4), "last_lap_s": _r(self._last_lap_s, 4), "last_lap_delta_s": _r(self._last_lap_delta_s, 4),
            "last_lap_reference": self._last_lap_ref,
            "best_lap_s": _r(self._best_lap_s, 4),
            "predicted_lap_s": None if d is None or ref is None else _r(ref.time_s + d, 4),
            "lap_dist_m": None if length is None or lap_fraction is None else _r(lap_fraction * length, 2),
            "fuel": self.fuel.state(lap_fraction, laps_remain, time_remain),
            "tyres": self.tyres.state(self._t if math.isfinite(self._t) else None),
        }


def _yaml_length(info: Mapping[str, Any]) -> float | None:
    from pitbox.analysis.session import parse_track_length

    wi = info.get("WeekendInfo") or {}
    return parse_track_length(str(wi.get("TrackLength", ""))) if isinstance(wi, Mapping) else None
