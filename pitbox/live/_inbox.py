"""The hand-off from the recorder's tick loop to an event loop thread.

``publish_*`` append one tuple to a bounded deque (atomic under the GIL); nothing else.
The event loop's own thread looks at the deque on a timer and drains it in order. The tick
loop never awaits, never takes a lock, never makes a system call and never touches the
network: a call costs about a microsecond.

Why the loop polls, rather than ``call_soon_threadsafe`` (or setting an event) in
``publish_frame``: waking another thread costs the caller a system call, and on a virtual
machine an inter-processor interrupt, measured here at 40-60 us per call, i.e. half the
recorder's budget per tick; a socket write also releases the GIL, so the tick loop then
waits while the loop thread handles the whole frame. While frames flow the loop learns their
interval and looks 0.2 ms after the next frame is due, then every ``poll_s`` (1 ms) until it
comes (:class:`~pitbox.live._pace.Pacer`): about one wake-up per frame, in the thread that
sends it, instead of one per millisecond in a thread of its own (measured: the recorder with
the stream on used 879 us of CPU per tick with a waker thread polling every 1 ms). After
``linger_s`` without anything it stops looking until the next publish wakes it (the one
call that pays for a wake-up). Other messages (laps, tips) wait at most 20 ms for the next
look.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from pitbox.ibt import session_yaml
from pitbox.live._pace import Pacer
from pitbox.live.protocol import LiveError

log = logging.getLogger(__name__)

FRAME, LAP, SESSION, SESSION_INFO, MESSAGE = "frame", "lap", "session", "session_info", "message"
#: At most this many items wait for the loop (10 s of 60 Hz ticks with room for laps).
INBOX_MAX = 4096


class Inbox:
    """Thread-safe, non-blocking publishing side; subclasses implement :meth:`_handle`."""

    def __init__(self) -> None:
        self._inbox: deque[tuple[Any, ...]] = deque(maxlen=INBOX_MAX)
        self._inbox_loop: Any = None
        self._waker_idle = False  #: no look is scheduled: the next publish schedules one
        self._looking = False
        self._quiet_since = 0.0
        self._timer: Any = None
        self._pacer = Pacer()
        self.poll_s = 0.001
        self.linger_s = 0.25
        self.frames_published = 0
        self._last_frame_ns = 0

    def publish_frame(self, tick: int, session_time: float, values: Mapping[str, object] | np.void) -> None:
        """Publish one sample: ``tick`` (iRacing tick count), ``session_time`` [s],
        ``values``: channel -> number, bool, numpy scalar or array; or the decoded row
        itself (a numpy structured scalar of the reader's row dtype), whose channels are
        then converted off the tick loop and only when a client asks for them. Never blocks.

        ``values`` is handed over, not copied: pass a fresh dict, or a row that owns its
        bytes (not a view of memory that the next tick overwrites)."""
        stamp = time.perf_counter_ns()
        self._inbox.append((FRAME, tick, session_time, values, stamp))
        self._last_frame_ns = stamp
        self.frames_published += 1
        if self._waker_idle:
            self._wake()

    def publish_lap(self, row: Mapping[str, object]) -> None:
        """A completed lap: one lap-table row (JSON-able values; numpy scalars are fine)."""
        self._inbox.append((LAP, row))
        self._wake()

    def publish_session(self, meta: Mapping[str, object]) -> None:
        """A session change: ``meta`` describes the new session (track, car, session type …).
        Laps and history restart."""
        self._inbox.append((SESSION, meta))
        self._wake()

    def publish_session_info(self, info: Mapping[str, object] | str | bytes) -> None:
        """The session YAML changed: a parsed dict (best), or the raw YAML text or bytes
        (parsed, with iRacing's repairs, off the tick loop)."""
        self._inbox.append((SESSION_INFO, info))
        self._wake()

    def publish_message(self, msg: Mapping[str, object]) -> None:
        """Another message for the clients, with its ``type`` (the live coach's
        ``reference``, ``coach`` and ``tip``, the voice coach's ``voice``, see
        :data:`pitbox.live.protocol.COACH_TYPES`):
        JSON-able, sent in order with the frames; the latest ``reference`` and ``coach`` and
        the session's tips are kept for clients that join later."""
        self._inbox.append((MESSAGE, msg))
        self._wake()

    def _wake(self) -> None:
        if self._waker_idle:
            self._waker_idle = False
            loop = self._inbox_loop
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(self._kick)
                except RuntimeError:  # loop closed: stopped; the tick loop goes on regardless
                    pass

    def _kick(self) -> None:
        """(Loop thread) a publish after a quiet spell: start looking again, unless the looks
        never stopped (the publish raced the last look; see :meth:`_look`)."""
        if self._looking or self._inbox_loop is None:
            return
        self._looking = True
        self._quiet_since = time.monotonic()
        self._look()

    def _look(self) -> None:
        """(Loop thread) drain what waits, then schedule the next look: paced on the frames
        while they flow, none after ``linger_s`` without anything (a publish wakes it). The
        order of ``_waker_idle = True`` and the re-check of the deque makes a lost wake-up
        impossible (the GIL orders them), and :meth:`_kick` ignores a wake-up that raced it."""
        self._timer = None
        loop = self._inbox_loop
        if loop is None:
            self._looking = False
            return
        now = time.monotonic()
        if self._inbox:
            self._quiet_since = now
            self._drain()
        elif now - self._quiet_since > self.linger_s:
            self._waker_idle = True
            if not self._inbox:
                self._looking = False
                return
            self._waker_idle = False
        self._pacer.note(self.frames_published, self._last_frame_ns / 1e9)
        self._timer = loop.call_later(self._pacer.delay(time.perf_counter()), self._look)

    def _attach_loop(self, loop: Any) -> None:
        """Start handing off to ``loop`` (call from any thread, once the loop runs)."""
        self._pacer = Pacer(self.poll_s)
        self._looking = False
        self._timer = None
        self._inbox_loop = loop
        self._waker_idle = True
        if self._inbox:
            self._wake()

    def _detach_loop(self) -> None:
        loop, self._inbox_loop = self._inbox_loop, None
        timer = self._timer
        if timer is not None and loop is not None:
            try:
                loop.call_soon_threadsafe(timer.cancel)
            except RuntimeError:
                pass
        self._waker_idle = False

    def _drain(self) -> None:
        inbox = self._inbox
        while inbox:
            item = inbox.popleft()
            try:
                self._handle(item)
            except Exception:  # one bad item must not stop the stream
                log.exception("dropping a published %s message", item[0])

    def _handle(self, item: tuple[Any, ...]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def parse_session_info(info: Mapping[str, object] | str | bytes) -> Any:
    """Session info as a dict: a dict passes through; YAML text or bytes is parsed with
    iRacing's repairs (:func:`pitbox.ibt.session_yaml.parse`)."""
    if isinstance(info, Mapping):
        return info
    if isinstance(info, str):
        raw = info.encode("utf-8") if info.startswith(session_yaml.UTF8_SIGN.decode()) else \
            info.encode("cp1252", errors="replace")
    elif isinstance(info, (bytes, bytearray)):
        raw = bytes(info)
    else:
        raise LiveError(f"session info: expected a dict, YAML text or bytes, got {type(info).__name__}")
    return session_yaml.parse(raw, "<live session info>")
