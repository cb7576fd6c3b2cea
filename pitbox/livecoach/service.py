"""The live coach beside the recorder: :class:`LiveCoachService`.

It is the recorder's publisher (``publish_frame`` from the tick loop, the others from the
writer thread) and forwards everything to the real publishers (the local
:class:`~pitbox.live.StreamServer`, a :class:`~pitbox.live.RelayPublisher`), adding the
live coach on the way:

* ``publish_*`` append one tuple to a deque and return: no lock, no system call, the same
  microsecond the stream's own hand-off costs (the tick loop's work does not change);
* a pump thread (looking just after each frame is due while frames flow, asleep after 0.25 s
  without one, paced as :mod:`pitbox.live._inbox` is by :class:`pitbox.live._pace.Pacer`) runs the core on each frame (a few µs), forwards the
  frame with the derived channels added (:class:`pitbox.live.protocol.Derived`, no copy of
  the row) and the coach's ``reference``/``coach``/``tip`` messages
  (``publish_message``), and hands after-lap jobs to the analyst process;
* the analyst (:class:`~pitbox.livecoach.worker.AnalystProcess`) runs in its own process at
  below-normal priority; its results come back on a reader thread and go through the pump;
* a client's ``set_reference`` reaches :meth:`set_reference` from the stream server's or
  the relay publisher's thread (their ``control_handler``);
* a client's voice ``command`` reaches :meth:`command` the same way (their
  ``command_handler``, set only when a voice coach is among the targets), which hands it to
  the voice coach exactly as its microphone listener does (``post_command``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from pitbox.live._pace import Pacer
from pitbox.live.protocol import Derived
from pitbox.livecoach.core import LiveCoach
from pitbox.livecoach.jobs import Done

log = logging.getLogger(__name__)

FRAME, LAP, SESSION, SESSION_INFO, RESULT, CONTROL = range(6)
INBOX_MAX = 8192  #: frames waiting for the pump at most (over two minutes of a live sim)


class LiveCoachService:
    """Runs :class:`~pitbox.livecoach.LiveCoach` between the recorder and its publishers.

    ``targets``: started publishers (``publish_frame/lap/session/session_info`` and, for the
    coach's messages, ``publish_message``); they are stopped by :meth:`stop`. ``data``: the
    store (references from other sessions, the track map). ``reference``/``lap``/
    ``fuel_laps``/``fuel_minutes``: see :class:`LiveCoach`. ``process``: run the after-lap
    analysis in its own process (default; False runs it on the pump thread, for tests).
    ``lossless``: when the pump falls :data:`INBOX_MAX` frames behind, ``publish_frame``
    waits for it (for replays as fast as possible, which would otherwise outrun it); never
    for a live sim, where a frame that finds the inbox full is not coached (``dropped``).
    """

    def __init__(self, targets: Sequence[Any], *, data: str | os.PathLike[str] | None = None,
                 reference: str = "session_best", lap: str | None = None, fuel_laps: float | None = None,
                 fuel_minutes: float | None = None, process: bool = True, lossless: bool = False):
        self.targets = list(targets)
        self.coach = LiveCoach(reference, lap, fuel_laps=fuel_laps, fuel_minutes=fuel_minutes)
        self.data = data
        self.process = process
        self.poll_s = 0.001
        self.linger_s = 0.25
        self._inbox: deque[tuple[Any, ...]] = deque()
        self._urgent: deque[tuple[Any, ...]] = deque()  # results and set_reference: ahead of waiting frames
        self.lossless = lossless
        self.dropped = 0
        self._event = threading.Event()
        self._idle = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._analyst: Any = None
        self._pending_jobs = 0
        self._jobs_done = threading.Condition()
        self.frames_published = 0
        self._last_frame_t = 0.0
        self.errors = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> LiveCoachService:
        from pitbox.livecoach.worker import AnalystProcess, InlineAnalyst

        cls = AnalystProcess if self.process else InlineAnalyst
        self._analyst = cls(self._on_result, self.data).start()
        voices = self._voices()
        for t in self.targets:
            if hasattr(t, "control_handler"):
                t.control_handler = self.control
            if voices and hasattr(t, "command_handler"):
                t.command_handler = self.command
        self._thread = threading.Thread(target=self._run, name="pitbox-livecoach", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Coach the lap still waiting (on what was recorded), wait up to ``timeout`` for the
        analyst, then stop the pump, the analyst and the targets."""
        self._put((CONTROL, {"type": "finish"}))
        deadline = time.monotonic() + timeout
        with self._jobs_done:
            while (self._inbox or self._urgent or self._pending_jobs > 0) and time.monotonic() < deadline \
                    and self._thread is not None and self._thread.is_alive():
                self._jobs_done.wait(0.05)
        self._stop = True
        self._event.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._analyst is not None:
            self._analyst.stop(timeout)
        for t in self.targets:
            if getattr(t, "control_handler", None) == self.control:
                t.control_handler = None
            if getattr(t, "command_handler", None) == self.command:
                t.command_handler = None
            t.stop()

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Until the analyst process has started (its imports take a second or two)."""
        return self._analyst is not None and self._analyst.ready.wait(timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until every frame handed over so far is handled and the analyst has answered every
        job (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._jobs_done:
            while self._inbox or self._urgent or self._pending_jobs > 0 or self._busy:
                if time.monotonic() >= deadline:
                    return False
                self._event.set()
                self._jobs_done.wait(0.02)
        return True

    _busy = False

    # -- the recorder's side (never blocks) -----------------------------------------------------
    def publish_frame(self, tick: int, session_time: float, values: Any) -> None:
        inbox = self._inbox
        if len(inbox) >= INBOX_MAX:
            if not self.lossless:
                self.dropped += 1
                return
            while len(inbox) >= INBOX_MAX // 2 and not self._stop:
                self._wake()
                time.sleep(0.001)
        inbox.append((FRAME, tick, session_time, values))
        self._last_frame_t = time.perf_counter()
        self.frames_published += 1
        if self._idle:
            self._wake()

    def publish_lap(self, row: Mapping[str, Any]) -> None:
        self._put((LAP, row))

    def publish_session(self, meta: Mapping[str, Any]) -> None:
        self._put((SESSION, meta))

    def publish_session_info(self, info: Any) -> None:
        self._put((SESSION_INFO, info))

    def control(self, msg: Mapping[str, Any]) -> None:
        """A client's ``set_reference`` (any thread); handled before frames still waiting."""
        self._urgent.append((CONTROL, dict(msg)))
        self._put_wake()

    def set_reference(self, kind: str, lap: str | None = None) -> None:
        self.control({"type": "set_reference", "kind": kind, "lap": lap})

    def _voices(self) -> list[Any]:
        return [t for t in self.targets if hasattr(t, "post_command")]

    def command(self, name: str, arg: int | None = None, reply_to: str | int | None = None) -> None:
        """A client's voice command (any thread; checked by the stream or relay): handed to
        the voice coach (``post_command``, as a command heard on the microphone), carried out
        on its next frame and answered through its scheduler as a ``voice`` message (with
        ``reply_to``: the command's ``id``, when it had one)."""
        for v in self._voices():
            v.post_command(name, arg, reply_to)

    def _on_result(self, result: Any) -> None:
        self._urgent.append((RESULT, result))
        self._put_wake()

    def _put(self, item: tuple[Any, ...]) -> None:
        self._inbox.append(item)
        self._wake()

    def _put_wake(self) -> None:
        self._wake()

    def _wake(self) -> None:
        if self._idle:
            self._idle = False
            self._event.set()

    # -- the pump thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        quiet_since = time.monotonic()
        pacer = Pacer(self.poll_s)  # about one wake-up per frame, not one per poll_s (see pitbox.live._pace)
        while not self._stop:
            if self._inbox or self._urgent:
                quiet_since = time.monotonic()
                self._busy = True
                self._drain()
                self._busy = False
                with self._jobs_done:
                    self._jobs_done.notify_all()
            elif time.monotonic() - quiet_since > self.linger_s:
                self._idle = True
                if not self._inbox and not self._urgent and not self._stop:
                    self._event.wait(1.0)
                self._event.clear()
                self._idle = False
                quiet_since = time.monotonic()
                continue
            pacer.note(self.frames_published, self._last_frame_t)
            time.sleep(pacer.delay(time.perf_counter()))

    def _drain(self) -> None:
        inbox, urgent, coach, targets = self._inbox, self._urgent, self.coach, self.targets
        while inbox or urgent:
            item = urgent.popleft() if urgent else inbox.popleft()
            kind = item[0]
            try:
                if kind == FRAME:
                    try:
                        derived = coach.feed(item[1], item[2], item[3])
                        values: Any = Derived(item[3], derived)
                    except Exception:  # noqa: BLE001 - the stream goes on without the coach
                        self.errors += 1
                        if self.errors <= 3:
                            log.exception("live coach: frame %s", item[1])
                        values = item[3]
                    for t in targets:
                        t.publish_frame(item[1], item[2], values)
                elif kind == RESULT:
                    if isinstance(item[1], Done):
                        self._pending_jobs -= item[1].jobs
                    else:
                        coach.deliver(item[1])
                else:
                    self._handle(kind, item[1])
            except Exception:  # noqa: BLE001
                log.exception("live coach: %s", kind)
            self._forward()

    def _handle(self, kind: int, payload: Any) -> None:
        coach, targets = self.coach, self.targets
        if kind == LAP:
            for t in targets:
                t.publish_lap(payload)
        elif kind == SESSION:
            coach.set_session(payload)
            for t in targets:
                t.publish_session(payload)
        elif kind == SESSION_INFO:
            for t in targets:
                t.publish_session_info(payload)
            if isinstance(payload, Mapping):
                coach.set_session_info(payload)
            else:
                from pitbox.live._inbox import parse_session_info

                try:
                    coach.set_session_info(parse_session_info(payload))
                except Exception as exc:  # noqa: BLE001
                    log.warning("live coach: session info not read: %s", exc)
        elif kind == CONTROL:
            if payload.get("type") == "finish":
                coach.finish()
            else:
                try:
                    coach.set_reference(payload.get("kind"), payload.get("lap"))
                except ValueError as exc:
                    log.warning("live coach: set_reference refused: %s", exc)

    def _forward(self) -> None:
        jobs = self.coach.jobs()
        if jobs:
            self._pending_jobs += len(jobs)
            self._analyst.submit(jobs)
        for msg in self.coach.messages():
            for t in self.targets:
                pub = getattr(t, "publish_message", None)
                if pub is not None:
                    pub(msg)
