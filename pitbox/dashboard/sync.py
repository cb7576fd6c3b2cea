"""Latest state only: the kernel sends the page a new update only after the page has
painted and acknowledged the previous one.

Protocol between a :class:`~pitbox.dashboard.canvas.LiveCanvas` view (page) and the kernel,
as anywidget custom messages:

* page → kernel ``{"type": "ready", "view": id}`` when a view is rendered (a page that opens
  late, a reload, a second view): the next update is a **full snapshot**;
* kernel → page ``{"type": "update", "seq": n, "full": bool, "t_send_ms": …, …}`` with float32
  buffers (built by the owner's ``build(full)``);
* page → kernel ``{"type": "ack", "seq": n, "lag_ms": …, "paint_ms": …}`` once that update is
  painted (in ``requestAnimationFrame``).

Nothing is sent before a view said ``ready``, and never while an update is unacknowledged,
so a slow, hidden or closed page never accumulates a backlog: the kernel keeps only its own
latest state, and the next update carries everything new since the last acknowledged one.
An update unacknowledged for ``resync_s`` (the page went away, a tab in the background) is
given up; the next one is a full snapshot.
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

Build = Callable[[bool], "tuple[dict[str, Any], list[Any]] | None"]


class AckPump:
    """Sends ``build(full)`` to ``widget`` whenever there is something new, the page is
    there, and the previous update was acknowledged. Call :meth:`mark_dirty` when the state
    changed; :meth:`stop` ends the thread. ``min_interval_s`` caps the update rate (0: as
    fast as the page acknowledges)."""

    def __init__(self, widget: Any, build: Build, *, resync_s: float = 5.0, min_interval_s: float = 0.0,
                 name: str = "pitbox-dashboard-pump"):
        self.widget = widget
        self.build = build
        self.resync_s = resync_s
        self.min_interval_s = min_interval_s
        self._cond = threading.Condition()
        self._views: set[str] = set()
        self._ready = False
        self._full = True
        self._dirty = False
        self._pending: tuple[int, float] | None = None
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
                self._pending = None
            elif kind == "ack" and self._pending is not None and content.get("seq") == self._pending[0]:
                self.rtts_ms.append((time.monotonic() - self._pending[1]) * 1000.0)
                self._pending = None
                self.acked += 1
                lag = content.get("lag_ms")
                if isinstance(lag, (int, float)):
                    self.lags_ms.append(float(lag))
            elif kind == "gone":
                self._views.discard(str(content.get("view")))
                if not self._views:
                    self._ready = False
                    self._pending = None
            else:
                return
            self._cond.notify_all()

    # -- kernel side ---------------------------------------------------------------------
    def mark_dirty(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def request_full(self) -> None:
        with self._cond:
            self._full = True
            self._cond.notify_all()

    @property
    def waiting_for_ack(self) -> bool:
        return self._pending is not None

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

    def _wait_turn(self) -> bool | None:
        """Block until an update may go out; returns ``full``, or None when stopped."""
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                if self._pending is not None and now - self._pending[1] > self.resync_s:
                    log.debug("update %d not acknowledged within %.1f s: resync", self._pending[0], self.resync_s)
                    self._pending = None
                    self._full = True
                    self.resyncs += 1
                if self._ready and self._pending is None and (self._dirty or self._full):
                    wait = self._last_send + self.min_interval_s - now
                    if wait <= 0:
                        full, self._full, self._dirty = self._full, False, False
                        return full
                    self._cond.wait(wait)
                    continue
                timeout = None
                if self._pending is not None:
                    timeout = max(0.01, self._pending[1] + self.resync_s - now)
                self._cond.wait(timeout)
            return None

    def _run(self) -> None:
        while True:
            full = self._wait_turn()
            if full is None:
                return
            try:
                built = self.build(full)
            except Exception:
                log.exception("dashboard update failed")
                continue
            if built is None:
                continue
            content, buffers = built
            with self._cond:
                self._seq += 1
                seq = self._seq
                self._pending = (seq, time.monotonic())
                self._last_send = self._pending[1]
            content.update(seq=seq, full=full, t_send_ms=time.time() * 1000.0)
            try:
                self.widget.send(content, buffers)
            except Exception:  # the comm closed under us (kernel shutting down)
                log.debug("dashboard update %d not sent", seq, exc_info=True)
                with self._cond:
                    self._pending = None
                continue
            self.sent += 1
            self.snapshots += int(full)
