"""Where the recorder's ticks come from: iRacing through pyirsdk, or a replayed session.

A source has one small contract (:class:`Source`), so that the recorder's tick loop is the
same for the live sim, an emulator's memory map and a replay:

* :meth:`Source.connect` blocks until the sim is there (or the stop event is set, or the
  optional monotonic deadline passed) and returns the row :class:`Layout`; else ``None``.
* :meth:`Source.poll` returns ``(tick_count, row_bytes)`` for a new tick, or ``None`` when
  there is none yet; it raises :class:`SourceGone` when the sim went away (header status
  0, no tick for ``timeout_s``, the tick count going back, or a new variable layout).
* :meth:`Source.session_info` returns ``(session_info_update, yaml_bytes)`` when the YAML
  changed since the last call.
* :meth:`Source.idle` waits a little between polls; :meth:`Source.disconnect` lets go.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pitbox.errors import IbtFormatError, PitboxError
from pitbox.ibt.layout import (
    HEADER_SIZE,
    VarHeader,
    VarType,
    layout_variables,
    row_dtype,
)
from pitbox.ibt.reader import check_header, open_telemetry, parse_header, parse_var_headers

log = logging.getLogger(__name__)

#: Header fields 0..9 (ver, status, tick_rate, session_info_update, session_info_len,
#: session_info_offset, num_vars, var_header_offset, num_buf, buf_len), 2 pad, then per
#: buffer (tick_count, buf_offset, pad, pad).
_HEADER = struct.Struct("<28i")
_STATUS, _SI_UPDATE, _SI_LEN, _SI_OFF, _NUM_BUF = 1, 3, 4, 5, 8
_LAYOUT_FIELDS = slice(6, 10)  # num_vars, var_header_offset, num_buf, buf_len
_TICKS = slice(12, 28, 4)


class SourceGone(PitboxError):
    """The sim went away (or a replay ended); the recorder closes the session or waits."""

    def __init__(self, reason: str, final: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.final = final  #: the source will not come back (end of a replay)


@dataclass(frozen=True)
class Layout:
    """The row layout of a connection: every variable at its offset in a ``buf_len`` row."""

    variables: tuple[VarHeader, ...]
    buf_len: int
    tick_rate: int
    source_name: str
    source_kind: str  #: "live" (pyirsdk) or "replay"
    #: newest tick the sim had already published when this connection first saw it
    #: (the recorder joined a running sim); None when the recorder was waiting before the
    #: sim's first tick of this layout (or for a replay)
    joined_at_tick: int | None = None

    @property
    def dtype(self) -> np.dtype:
        return row_dtype(list(self.variables), self.buf_len)

    def same_rows(self, other: Layout | None) -> bool:
        return other is not None and self.variables == other.variables and self.buf_len == other.buf_len


class Source(Protocol):
    name: str

    def connect(self, stop: threading.Event, until: float | None = None) -> Layout | None: ...

    def poll(self) -> tuple[int, bytes] | None: ...

    def session_info(self) -> tuple[int, bytes] | None: ...

    def idle(self) -> None: ...

    def disconnect(self) -> None: ...


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pyirsdk prints when the sim is not running; the library never prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


class IrsdkSource:
    """iRacing's live memory through unmodified pyirsdk.

    **Attaching.** Until the memory exists, :meth:`connect` looks for it every
    ``connect_poll_s`` (10 ms): a ``stat`` of the ``test_file``, or on Windows whether
    iRacing's data-valid event exists (a kernel call; pyirsdk's own start-up, which first
    asks iRacing's local web server, runs only once it does). Then pyirsdk maps it, and
    while the header status is 0 the variable headers are parsed already and the status is
    watched (every ``poll_s``; on Windows on the data-valid event). The first :meth:`poll`
    after connecting **catches up**: it returns every tick still in the sim's row buffers
    (iRacing keeps three), oldest first, so a recorder that was waiting records from the
    sim's first tick even when it looks up to two ticks late; one that joins a running sim
    records from the oldest tick still there and says so (:attr:`Layout.joined_at_tick`).

    **Ticks.** A new tick is a change in the newest buffer's ``tick_count``. Between looks
    it waits: with ``test_file=None`` (Windows' shared memory ``Local\\IRSDKMemMapFileName``)
    on iRacing's data-valid event, as iRacing's own ``irsdk_waitForDataReady`` does; with a
    ``test_file`` (an emulator's memory map, any OS) until just before the next tick is due,
    then every ``poll_s`` (0.25 ms): see :meth:`idle`.
    Each new tick: ``freeze_var_buffer_latest()`` copies the newest row (on Windows the
    buffer's own ``freeze()``, the same copy: ``freeze_var_buffer_latest`` first waits on the
    event, which would skip to the next tick); a tick before it that was not read yet (the
    loop was late, or is catching up) is copied from its own buffer. Then the tick counts
    are read again and a copy is kept only when its buffer still holds the same tick: the
    check of iRacing's own ``irsdk_getNewData``; the emulator clears a buffer's tick count
    before it rewrites the row, so a row torn by the sim rewriting it is never returned (it
    counts as dropped).
    """

    def __init__(self, test_file: str | os.PathLike[str] | None = None, *, timeout_s: float = 2.0,
                 poll_s: float = 0.00025, connect_poll_s: float = 0.01, source_name: str | None = None):
        self.test_file = Path(test_file) if test_file is not None else None
        self.name = str(self.test_file) if self.test_file else "iRacing"
        #: stored as the sessions' ``source_name``
        self.source_name = source_name or ("iRacing live" if self.test_file is None else self.test_file.name)
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        #: reading a file: look this long after the next tick is due (one look finds it)…
        self.late_s = 0.001
        #: …and every ``bracket_every`` ticks this long (at most a quarter tick) before it is
        #: due, then every ``poll_s`` until it comes: a look that found nothing followed by one
        #: that finds the tick brackets its publish time, which keeps the phase and interval true
        self.early_s = 0.0005
        self.bracket_every = 15
        self._since_bracket = 0  # ticks since the last bracketed one
        self._looked_at = 0.0  # when the header was last looked at [monotonic s]
        self._phase = 0.0  # when the sim published its newest tick [monotonic s], as bracketed by two looks
        self._interval = 0.0  # the sim's tick interval [s] as measured (0: not yet; at most a period)
        self._intervals: deque[float] = deque(maxlen=9)
        self._bracketed: tuple[float, int] | None = None  # publish time and tick of the last bracketed tick
        self._missed_at: float | None = None
        self.connect_poll_s = connect_poll_s
        self._period = 1 / 60
        self.ir: Any = None
        self._mm: Any = None
        self._layout_key: tuple[int, ...] = ()
        self._last_tick: int | None = None
        self._last_seen = 0.0
        self._si_update: int | None = None
        #: set while pyirsdk has the memory mapped (and the recorder has looked at it once)
        self.mapped = threading.Event()
        self._pending: list[tuple[int, bytes]] = []
        self._layout_cache: tuple[tuple[int, ...], bytes, list[VarHeader], int, int, int] | None = None
        self._empty_key: tuple[int, ...] | None = None  # a layout seen before its first tick
        self.torn = 0  #: rows discarded because the sim rewrote them while they were copied

    # -- connection ----------------------------------------------------------------------
    def _map_exists(self) -> bool:
        """Cheap check, before pyirsdk's start-up, that the memory is there to map."""
        if self.test_file is not None:
            try:
                return self.test_file.stat().st_size >= HEADER_SIZE
            except OSError:
                return False
        return _data_valid_event_exists()  # pragma: no cover - Windows shared memory only

    def _startup(self) -> bool:
        import irsdk

        if not self._map_exists():
            return False
        ir = irsdk.IRSDK()
        try:
            with _quiet():
                ok = ir.startup(test_file=str(self.test_file)) if self.test_file else ir.startup()
        except (OSError, ValueError, AttributeError) as exc:  # no file yet, empty file, not Windows
            log.debug("pyirsdk startup failed: %s", exc)
            ok = False
        if not ok:
            _shutdown(ir)
            return False
        self.ir, self._mm = ir, ir._shared_mem
        self._empty_key = None
        return True

    def connect(self, stop: threading.Event, until: float | None = None) -> Layout | None:
        """Wait for the sim (until ``stop`` is set or the monotonic time ``until``).

        pyirsdk maps the memory once it exists; while the header status is 0 the mapping is
        kept and the status watched (so the first tick is not missed).
        """
        while not stop.is_set():
            if self.ir is not None or self._startup():
                head = _HEADER.unpack_from(self._mm, 0)
                if not any(head[_TICKS][: max(0, min(head[_NUM_BUF], 4))]):
                    self._empty_key = head[_LAYOUT_FIELDS]  # the sim has not published a tick yet
                self.mapped.set()  # after that first look
                if head[_STATUS] == 1:
                    layout = self._read_layout()
                    if layout is not None:
                        return layout
                    self.disconnect()
                else:
                    self._parse_layout()
            if until is not None and until - time.monotonic() <= 0:
                return None
            if self.ir is not None:
                self._wait_status()
            else:
                wait = self.connect_poll_s
                stop.wait(wait if until is None else max(0.0, min(wait, until - time.monotonic())))
        return None

    def _wait_status(self) -> None:
        """Between two looks at a mapped header with status 0: iRacing's data-valid event
        (signalled each tick once the sim is live), or a quarter of a tick (the first poll
        catches up on the buffers, so a look up to two ticks late loses nothing)."""
        if self.test_file is None:
            self.ir._wait_valid_data_event()  # pragma: no cover - Windows shared memory only
        else:
            rate = self._layout_cache[4] if self._layout_cache is not None and self._layout_cache[4] > 0 else 60
            time.sleep(0.25 / rate)

    def _parse_layout(self) -> tuple[tuple[int, ...], bytes, list[VarHeader], int, int, int] | None:
        """Header and variable headers of the map as they are now (None while not sane).

        Parsed while the sim still shows status 0 too and cached, so that when it goes to
        1 only a byte comparison stands between the first tick and the recorder.
        """
        mm = self._mm
        head = _HEADER.unpack_from(mm, 0)
        key = head[_LAYOUT_FIELDS]
        num_vars, vho = key[0], key[1]
        if head[0] < 1 or num_vars <= 0 or vho <= 0 or vho + num_vars * 144 > len(mm):
            return None
        raw = mm[vho : vho + num_vars * 144]
        cached = self._layout_cache
        if cached is not None and cached[0] == key and cached[1] == raw:
            return cached
        try:
            h = parse_header(mm[:HEADER_SIZE], self.name)
            check_header(h, len(mm), self.name, live=True)
            end = max(h.var_header_offset + h.num_vars * 144, h.session_info_offset + h.session_info_len)
            variables = parse_var_headers(mm[:end], h, self.name)
        except IbtFormatError as exc:
            log.info("memory map not ready: %s", exc)
            return None
        self._layout_cache = (key, raw, variables, h.buf_len, h.tick_rate, h.num_buf)
        return self._layout_cache

    def _read_layout(self) -> Layout | None:
        """The layout when the header says connected and is sane, else None (try again)."""
        parsed = self._parse_layout()
        if parsed is None:
            return None
        key, _, variables, buf_len, tick_rate, num_buf = parsed
        self._layout_key = key
        self._last_tick = None  # the first poll catches up on every tick still in the buffers
        self._last_seen = self._phase = time.monotonic()
        self._missed_at = self._bracketed = None
        self._since_bracket = 0
        self._interval = 0.0
        self._intervals.clear()
        self._si_update = None
        self.num_buf = num_buf
        self._period = 1.0 / tick_rate if tick_rate > 0 else 1 / 60
        joined = None if self._empty_key == key else max(_HEADER.unpack_from(self._mm, 0)[_TICKS][:num_buf])
        log.info("connected to %s: %d channels, %d-byte rows%s", self.name, len(variables), buf_len,
                 "" if joined is None else f"; the sim was running (tick {joined})")
        return Layout(tuple(variables), buf_len, tick_rate, self.source_name, "live", joined)

    def disconnect(self) -> None:
        if self.ir is not None:
            self.mapped.clear()
            self._mm = None
            _shutdown(self.ir)
            self.ir = None

    # -- ticks ---------------------------------------------------------------------------
    def _header(self) -> tuple[int, ...]:
        head = _HEADER.unpack_from(self._mm, 0)
        if head[_LAYOUT_FIELDS] != self._layout_key:
            raise SourceGone("a new variable layout (the sim restarted)")
        return head

    def poll(self) -> tuple[int, bytes] | None:
        if self._pending:
            return self._pending.pop(0)
        if self.test_file is not None and self._last_tick is not None and time.monotonic() < self._look_at():
            return None  # not time to look yet (idle() sleeps until it is)
        head = self._header()
        looked, self._looked_at = self._looked_at, time.monotonic()
        nb = self.num_buf
        ticks = head[_TICKS][:nb]
        order = sorted(range(nb), key=ticks.__getitem__)
        newest = ticks[order[-1]]
        last = self._last_tick
        if head[_STATUS] != 1 and (last is None or newest <= last):  # the last ticks before status 0 are kept
            raise SourceGone("header status 0 (the sim stopped)")
        if last is not None and newest <= last:
            if newest < last:
                raise SourceGone(f"tick count went back from {last} to {newest} (the sim restarted)")
            now = time.monotonic()
            if now - self._last_seen > self.timeout_s:
                raise SourceGone(f"no tick for {self.timeout_s:g} s")
            self._missed_at = now  # a look that found nothing: the next tick comes after it
            return None
        floor = 0 if last is None else last  # just connected: catch up on every buffer
        copies = [(ticks[k], k, self._copy(k, k == order[-1])) for k in order if ticks[k] > floor]
        after = _HEADER.unpack_from(self._mm, 0)[_TICKS][:nb]
        for t, k, row in copies:
            if row is not None and after[k] == t:  # the slot still holds that tick: not torn
                self._pending.append((t, row))
            else:
                self.torn += 1
        now = time.monotonic()
        self._learn_phase(now, looked, newest, newest - (last if last is not None else newest - 1))
        self._last_tick = newest
        self._last_seen = now
        return self._pending.pop(0) if self._pending else None

    def _learn_phase(self, now: float, looked: float, newest: int, new_ticks: int) -> None:
        """When the sim published its newest tick, and how often it ticks. A tick found right
        after a look that found nothing (``poll_s`` before) was published between the two:
        that brackets its publish time, and two bracketed ticks give the interval (their time
        apart over their ticks apart; the median of the last nine, so a stall does not move
        it). A tick found at the first look is taken as published one interval after the one
        before, kept between the look before (``looked``) and now. A replay faster than real time is learned the same
        way; until an interval is known the loop looks every ``poll_s``."""
        missed, self._missed_at = self._missed_at, None
        if missed is not None and now - missed <= 2 * self.poll_s:
            if self._bracketed is not None and newest > self._bracketed[1]:
                t0, k0 = self._bracketed
                self._intervals.append((missed - t0) / (newest - k0))
                self._interval = min(statistics.median(self._intervals), self._period)
            self._bracketed = (missed, newest)
            self._phase = missed
            self._since_bracket = 0
        else:
            if not self._interval:
                self._bracketed = None
            guess = self._phase + new_ticks * self._interval if self._interval else now
            self._phase = min(max(guess, looked), now)
            self._since_bracket += 1

    def _early(self) -> float:
        return min(self.early_s, self._interval / 4)

    def _look_at(self) -> float:
        """When to look for the next tick [monotonic s]: ``late_s`` after it is due, or
        ``early_s`` before it when it is time to bracket one (0 while no interval is known)."""
        if not self._interval:
            return 0.0
        due = self._phase + self._interval
        return due - self._early() if self._since_bracket >= self.bracket_every else due + self.late_s

    def _copy(self, k: int, newest: bool) -> bytes | None:
        """Row bytes of buffer ``k``: through ``freeze_var_buffer_latest()`` for the newest one;
        an older one still unread (the loop was late by a tick) through that buffer's own
        ``freeze()``."""
        ir = self.ir
        buf = ir._header.var_buf[k]
        if newest and self.test_file is not None:  # with iRacing's event it would wait for the next tick
            ir.freeze_var_buffer_latest()
            if ir._var_buffer_latest is buf:
                return buf.get_memory()
        buf.freeze()
        row = buf.get_memory()
        buf.unfreeze()
        return row

    def session_info(self) -> tuple[int, bytes] | None:
        mm = self._mm
        head = _HEADER.unpack_from(mm, 0)
        upd = head[_SI_UPDATE]
        if upd == self._si_update:
            return None
        off, n = head[_SI_OFF], head[_SI_LEN]
        raw = mm[off : off + n]
        if _HEADER.unpack_from(mm, 0)[_SI_UPDATE] != upd:
            return None  # rewritten while copied: take it next tick
        self._si_update = upd
        return upd, raw.split(b"\x00", 1)[0]

    def idle(self) -> None:
        """Wait for the next tick: iRacing's data-valid event (up to 32 ms). Reading a file:
        one sleep until ``late_s`` after the next tick is due (its phase and interval learned
        from the ticks, see :meth:`_learn_phase`), so that one look finds it; every
        ``bracket_every`` ticks a look ``early_s`` before it is due and then every ``poll_s``,
        which keeps the phase learned. A look that finds nothing is followed by one every
        ``poll_s``; when the sim is more than two ticks late (paused, or the machine busy),
        two looks a tick. Each look costs a wake-up (tens of microseconds of CPU on a
        virtual machine), so looks are few. Catching up on the buffers makes a look up to two
        ticks late lose nothing."""
        if self.test_file is None:
            self.ir._wait_valid_data_event()  # pragma: no cover - Windows shared memory only
            return
        now = time.monotonic()
        look = self._look_at()
        if look - now > self.poll_s:
            time.sleep(look - now)
        elif not self._interval or now - self._phase < 2 * self._interval + self.poll_s:
            time.sleep(self.poll_s)
        else:  # the sim is late (paused, or the machine busy): half-tick looks until it ticks
            time.sleep(max(self.poll_s, self._interval / 2))


def _data_valid_event_exists() -> bool:  # pragma: no cover - Windows shared memory only
    """Whether iRacing's data-valid event exists (iRacing is running), without waiting."""
    if sys.platform != "win32":
        return True  # pyirsdk's start-up says why it cannot map the memory
    import ctypes

    import irsdk

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenEventW(0x00100000, False, irsdk.DATAVALIDEVENTNAME)  # SYNCHRONIZE
    if not handle:
        return False
    kernel32.CloseHandle(handle)
    return True


def _shutdown(ir: Any) -> None:
    try:
        ir.shutdown()
    except (OSError, BufferError, ValueError) as exc:
        log.debug("pyirsdk shutdown: %s", exc)


# -- replay -------------------------------------------------------------------------------

def parquet_variables(schema: pa.Schema) -> tuple[list[VarHeader], int]:
    """Variables of a stored session, laid out again into a row (offsets are not stored)."""
    types = {t.name.lower(): t for t in VarType}
    specs = []
    for f in schema:
        md = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
        vtype = types.get(md.get("irsdk_type", ""))
        if vtype is None:
            raise IbtFormatError(None, f"column {f.name}", "a PitBox session column (irsdk_type in its metadata)",
                                 str(f.type))
        count = f.type.list_size if pa.types.is_fixed_size_list(f.type) else 1
        specs.append((f.name, vtype, count, md.get("unit", ""), md.get("desc", "")))
    return layout_variables(specs)


class ReplaySource:
    """Rows of a recorded session (``.ibt``, live dump or stored Parquet session), fed to the
    recorder as if the sim produced them, at ``speed`` × real time (0: as fast as possible).

    The tick count follows the file's ``SessionTick`` (so its dropped ticks stay dropped)
    and goes up by one where it has none or where it restarts. The YAML comes first; the
    updates a stored live session kept are replayed at their rows.
    """

    def __init__(self, path: str | os.PathLike[str], speed: float = 1.0, chunk_rows: int = 4096):
        self.path = Path(path)
        self.name = self.path.name
        self.speed = float(speed)
        self.chunk_rows = chunk_rows
        self._done = False
        self._rows: Iterator[tuple[int, bytes, float]] | None = None
        self._pending_yaml: list[tuple[int, bytes]] = []
        self._yaml_rows: list[tuple[int, int, bytes]] = []
        self._row_index = 0
        self._t0_wall = 0.0
        self._t0_sim: float | None = None

    def connect(self, stop: threading.Event, until: float | None = None) -> Layout | None:
        if self._done or stop.is_set():
            return None
        if self.path.suffix.lower() == ".parquet":
            layout, self._rows, yamls = self._open_parquet()
        else:
            layout, self._rows, yamls = self._open_telemetry()
        self._yaml_rows = yamls
        self._t0_wall = time.perf_counter()
        return layout

    def _open_telemetry(self) -> tuple[Layout, Iterator[tuple[int, bytes, float]], list[tuple[int, int, bytes]]]:
        tf = open_telemetry(self.path)
        layout = Layout(tuple(tf.variables), tf.header.buf_len, tf.tick_rate, self.path.name, "replay")
        raw_yaml = tf.session_info_raw

        def chunks() -> Iterator[tuple[np.ndarray, bytes]]:
            with tf:
                for a in range(0, tf.n_rows, self.chunk_rows):
                    rows = tf.read_rows(a, a + self.chunk_rows)
                    yield rows, rows.tobytes()

        return layout, self._ticks(chunks(), layout.buf_len), [(0, 1, raw_yaml)]

    def _open_parquet(self) -> tuple[Layout, Iterator[tuple[int, bytes, float]], list[tuple[int, int, bytes]]]:
        import json

        from pitbox.ibt.writer import encode_session_info
        from pitbox.recorder.history import yaml_history
        from pitbox.store import META_KEY

        pf = pq.ParquetFile(self.path)
        variables, buf_len = parquet_variables(pf.schema_arrow)
        meta = json.loads((pf.schema_arrow.metadata or {}).get(META_KEY, b"{}"))
        layout = Layout(tuple(variables), buf_len, int(meta.get("tick_rate", 60)), self.path.name, "replay")
        hist = yaml_history(meta)
        rows_at = [0] + [int(u.get("row", 0)) for u in meta.get("yaml_updates") or []]
        yamls = [(r, i + 1, encode_session_info(text)) for i, (r, (_, text)) in enumerate(zip(rows_at, hist, strict=True))]
        dtype = row_dtype(variables, buf_len)

        def chunks() -> Iterator[tuple[np.ndarray, bytes]]:
            for batch in pf.iter_batches(batch_size=self.chunk_rows):
                rows = np.zeros(batch.num_rows, dtype)
                for v in variables:
                    col = batch.column(v.name)
                    vals = col.flatten().to_numpy(zero_copy_only=False) if v.count > 1 else col.to_numpy(zero_copy_only=False)
                    rows[v.name] = vals.reshape(rows[v.name].shape)
                yield rows, rows.tobytes()

        return layout, self._ticks(chunks(), buf_len), yamls

    @staticmethod
    def _ticks(chunks: Iterator[tuple[np.ndarray, bytes]], buf_len: int) -> Iterator[tuple[int, bytes, float]]:
        tick = 0
        prev: int | None = None
        for rows, raw in chunks:
            names = rows.dtype.names or ()
            st = rows["SessionTick"].astype(np.int64) if "SessionTick" in names else None
            t = rows["SessionTime"].astype(np.float64) if "SessionTime" in names else None
            for i in range(len(rows)):
                if st is not None and prev is not None and st[i] > prev:
                    tick += int(st[i] - prev)
                else:
                    tick += 1
                prev = int(st[i]) if st is not None else None
                yield tick, raw[i * buf_len : (i + 1) * buf_len], float(t[i]) if t is not None else i / 60.0

    def poll(self) -> tuple[int, bytes] | None:
        assert self._rows is not None
        try:
            tick, row, t = next(self._rows)
        except StopIteration:
            self._done = True
            raise SourceGone(f"end of {self.name}", final=True) from None
        if self._yaml_rows and self._yaml_rows[0][0] <= self._row_index:
            _, upd, raw = self._yaml_rows.pop(0)
            self._pending_yaml.append((upd, raw))
        self._row_index += 1
        if self.speed > 0:
            if self._t0_sim is None:
                self._t0_sim = t
            due = self._t0_wall + (t - self._t0_sim) / self.speed
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        return tick, row

    def session_info(self) -> tuple[int, bytes] | None:
        return self._pending_yaml.pop(0) if self._pending_yaml else None

    def idle(self) -> None:
        return None

    def disconnect(self) -> None:
        self._rows = None
