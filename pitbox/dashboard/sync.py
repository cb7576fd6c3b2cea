"""Latest state only: the kernel sends the page new updates only while few enough are
unacknowledged, and the page acknowledges what it painted.

Protocol between a :class:`~pitbox.dashboard.canvas.LiveCanvas` view (page) and the kernel,
as anywidget custom messages:

* page → kernel ``{"type": "ready", "view": id}`` when a view is rendered (a page that opens
  late, a reload, a second view): the next update is a **full snapshot**;
* kernel → page ``{"type": "update", "seq": n, "full": bool, "window": w, "t_send_ms": …, …}``
  with float32 buffers (built by the owner's ``build(full)``);
* page → kernel ``{"type": "ack", "seq": n, "lag_ms": …, "paint_ms": …}`` once updates up to
  ``n`` are painted (in ``requestAnimationFrame``); the ack is **cumulative**: it
  acknowledges every update up to ``n``.

Nothing is sent before a view said ``ready``, and never while ``window`` updates (default
:data:`WINDOW`) are unacknowledged, or while a full snapshot is, so a slow, hidden or
closed page never accumulates a backlog: at most ``window`` small updates are on their way,
the kernel keeps only its own latest state, and the next update carries everything new
since the last one sent. The page acknowledges every ``window // 2`` painted updates (or
:data:`ACK_MS` after a paint), not every one: each page → kernel message is a request on the
kernel's shell channel, answered with a busy and an idle status that JupyterLab's page
handles (toolbar, status bar, favicon), and one ack per paint at 30 Hz cost the browser more
than the drawing (see ``docs/benchmarks.md``). An update unacknowledged for ``resync_s``
(the page went away, a tab in the background) is given up; the next one is a full snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Updates that may be unacknowledged at once (a full snapshot counts as the whole window).
WINDOW = 64
#: The page acknowledges at the latest this long after painting an unacknowledged update [ms].
ACK_MS = 1000

Build = Callable[[bool], "tuple[dict[str, Any], list[Any]] | None"]


class AckPump:
    """Sends ``build(full)`` to ``widget`` whenever there is something new, the page is
    there, and fewer than ``window`` updates are unacknowledged (none after a full
    snapshot until it is acknowledged). Call :meth:`mark_dirty` when the state changed;
    :meth:`stop` ends the thread. ``min_interval_s`` caps the update rate (0: as fast as
    the data comes and the window allows). ``inline``: :meth:`mark_dirty` sends from the
    calling thread when it can (the pump's thread sends what the window held back)."""

    def __init__(self, widget: Any, build: Build, *, resync_s: float = 5.0, min_interval_s: float = 0.0,
                 window: int = WINDOW, inline: bool = True, name: str = "pitbox-dashboard-pump"):
        self.widget = widget
        self.build = build
        self.resync_s = resync_s
        self.min_interval_s = min_interval_s
        self.window = max(1, int(window))
        self.inline = inline
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._views: set[str] = set()
        self._ready = False
        self._full = True
        self._retry_full = False  # a snapshot whose build failed: the next update is one
        self._dirty = False
        self._inflight: deque[tuple[int, float, bool]] = deque()  # (seq, sent [monotonic s], full)
        self._seq = 0
        self._last_send = 0.0
        self._stopped = False
        self.sent = 0
        self.acked = 0
        self.resyncs = 0
        self.snapshots = 0
        self.lags_ms: deque[float] = deque(maxlen=2000)
        self.rtts_ms: deque[float] = deque(maxlen=2000)
        widget.on_msg(self._on_msg)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- page side -----------------------------------------------------------------------
    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        with self._cond:
            if kind == "ready":
                self._views.add(str(content.get("view")))
                self._ready = True
                self._full = True
                self._inflight.clear()
            elif kind == "ack":
                seq = content.get("seq")
                if not isinstance(seq, int) or not self._inflight or seq < self._inflight[0][0]:
                    return  # an old or unknown ack: nothing changes
                now = time.monotonic()
                while self._inflight and self._inflight[0][0] <= seq:
                    done = self._inflight.popleft()
                    self.acked += 1
                    if done[0] == seq:
                        self.rtts_ms.append((now - done[1]) * 1000.0)
                lag = content.get("lag_ms")
                if isinstance(lag, (int, float)):
                    self.lags_ms.append(float(lag))
            elif kind == "gone":
                self._views.discard(str(content.get("view")))
                if not self._views:
                    self._ready = False
                    self._inflight.clear()
            else:
                return
            self._cond.notify_all()

    def rebind(self, widget: Any) -> None:
        """Feed ``widget`` instead (a new model in place of one the page could not hear): its
        views say ``ready`` and get a full snapshot; the old widget's views are forgotten."""
        with self._send_lock, self._cond:
            try:
                self.widget.on_msg(self._on_msg, remove=True)
            except ValueError:  # pragma: no cover - already removed
                pass
            self.widget = widget
            self._views.clear()
            self._ready = False
            self._full = True
            self._inflight.clear()
            widget.on_msg(self._on_msg)
            self._cond.notify_all()

    # -- kernel side ---------------------------------------------------------------------
    def mark_dirty(self) -> None:
        """The state changed. With ``inline`` (default) the update goes out from the calling
        thread when the window is open (no hand-off to the pump's thread, whose wake-up on a
        loaded machine cost tens of milliseconds at p99); else the pump's thread sends it
        once the window opens."""
        if self.inline and self._send_lock.acquire(blocking=False):
            try:
                with self._cond:
                    self._dirty = True
                    full = self._claim(time.monotonic())
                    if full is None:
                        self._cond.notify_all()
                        return
                self._send(full)
            finally:
                self._send_lock.release()
            return
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def request_full(self) -> None:
        with self._cond:
            self._full = True
            self._cond.notify_all()

    @property
    def waiting_for_ack(self) -> bool:
        """True while an update is unacknowledged."""
        return bool(self._inflight)

    @property
    def in_flight(self) -> int:
        """Updates sent and not acknowledged yet."""
        return len(self._inflight)

    def _window_open(self) -> bool:
        if not self._inflight:
            return True
        return len(self._inflight) < self.window and not any(full for _, _, full in self._inflight)

    def stats(self) -> dict[str, Any]:
        """Updates sent and acknowledged, resyncs, and the page's sample-to-paint lag [ms]."""
        lags = np.asarray(self.lags_ms) if self.lags_ms else np.zeros(0)
        return {"sent": self.sent, "acked": self.acked, "resyncs": self.resyncs, "snapshots": self.snapshots,
                "views": len(self._views),
                "lag_p50_ms": float(np.percentile(lags, 50)) if len(lags) else None,
                "lag_p99_ms": float(np.percentile(lags, 99)) if len(lags) else None}

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        try:
            self.widget.on_msg(self._on_msg, remove=True)
        except ValueError:  # pragma: no cover - already removed
            pass

    def _claim(self, now: float) -> bool | None:
        """Under the lock: when an update may go out now, take the turn and return ``full``;
        else None (resyncs a window that went unacknowledged for ``resync_s``)."""
        if self._inflight and now - self._inflight[0][1] > self.resync_s:
            log.debug("update %d not acknowledged within %.1f s: resync", self._inflight[0][0], self.resync_s)
            self._inflight.clear()
            self._full = True
            self.resyncs += 1
        if (not self._stopped and self._ready and self._window_open() and (self._dirty or self._full)
                and now >= self._last_send + self.min_interval_s):
            full = self._full or self._retry_full
            self._full = self._retry_full = self._dirty = False
            return full
        return None

    def _wait_turn(self) -> bool:
        """Block until an update may go out (without taking the turn); False when stopped."""
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                if self._inflight and now - self._inflight[0][1] > self.resync_s:
                    return True  # _claim resyncs
                if self._ready and self._window_open() and (self._dirty or self._full):
                    wait = self._last_send + self.min_interval_s - now
                    if wait <= 0:
                        return True
                    self._cond.wait(wait)
                    continue
                timeout = None
                if self._inflight:
                    timeout = max(0.01, self._inflight[0][1] + self.resync_s - now)
                self._cond.wait(timeout)
            return False

    def _run(self) -> None:
        while self._wait_turn():
            with self._send_lock:
                with self._cond:
                    full = self._claim(time.monotonic())
                if full is not None:
                    self._send(full)

    def _send(self, full: bool) -> None:
        """Build and send one update (the caller holds ``_send_lock`` and took the turn)."""
        try:
            built = self.build(full)
        except Exception:
            log.exception("dashboard update failed")
            built = None
        if built is None:
            if full:  # the page still needs its snapshot: with the next change, not in a loop
                with self._cond:
                    self._retry_full = True
            return
        content, buffers = built
        with self._cond:
            self._seq += 1
            seq = self._seq
            self._last_send = time.monotonic()
            self._inflight.append((seq, self._last_send, full))
        content.update(seq=seq, full=full, window=self.window, t_send_ms=time.time() * 1000.0)
        try:
            self.widget.send(content, buffers)
        except Exception:  # the comm closed under us (kernel shutting down)
            log.debug("dashboard update %d not sent", seq, exc_info=True)
            with self._cond:
                self._inflight = deque(x for x in self._inflight if x[0] != seq)
            return
        self.sent += 1
        self.snapshots += int(full)
