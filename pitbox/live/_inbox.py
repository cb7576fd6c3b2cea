"""The hand-off from the recorder's tick loop to an event loop thread.

``publish_*`` append one tuple to a bounded deque (atomic under the GIL); nothing else.
A small waker thread moves the work to the event loop (``call_soon_threadsafe``), which
drains the deque in order. The tick loop never awaits, never takes a lock, never makes a
system call and never touches the network: a call costs about a microsecond.

Why a waker thread that polls, rather than ``call_soon_threadsafe`` (or setting an
event) in ``publish_frame``: waking another thread costs the caller a system call, and on
a virtual machine an inter-processor interrupt, measured here at 40-60 us per call,
i.e. half the recorder's budget per tick; a socket write also releases the GIL, so the
tick loop then waits while the loop thread handles the whole frame. While frames flow the
waker checks the deque every ``poll_s`` (1 ms: at most 1 ms added latency); after
``linger_s`` without a frame it sleeps until the next publish wakes it (the one call that
pays for a wake-up).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from pitbox.ibt import session_yaml
from pitbox.live.protocol import LiveError

log = logging.getLogger(__name__)

FRAME, LAP, SESSION, SESSION_INFO, MESSAGE = "frame", "lap", "session", "session_info", "message"
#: At most this many items wait for the loop (10 s of 60 Hz ticks with room for laps).
INBOX_MAX = 4096


class Inbox:
    """Thread-safe, non-blocking publishing side; subclasses implement :meth:`_handle`."""

    def __init__(self) -> None:
        self._inbox: deque[tuple[Any, ...]] = deque(maxlen=INBOX_MAX)
        self._wake_pending = False
        self._inbox_loop: Any = None
        self._waker: threading.Thread | None = None
        self._waker_event = threading.Event()
        self._waker_stop = False
        self._waker_idle = False
        self.poll_s = 0.001
        self.linger_s = 0.25
        self.frames_published = 0

    def publish_frame(self, tick: int, session_time: float, values: Mapping[str, object] | np.void) -> None:
        """Publish one sample: ``tick`` (iRacing tick count), ``session_time`` [s],
        ``values``: channel -> number, bool, numpy scalar or array; or the decoded row
        itself (a numpy structured scalar of the reader's row dtype), whose channels are
        then converted off the tick loop and only when a client asks for them. Never blocks.

        ``values`` is handed over, not copied: pass a fresh dict, or a row that owns its
        bytes (not a view of memory that the next tick overwrites)."""
        self._inbox.append((FRAME, tick, session_time, values, time.perf_counter_ns()))
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
            self._waker_event.set()

    def _run_waker(self) -> None:
        """Poll while frames flow, sleep when they stop. The order of ``_waker_idle = True``
        and the re-check of the deque makes a lost wake-up impossible (the GIL orders them)."""
        quiet_since = time.monotonic()
        while not self._waker_stop:
            if self._inbox:
                quiet_since = time.monotonic()
                if not self._wake_pending:
                    self._schedule_drain()
            elif time.monotonic() - quiet_since > self.linger_s:
                self._waker_idle = True
                if not self._inbox and not self._waker_stop:
                    self._waker_event.wait()
                self._waker_event.clear()
                self._waker_idle = False
                quiet_since = time.monotonic()
                continue
            time.sleep(self.poll_s)

    def _schedule_drain(self) -> None:
        loop = self._inbox_loop
        if loop is None:
            return
        self._wake_pending = True
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # loop closed: stopped; the tick loop goes on regardless
            self._wake_pending = False

    def _attach_loop(self, loop: Any) -> None:
        self._inbox_loop = loop
        self._waker_stop = False
        self._waker = threading.Thread(target=self._run_waker, name="pitbox-live-waker", daemon=True)
        self._waker.start()

    def _detach_loop(self) -> None:
        self._waker_stop = True
        self._waker_event.set()
        if self._waker is not None:
            self._waker.join(5)
            self._waker = None
        self._inbox_loop = None
        self._wake_pending = False

    def _drain(self) -> None:
        self._wake_pending = False
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
