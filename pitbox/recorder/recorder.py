"""The live recorder's tick loop.

One thread runs :meth:`Recorder.run`: wait for the sim, then per tick: the source's frozen
row bytes (``freeze_var_buffer_latest()``), the three values the loop looks at
(``SessionUniqueID``, ``SessionNum``, ``IsOnTrack``) read at their offsets, the row appended
to the open session's batch, and every ``flush_s`` seconds the batch handed to the segment
writer thread. Rows are stored raw and decoded with the layout's one structured dtype
(never one lookup per channel); with a publisher, one ``np.frombuffer`` gives the frame's
values. Nothing in the loop waits on the disk or the network.

Session boundaries (a new session file starts):

* the first tick after connecting, unless the sim only paused (no tick for ``timeout_s``
  without the header saying it stopped) and comes back with the same layout, the same
  ``SessionUniqueID``/``SessionNum`` and a higher tick count within ``resume_s``;
* ``SessionUniqueID`` or ``SessionNum`` changes;
* the driver re-enters the car: ``IsOnTrack`` goes from false to true after the session
  already had the driver on track (iRacing shows leaving the car as ``IsOnTrack`` false,
  and starts a new ``.ibt`` file at each re-entry);
* the tick count goes back, the header status goes to 0, or the layout changes (the sim
  restarted).
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pitbox.errors import StoreError
from pitbox.ibt.layout import MAX_BUFS, VarHeader, VarType
from pitbox.recorder.finalize import recover
from pitbox.recorder.segments import variables_to_json
from pitbox.recorder.sources import Layout, Source, SourceGone
from pitbox.recorder.writer import Finalizer, SegmentWriter, prewarm

log = logging.getLogger(__name__)


_STRUCT_CODES = {VarType.CHAR: "c", VarType.BOOL: "?", VarType.INT: "i", VarType.BITFIELD: "I",
                 VarType.FLOAT: "f", VarType.DOUBLE: "d"}


def _field_reader(v: VarHeader | None, default: Any) -> Callable[[bytes], Any]:
    """Reads one scalar channel from a row at its offset (the loop's few session keys; the
    rows themselves are decoded with the layout's structured dtype when stored)."""
    if v is None or v.count != 1:
        return lambda row: default
    unpack, offset = struct.Struct("<" + _STRUCT_CODES[v.type]).unpack_from, v.offset
    return lambda row: unpack(row, offset)[0]


@dataclass
class _Session:
    id: str
    layout: Layout
    key: tuple[int, int]
    first_tick: int
    last_tick: int
    on_track: bool
    had_on_track: bool
    ticks: list[int] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)
    batch_start: float = 0.0
    n_rows: int = 0
    dropped: int = 0
    suspended_at: float | None = None


@dataclass
class RecorderStats:
    """Counters of one :meth:`Recorder.run` (for the CLI, the bench and the tests)."""

    ticks: int = 0
    dropped: int = 0
    sessions_started: int = 0
    connects: int = 0
    first_tick: int | None = None  #: the first tick recorded
    last_tick: int | None = None  #: the last tick recorded (readable from any thread)
    #: the sim's newest tick when the recorder joined it running (None: it waited for the sim's first tick)
    joined_at_tick: int | None = None
    tick_cost_ns: list[int] | None = None  #: per-tick cost when measuring (poll + freeze + decode + buffer)
    max_stall_ms: float = 0.0  #: longest time between two looks at the sim while connected (OS or interpreter stalls)


