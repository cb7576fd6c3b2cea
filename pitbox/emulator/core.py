"""The iRacing emulator: plays ``.ibt`` files into iRacing's live memory layout.

:class:`Emulator` turns its sources into a deterministic sequence of actions (write a
layout, publish a tick, update the YAML, go offline) and executes them either one at a
time (:meth:`Emulator.step`, for deterministic tests) or paced in real time ×
``speed`` (:meth:`Emulator.run`, or :meth:`Emulator.start` in a background thread).
Every tick published is recorded as a :class:`TickRecord` (ground truth: which source row
went out under which ``tick_count``) and every state change as an :class:`EmulatorEvent`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pitbox.emulator.channels import LiveLayout, live_layout
from pitbox.emulator.livemap import NUM_BUF, LiveMapWriter, geometry
from pitbox.emulator.rows import RowBuilder, out_of_car_source
from pitbox.emulator.transitions import TRANSITIONS
from pitbox.errors import ConfigError, PitboxError
from pitbox.ibt.layout import NUMPY_TYPES, STATUS_CONNECTED, pack_var_headers
from pitbox.ibt.reader import TelemetryFile, open_telemetry

log = logging.getLogger(__name__)

CHUNK_ROWS = 512
MAX_LAG_S = 0.25  #: behind schedule by more than this (a suspended process): worth a warning in the log


@dataclass(frozen=True)
class TickRecord:
    """Ground truth for one published tick."""

    tick_count: int  #: the buffer's tick_count
    buf_index: int  #: which of the 3 row buffers holds it
    source_index: int  #: index into :attr:`Emulator.sources`
    source_path: Path
    source_row: int | None  #: row of the source file; None for out-of-car ticks
    kind: str  #: "row" (a source row) or "out_of_car" (driver out of the car)
    session_num: int  #: SessionNum published in the row
    layout_id: int  #: 0 for the first layout, +1 at each sim restart
    wall_s: float  #: time.perf_counter() just after publishing
    #: time.perf_counter() the tick was due on the paced schedule (``wall_s - due_s`` is how
    #: late the emulator published it); ``wall_s`` itself when not paced (``step``, speed inf)
    due_s: float = math.nan


@dataclass(frozen=True)
class EmulatorEvent:
    """A state change, in the order it happened.

    ``kind``: ``layout`` (header, variables and YAML written; status 0), ``connected``
    (status 1, after the first tick of a layout), ``yaml`` (session_info_update bumped),
    ``session`` (SessionNum changed), ``exit`` / ``enter`` (driver leaves / re-enters the
    car), ``offline`` (status 0: the sim quits, a restart follows), ``stall`` / ``resume``,
    ``finished`` (sources exhausted; status 0), ``stopped`` (stop requested; status 0).
    """

    kind: str
    tick_count: int  #: last tick published before the event in this layout (0: none yet)
    wall_s: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Source:
    index: int
    path: Path
    file: TelemetryFile
    layout: LiveLayout
    builder: RowBuilder
    yaml_raw: bytes
    event_key: tuple
    first_session_num: int
    last_session_num: int

    @property
    def tick_rate(self) -> int:
        return self.file.tick_rate


@dataclass(frozen=True)
class _Action:
    kind: str  # layout | tick | yaml | offline | event | finished
    source: _Source | None = None
    row: bytes | memoryview | None = None
    record: TickRecord | None = None
    steps: int = 1
    data: Any = None


def _with_values(row: bytes | memoryview, layout: LiveLayout, values: dict[str, Any]) -> bytearray:
    """A copy of a live row with ``values`` (channel -> value) written over it."""
    out = bytearray(row)
    for c in layout.channels:
        v = c.var
        if v.name in values:
            np.frombuffer(out, NUMPY_TYPES[v.type], v.count, v.offset)[...] = values[v.name]
    return out


_SESSION_NUM = re.compile(rb"^(\s*-?\s*(?:Current)?SessionNum: )(\d+)", re.M)


def remap_session_num(yaml_raw: bytes, offset: int) -> bytes:
    """The YAML with every ``SessionNum:`` / ``CurrentSessionNum:`` value shifted by ``offset``."""
    if not offset:
        return yaml_raw
    return _SESSION_NUM.sub(lambda m: m.group(1) + str(int(m.group(2)) + offset).encode(), yaml_raw)


def _event_key(info: dict[str, Any]) -> tuple:
    wi = info.get("WeekendInfo") or {}
    di = info.get("DriverInfo") or {}
    return (wi.get("TrackID"), wi.get("SessionID"), wi.get("SubSessionID"), di.get("DriverUserID"),
            di.get("DriverCarIdx"))


def _open_source(index: int, path: Path, catalogue: Any) -> _Source:
    f = open_telemetry(path)
    if f.n_rows < 1:
        f.close()
        raise PitboxError(f"{path}: no rows to play")
    info = f.session_info
    layout = live_layout(f.variables, catalogue)
    nums = f.read(["SessionNum"], 0, 1)["SessionNum"] if "SessionNum" in f.channels else np.zeros(1, np.int32)
    last = f.read(["SessionNum"], f.n_rows - 1)["SessionNum"] if "SessionNum" in f.channels else nums
    raw = f.session_info_raw
    if not raw.endswith(b"\n"):
        raw += b"\n"
    return _Source(index, path, f, layout, RowBuilder(layout, info), raw, _event_key(info),
                   int(nums[0]), int(last[-1]))


class Emulator:
    """Writes iRacing's live shared-memory layout for ``sources`` into ``memmap_path``.

    Parameters
    ----------
    sources: ``.ibt`` files (or live dumps), played one after another.
    memmap_path: the file a reader opens with ``irsdk.IRSDK().startup(test_file=...)``.
    speed: playback rate; 1.0 is real time (the source's tick rate, 60 Hz), ``math.inf``
        publishes as fast as possible.
    loop: start again from the first source after the last, forever (until :meth:`stop`).
    stall_at, stall_for: when the tick about to be published reaches ``stall_at``, publish
        nothing for ``stall_for`` wall-clock seconds (status stays connected). Once.
    skip_every, skip_count: after every ``skip_every`` published ticks, drop ``skip_count``
        ticks: the next tick_count (and source row) advances by ``1 + skip_count``.
    transitions: what happens between two sources: ``auto`` (default), ``session`` (new
        SessionNum, YAML update), ``exit`` (driver out of the car for ``exit_gap_s``, then
        back in) or ``restart`` (status 0 for ``restart_gap_s``, then a new header and
        layout). One value for every boundary, or one per boundary (cycled with ``loop``).
    exit_gap_s, restart_gap_s: lengths of those gaps in emulated seconds (divided by speed).
    on_tick, on_event: called (in the emulator's thread) after each tick / event.
    keep_ground_truth: keep every :class:`TickRecord` in :attr:`ticks`.
    """

    def __init__(
        self,
        sources: Sequence[str | os.PathLike[str]],
        memmap_path: str | os.PathLike[str],
        *,
        speed: float = 1.0,
        loop: bool = False,
        stall_at: int | None = None,
        stall_for: float = 0.0,
        skip_every: int = 0,
        skip_count: int = 1,
        transitions: str | Sequence[str] = "auto",
        exit_gap_s: float = 2.0,
        restart_gap_s: float = 2.0,
        on_tick: Callable[[TickRecord], None] | None = None,
        on_event: Callable[[EmulatorEvent], None] | None = None,
        keep_ground_truth: bool = True,
        catalogue: Any = None,
    ):
        if not sources:
            raise ConfigError("emulate: at least one SOURCE file is needed")
        if not (speed > 0):
            raise ConfigError(f"emulate: speed must be > 0 (math.inf: as fast as possible), got {speed}")
        if skip_every < 0 or skip_count < 1:
            raise ConfigError(f"emulate: skip_every must be >= 0 and skip_count >= 1, got {skip_every}, {skip_count}")
        if stall_for < 0 or exit_gap_s < 0 or restart_gap_s < 0:
            raise ConfigError("emulate: stall_for, exit_gap_s and restart_gap_s must be >= 0")
        self.transitions = [transitions] if isinstance(transitions, str) else list(transitions)
        bad = [t for t in self.transitions if t not in TRANSITIONS]
        if bad or not self.transitions:
            raise ConfigError(f"emulate: transition must be one of {', '.join(TRANSITIONS)}; got {bad or 'nothing'}")
        self.memmap_path = Path(memmap_path)
        self.speed = float(speed)
        self.loop = loop
        self.stall_at, self.stall_for = stall_at, float(stall_for)
        self.skip_every, self.skip_count = int(skip_every), int(skip_count)
        self.exit_gap_s, self.restart_gap_s = float(exit_gap_s), float(restart_gap_s)
        self.on_tick, self.on_event = on_tick, on_event
        self.keep_ground_truth = keep_ground_truth
        self._sources: list[_Source] = []
        try:
            for i, p in enumerate(sources):
                self._sources.append(_open_source(i, Path(p), catalogue))
        except BaseException:
            self._close_sources()
            raise
        self.geometry = geometry(max(s.layout.buf_len for s in self._sources))
        self.ticks: list[TickRecord] = []
        self.events: list[EmulatorEvent] = []
        self.published = 0  #: ticks published
        self.dropped = 0  #: ticks skipped on purpose (skip_every)
        self._writer: LiveMapWriter | None = None
        self._actions: Iterator[_Action] | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._done = False
        self._stalled = False
        # state of the action generator
        self._tick = 0  # last tick_count planned
        self._src_tick0 = 1  # first tick of the source being planned
        self._last_tick = 0  # last tick_count published in the current layout
        self._buf = 0
        self._layout_id = -1
        self._planned = 0
        self._pending_connect = False
        self._tick_due = 0
        self._finish_lock = threading.Lock()
        self._by_tick: dict[tuple[int, int], TickRecord] = {}
        self._live_values: dict[str, Any] = {}  #: set_live: written into every tick published

    # -- public API ---------------------------------------------------------------------
    def set_live(self, name: str, value: Any) -> None:
        """Write ``value`` into the live channel ``name`` of every tick published from now on,
        whatever the source says (what the driver does in the sim: pressing the radio's
        push-to-talk sets ``RadioTransmitCarIdx`` to his car index); ``None`` gives the
        channel back to the source. Any thread. :class:`ConfigError` when no source
        publishes ``name``."""
        if value is None:
            self._live_values.pop(name, None)
            return
        if not any(name in s.layout.names for s in self._sources):
            raise ConfigError(f"emulate: set_live {name!r}: no source publishes that channel live")
        self._live_values[name] = value
    @property
    def sources(self) -> list[Path]:
        return [s.path for s in self._sources]

    def live_layout(self, source_index: int = 0) -> LiveLayout:
        """The live variable set published for one source."""
        return self._sources[source_index].layout

    @property
    def finished(self) -> bool:
        return self._done

    def open(self) -> Emulator:
        """Create the map file at full size and write the first layout (status 0). Idempotent."""
        if self._writer is None:
            self._writer = LiveMapWriter(self.memmap_path, self.geometry)
            self._actions = self._plan()
            self._execute(next(self._actions))  # the first layout
        return self

    def step(self) -> TickRecord | EmulatorEvent | None:
        """Execute actions without waiting until one tick is published (returns its record),
        the sim goes offline (returns that event), or the sources end (returns None).

        No clock: stalls are not applied and gaps take no time (out-of-car ticks are still
        published one per call)."""
        self.open()
        assert self._actions is not None
        for action in self._actions:
            result = self._execute(action)
            if action.kind == "tick" or (action.kind == "offline"):
                return result
            if action.kind == "finished":
                return None
        return None

    def run(self) -> None:
        """Publish every source in real time × speed until the end (or :meth:`stop`); then
        set status 0 and close the map."""
        self.open()
        assert self._actions is not None
        try:
            self._run_paced(self._actions)
        finally:
            self._finish("stopped" if self._stop.is_set() and not self._done else None)

    def start(self) -> Emulator:
        """Open the map (so it exists when this returns) and :meth:`run` in a background thread."""
        if self._thread is not None:
            raise PitboxError("emulate: already started")
        self.open()
        self._thread = threading.Thread(target=self.run, name="pitbox-emulator", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop after the current action (safe from a signal handler)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop, wait for the background thread, set status 0 and close the map."""
        self.request_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        """Set status 0 (if the map is open), close the map and the sources."""
        if self._thread is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self.request_stop()
            self._thread.join(5.0)
        self._finish("stopped" if not self._done else None)
        self._close_sources()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` is true (checked after every tick and event) or timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or (self._done and not predicate()):
                    return predicate()
                self._cond.wait(min(left, 0.05))
        return True

    def record_for(self, tick_count: int, layout_id: int | None = None) -> TickRecord | None:
        """The ground-truth record of a tick (in the current layout when ``layout_id`` is None)."""
        return self._by_tick.get((self._layout_id if layout_id is None else layout_id, tick_count))

    def __enter__(self) -> Emulator:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the plan: a deterministic sequence of actions ----------------------------------------
    def _sequence(self) -> Iterator[_Source]:
        while True:
            yield from self._sources
            if not self.loop:
                return

    def _plan(self) -> Iterator[_Action]:
        prev: _Source | None = None
        offset = 0
        last_row: dict[str, Any] = {}
        for boundary, src in enumerate(self._sequence(), start=-1):
            if prev is None:
                self._tick = 0
                yield _Action("layout", src)
            else:
                kind = self._transition_kind(boundary, prev, src)
                if kind == "restart":
                    yield _Action("offline", data=self.restart_gap_s)
                    self._tick = 0  # a new sim process counts ticks from the start
                    yield _Action("layout", src)
                    offset = 0
                elif kind == "session":
                    offset = max(0, prev.last_session_num + offset + 1 - src.first_session_num)
                    yield _Action("yaml", data=(remap_session_num(src.yaml_raw, offset), "session"))
                    yield _Action("event", data=("session", {"session_num": src.first_session_num + offset,
                                                             "source": str(src.path)}))
                else:  # exit: the same session goes on after the driver gets back in
                    yield from self._out_of_car(prev, last_row, offset)
                    new_yaml = remap_session_num(src.yaml_raw, offset)
                    if new_yaml != remap_session_num(prev.yaml_raw, offset):
                        yield _Action("yaml", data=(new_yaml, "enter"))
                    yield _Action("event", data=("enter", {"source": str(src.path)}))
            last_row = yield from self._play(src, offset)
            prev = src
        yield _Action("finished")

    def _transition_kind(self, boundary: int, prev: _Source, src: _Source) -> str:
        kind = self.transitions[boundary % len(self.transitions)]
        same_layout = prev.layout.signature() == src.layout.signature()
        if kind == "auto":
            if not same_layout or prev.event_key != src.event_key:
                return "restart"
            return "session" if src.first_session_num != prev.last_session_num else "exit"
        if kind != "restart" and not same_layout:
            log.warning("%s and %s publish different variables: a %s is impossible, restarting the sim",
                        prev.path.name, src.path.name, kind)
            return "restart"
        return kind

    def _publish_plan(self, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Source rows to publish and the tick step before each (1, or 1 + skip_count)."""
        rows, steps = [], []
        r = 0
        while r < n_rows:
            step = 1
            if rows and self.skip_every and self._planned % self.skip_every == 0:
                step += self.skip_count
                r += self.skip_count
                if r >= n_rows:
                    break
            rows.append(r)
            steps.append(step)
            self._planned += 1
            r += 1
        return np.asarray(rows, dtype=np.int64), np.asarray(steps, dtype=np.int64)

    def _tick_actions(self, src: _Source, live: np.ndarray, ticks: np.ndarray, steps: np.ndarray,
                      rows: np.ndarray | None, kind: str) -> Iterator[_Action]:
        raw = memoryview(live.tobytes())
        bl = src.layout.buf_len
        nums = live["SessionNum"] if "SessionNum" in live.dtype.names else np.zeros(len(ticks), np.int32)
        for i in range(len(ticks)):
            rec = TickRecord(int(ticks[i]), -1, src.index, src.path, None if rows is None else int(rows[i]),
                             kind, int(nums[i]), -1, 0.0)
            yield _Action("tick", src, raw[i * bl : (i + 1) * bl], rec, int(steps[i]))

    def _play(self, src: _Source, offset: int) -> Iterator[_Action]:
        """Tick actions for every published row of one source; returns its last source row."""
        rows, steps = self._publish_plan(src.file.n_rows)
        ticks_all = self._tick + np.cumsum(steps)
        self._tick = int(ticks_all[-1]) if len(ticks_all) else self._tick
        self._src_tick0 = int(ticks_all[0]) if len(ticks_all) else self._tick
        last_row: dict[str, Any] = {}
        for c in range(0, len(rows), CHUNK_ROWS):
            idx, stp, ticks = rows[c : c + CHUNK_ROWS], steps[c : c + CHUNK_ROWS], ticks_all[c : c + CHUNK_ROWS]
            lo = max(int(idx[0]) - 1, 0)
            data = src.file.read(None, lo, int(idx[-1]) + 1)
            sel = idx - lo
            chunk = {k: v[sel] for k, v in data.items()}
            before = {k: v[np.maximum(sel - 1, 0)] for k, v in data.items()}  # the source row before each
            t_s = (ticks - self._src_tick0) / src.tick_rate
            live = src.builder.build(chunk, before, ticks, t_s, offset)
            yield from self._tick_actions(src, live, ticks, stp, idx, "row")
            last_row = {k: v[-1] for k, v in chunk.items()}
        return last_row

    def _out_of_car(self, prev: _Source, last_row: dict[str, Any], offset: int) -> Iterator[_Action]:
        """The driver out of the car for ``exit_gap_s``: IsOnTrack false, time running on."""
        n = round(self.exit_gap_s * prev.tick_rate) if last_row else 0
        yield _Action("event", data=("exit", {"ticks": n, "source": str(prev.path)}))
        if n <= 0:
            return
        cols = out_of_car_source(last_row, n, prev.tick_rate)
        before = {k: np.concatenate([np.asarray(last_row[k])[None], v[:-1]]) for k, v in cols.items()}
        ticks = self._tick + np.arange(1, n + 1)
        self._tick = int(ticks[-1])
        t_s = (ticks - self._src_tick0) / prev.tick_rate  # the other cars keep lapping
        live = prev.builder.build(cols, before, ticks, t_s, offset)
        yield from self._tick_actions(prev, live, ticks, np.ones(n, np.int64), None, "out_of_car")

    # -- executing actions ----------------------------------------------------------------
    def _emit(self, kind: str, **detail: Any) -> EmulatorEvent:
        ev = EmulatorEvent(kind, self._last_tick, time.perf_counter(), detail)
        self.events.append(ev)
        if self.on_event:
            self.on_event(ev)
        with self._cond:
            self._cond.notify_all()
        return ev

    def _execute(self, a: _Action, due_s: float | None = None) -> TickRecord | EmulatorEvent | None:
        w = self._writer
        assert w is not None
        if a.kind == "tick":
            return self._publish(a, due_s)
        if a.kind == "layout":
            src = a.source
            assert src is not None
            self._layout_id += 1
            self._last_tick = 0
            w.write_layout(pack_var_headers(src.layout.variables), len(src.layout.variables), src.layout.buf_len,
                           src.yaml_raw, src.tick_rate, max(2, src.file.header.version))
            self._pending_connect = True
            return self._emit("layout", layout_id=self._layout_id, source=str(src.path),
                              num_vars=len(src.layout.variables), buf_len=src.layout.buf_len)
        if a.kind == "yaml":
            raw, why = a.data
            update = w.update_session_info(raw)
            return self._emit("yaml", session_info_update=update, reason=why)
        if a.kind == "offline":
            w.set_status(0)
            return self._emit("offline", seconds=a.data)
        if a.kind == "event":
            kind, detail = a.data
            return self._emit(kind, **detail)
        if a.kind == "finished":
            self._finish("finished")
            return None
        raise AssertionError(a.kind)  # pragma: no cover

    def _publish(self, a: _Action, due_s: float | None = None) -> TickRecord:
        w = self._writer
        assert w is not None and a.record is not None and a.row is not None
        tick = a.record.tick_count
        # iRacing puts tick T in buffer T % 3 (all four real dumps); then it rotates
        self._buf = tick % NUM_BUF if self._pending_connect else (self._buf + 1) % NUM_BUF
        row = a.row if not self._live_values or a.source is None else _with_values(a.row, a.source.layout,
                                                                                    self._live_values.copy())
        w.write_tick(self._buf, tick, row)
        if self._pending_connect:
            w.set_status(STATUS_CONNECTED)
        now = time.perf_counter()
        rec = TickRecord(tick, self._buf, a.record.source_index, a.record.source_path, a.record.source_row,
                         a.record.kind, a.record.session_num, self._layout_id, now, now if due_s is None else due_s)
        self.published += 1
        self.dropped += a.steps - 1
        self._last_tick = tick
        if self.keep_ground_truth:
            self.ticks.append(rec)
            self._by_tick[(rec.layout_id, rec.tick_count)] = rec
        if self.on_tick:
            self.on_tick(rec)
        if self._pending_connect:
            self._pending_connect = False
            self._emit("connected", layout_id=self._layout_id)
        with self._cond:
            self._cond.notify_all()
        return rec

    def _finish(self, kind: str | None) -> None:
        """Status 0 and the map closed; records a final event once."""
        with self._finish_lock:
            if self._writer is None:
                return
            if not self._done:
                self._done = True
                self._writer.set_status(0)
                if kind:
                    self._emit(kind)
            self._writer.close()
            self._writer = None
        with self._cond:
            self._cond.notify_all()

    def _close_sources(self) -> None:
        for s in self._sources:
            s.file.close()

    # -- pacing ---------------------------------------------------------------------------
    def _sleep_until(self, deadline: float) -> None:
        """Sleep until ``deadline`` (perf_counter seconds) in slices of at most 50 ms, so a
        stop request is seen quickly; time.sleep is high-resolution on Linux and, since
        Python 3.11, on Windows."""
        while not self._stop.is_set():
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def _run_paced(self, actions: Iterator[_Action]) -> None:
        """Execute actions on a drift-free schedule: tick k is due at ``base + k * period``
        (dropped ticks take their periods too), whatever the time spent writing."""
        paced = math.isfinite(self.speed)
        base, periods, first_of_layout = time.perf_counter(), 0, True
        for a in actions:
            if self._stop.is_set():
                return
            due: float | None = None
            if a.kind == "tick":
                assert a.source is not None and a.record is not None
                period = 1.0 / (a.source.tick_rate * self.speed) if paced else 0.0
                if first_of_layout:
                    base, periods, first_of_layout = time.perf_counter(), 0, False
                else:
                    periods += a.steps
                deadline = base + periods * period
                if paced:
                    due = deadline
                    lag = time.perf_counter() - deadline
                    if lag > MAX_LAG_S:
                        log.warning("emulator %.2f s behind schedule: re-anchoring (no burst)", lag)
                    if lag > period / 2:
                        # late (a row block was being built, or the machine was busy): move the
                        # schedule on from now, as the sim's next frame would be, so late ticks are
                        # never published back to back where no 60 Hz reader could take them all
                        base += lag
                    self._sleep_until(base + periods * period)
                if self._should_stall(a.record.tick_count):
                    self._tick_due = a.record.tick_count
                    base += self._stall()
                if self._stop.is_set():
                    return
            self._execute(a, due)
            if a.kind == "offline":
                self._sleep_until(time.perf_counter() + (a.data / self.speed if paced else 0.0))
            elif a.kind == "layout":
                first_of_layout = True
            elif a.kind == "finished":
                return

    def _should_stall(self, tick_count: int) -> bool:
        return self.stall_at is not None and not self._stalled and tick_count >= self.stall_at

    def _stall(self) -> float:
        """Publish nothing for ``stall_for`` wall seconds (status stays 1); returns the time stalled."""
        self._stalled = True
        t0 = time.perf_counter()
        self._emit("stall", seconds=self.stall_for, next_tick=self._tick_due)
        self._sleep_until(t0 + self.stall_for)
        self._emit("resume")
        return time.perf_counter() - t0