class Recorder:
    """Records every tick of a :class:`Source` into crash-safe session files in ``data``.

    ``publisher``: any object with ``publish_frame(tick, session_time, values)`` (called in
    the tick loop, last, with the row decoded as a numpy structured scalar; must not
    block), and optionally ``publish_lap(row)``,
    ``publish_session(meta)`` and ``publish_session_info(info)`` (called from the writer
    thread). ``on_session(path)`` is called with each session file written. ``index``: add
    each stored session to the team index, in the finalizer thread, whenever no session is
    being recorded (and at the end).
    """

    def __init__(self, source: Source, data: str | os.PathLike[str], *, flush_s: float = 0.5,
                 fsync: bool = True, publisher: Any = None, on_session: Callable[[Path], None] | None = None,
                 resume_s: float = 10.0, recover_first: bool = True, link_stints: bool = True,
                 measure: bool = False, index: bool = True):
        self.source = source
        self.data = Path(data)
        self.flush_s = flush_s
        self.publisher = publisher
        self.resume_s = resume_s
        self.recover_first = recover_first
        self.on_session = on_session
        self.stats = RecorderStats(tick_cost_ns=[] if measure else None)
        self._stop = threading.Event()
        self._finalizer = Finalizer(self.data, on_session=on_session, link=link_stints, index=index,
                                    busy=lambda: self.session_open)
        self._writer = SegmentWriter(self.data, self._finalizer, fsync=fsync, publisher=publisher)
        self._session: _Session | None = None
        self._layout: Layout | None = None
        self._yaml: tuple[int, bytes] | None = None
        self._dtype: np.dtype | None = None
        self._uid = self._num = self._on_track = self._time = _field_reader(None, 0)
        self._held_info: tuple[int, bytes] | None = None
        self._resync = False  # just connected: ticks already stored may come again
        self._joined_at: int | None = None  # Layout.joined_at_tick, until the connection's first tick

    # -- public ----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to close the open session and return (thread-safe)."""
        self._stop.set()

    @property
    def session_open(self) -> bool:
        """True while a session is being recorded (readable from any thread)."""
        return self._session is not None

    @property
    def stored(self) -> list[Path]:
        """Session files written so far."""
        return list(self._finalizer.stored)

    def run(self, duration_s: float | None = None, until_gone: bool = False) -> list[Path]:
        """Record until :meth:`stop` (or ``duration_s`` seconds, or, with ``until_gone``, the
        first time the sim goes away); returns the session files written.

        Raises :class:`StoreError` when the store cannot be written; what was recorded
        until then stays on disk and ``pitbox recover`` turns it into a session.
        """
        self._check_store()
        prewarm()
        # A full garbage collection of a process with pandas, pyarrow… loaded takes ~40 ms,
        # during which no thread runs: long enough to lose a tick. Objects that exist now are
        # moved out of the collector's way while recording (gc.freeze, undone at the end).
        gc.collect()
        gc.freeze()
        # The writer threads hand the interpreter back within 1 ms instead of 5 ms.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, 0.001))
        if self.recover_first:  # indexed later, when no session is being recorded
            recovered = recover(self.data, on_session=self.on_session, index=False)
            if self._finalizer.index:
                self._finalizer.to_index += recovered
        self._finalizer.start()
        self._writer.start()
        deadline = time.monotonic() + duration_s if duration_s is not None else None
        try:
            self._run(deadline, until_gone)
        finally:
            self._end_session("recorder stopped")
            self._writer.stop()
            self._writer.join()
            self._finalizer.stop()
            self._finalizer.join()
            self.source.disconnect()
            gc.unfreeze()
            sys.setswitchinterval(switch)
        error = self._writer.error or self._finalizer.error
        if error is not None:
            raise error
        return self.stored

    # -- the loops -------------------------------------------------------------------
    def _check_store(self) -> None:
        try:
            self.data.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.data}: cannot create the data folder: {exc.strerror or exc}") from None
        if not os.access(self.data, os.W_OK):
            raise StoreError(f"{self.data}: the data folder is read-only: expected a folder the recorder can write")

    def _run(self, deadline: float | None, until_gone: bool) -> None:
        stop = self._stop
        timer: threading.Timer | None = None
        if deadline is not None:
            timer = threading.Timer(max(0.0, deadline - time.monotonic()), stop.set)
            timer.daemon = True
            timer.start()
        try:
            while not stop.is_set():
                layout = self._connect()
                if layout is None:
                    break
                try:
                    self._loop()
                    if self._writer.error is not None or self._finalizer.error is not None:
                        break  # the store cannot be written: stop (run() raises the error)
                except SourceGone as gone:
                    self._gone(gone)
                    if gone.final or until_gone:
                        break
                finally:
                    self.source.disconnect()
        finally:
            if timer is not None:
                timer.cancel()

    def _connect(self) -> Layout | None:
        """Wait for the sim; a suspended session is closed once ``resume_s`` has passed."""
        while not self._stop.is_set():
            s = self._session
            until = s.suspended_at + self.resume_s if s is not None and s.suspended_at is not None else None
            layout = self.source.connect(self._stop, until)
            if layout is None:
                if until is not None and not self._stop.is_set():
                    self._end_session("the sim did not come back")
                    continue
                return None
            self._set_layout(layout)
            self.stats.connects += 1
            return layout
        return None

    def _set_layout(self, layout: Layout) -> None:
        s = self._session
        if s is not None and not layout.same_rows(s.layout):
            self._end_session("the sim came back with another layout")
        self._layout = layout
        self._dtype = layout.dtype
        chans = {v.name: v for v in layout.variables}
        self._uid = _field_reader(chans.get("SessionUniqueID"), 0)
        self._num = _field_reader(chans.get("SessionNum"), 0)
        self._on_track = _field_reader(chans.get("IsOnTrack"), True)
        self._time = _field_reader(chans.get("SessionTime"), 0.0)
        self._yaml = None
        self._resync = True
        self._joined_at = layout.joined_at_tick

    def _loop(self) -> None:
        src, stop = self.source, self._stop
        cost = self.stats.tick_cost_ns
        clock = time.perf_counter_ns
        writer = self._writer
        stats = self.stats
        prev = clock()
        while not stop.is_set():
            t0 = clock()
            if t0 - prev > stats.max_stall_ms * 1e6:
                stats.max_stall_ms = (t0 - prev) / 1e6
            prev = t0
            got = src.poll()
            if got is None:
                if writer.error is not None or self._finalizer.error is not None:
                    return
                self._idle_flush()
                src.idle()
                continue
            info = src.session_info()
            self._tick(got[0], got[1], info)
            if cost is not None:
                cost.append(clock() - t0)
            if writer.error is not None:
                return

    def _tick(self, tick: int, row: bytes, info: tuple[int, bytes] | None) -> None:
        key = (self._uid(row), self._num(row))
        on_track = bool(self._on_track(row))
        s = self._session
        if self._resync and s is not None and key == s.key and 0 <= s.last_tick - tick < MAX_BUFS:
            self._held_info = info or self._held_info  # a stored tick again: the catch-up after reconnecting
            return
        self._resync = False
        joined, self._joined_at = self._joined_at, None
        if info is None and self._held_info is not None:
            info, self._held_info = self._held_info, None
        if info is not None:
            self._yaml = info
        if s is not None:
            reason = None
            if key != s.key:
                reason = "session changed"
            elif tick <= s.last_tick:
                reason = "the tick count went back (the sim restarted)"
            elif on_track and not s.on_track and s.had_on_track:
                reason = "the driver re-entered the car"
            if reason is not None:
                self._end_session(reason)
                s = None
            elif s.suspended_at is not None:
                s.suspended_at = None
                log.info("session %s resumed at tick %d", s.id, tick)
        if s is None:
            s = self._begin(tick, key, on_track, joined)
        elif info is not None:
            self._flush(s)
            self._writer.yaml(s.id, tick, info[0], info[1])
        gap = tick - s.last_tick - 1
        if gap > 0:
            s.dropped += gap
            self.stats.dropped += gap
        s.last_tick = tick
        s.on_track = on_track
        s.had_on_track |= on_track
        s.ticks.append(tick)
        s.rows.append(row)
        s.n_rows += 1
        stats = self.stats
        if stats.first_tick is None:
            stats.first_tick, stats.joined_at_tick = tick, joined
        stats.last_tick = tick
        stats.ticks += 1
        if time.monotonic() - s.batch_start >= self.flush_s:
            self._flush(s)
        if self.publisher is not None:
            rec = np.frombuffer(row, self._dtype, count=1)[0]  # owns its bytes: the frozen copy
            self.publisher.publish_frame(tick, self._time(row), rec)

    # -- sessions --------------------------------------------------------------------
    def _begin(self, tick: int, key: tuple[int, int], on_track: bool, joined_at: int | None = None) -> _Session:
        layout = self._layout
        assert layout is not None and self._dtype is not None
        now = datetime.now(timezone.utc)
        sid = f"{now:%Y%m%d-%H%M%S}-live-{secrets.token_hex(3)}-{key[1]}"
        s = _Session(sid, layout, key, tick, tick - 1, on_track, False, batch_start=time.monotonic())
        meta = {
            "id": sid, "start": now.isoformat(), "tick_rate": layout.tick_rate, "buf_len": layout.buf_len,
            "variables": variables_to_json(list(layout.variables)), "source_name": layout.source_name,
            "source_kind": layout.source_kind, "first_tick": tick, "joined_at_tick": joined_at,
            "session_unique_id": key[0],
            "session_num": key[1],
        }
        self._writer.open(sid, meta, self._dtype)
        if self._yaml is not None:
            self._writer.yaml(sid, tick, self._yaml[0], self._yaml[1])
        self._session = s
        self.stats.sessions_started += 1
        log.info("session %s started at tick %d (SessionNum %d)%s", sid, tick, key[1],
                 "" if joined_at is None else f"; joined the running sim at its tick {joined_at}")
        return s

    def _flush(self, s: _Session) -> None:
        if s.rows:
            self._writer.rows(s.id, s.ticks, s.rows)
            s.ticks, s.rows = [], []
        s.batch_start = time.monotonic()

    def _idle_flush(self) -> None:
        s = self._session
        if s is not None and s.rows and time.monotonic() - s.batch_start >= self.flush_s:
            self._flush(s)

    def _end_session(self, reason: str) -> None:
        s = self._session
        if s is None:
            return
        self._flush(s)
        self._writer.close(s.id, {"reason": reason, "last_tick": s.last_tick, "rows": s.n_rows,
                                  "dropped_ticks": s.dropped, "closed": datetime.now(timezone.utc).isoformat()})
        log.info("session %s ended (%s): %d rows, %d dropped ticks", s.id, reason, s.n_rows, s.dropped)
        self._session = None

    def _gone(self, gone: SourceGone) -> None:
        log.info("%s: %s", self.source.name, gone.reason)
        s = self._session
        if s is None:
            return
        if gone.reason.startswith("no tick") and not gone.final:
            self._flush(s)
            s.suspended_at = time.monotonic()  # may resume if the sim only paused
        else:
            self._end_session(gone.reason)
