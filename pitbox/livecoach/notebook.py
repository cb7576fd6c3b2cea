"""The live coach on frames a Python client receives: for a stream or relay that runs none
(an older recorder, ``--no-live-coach``, someone else's relay), in a notebook.

>>> live = attach("ws://127.0.0.1:8765", data="data", on_message=print)
>>> live.state()          # the latest "coach" message (delta, predicted lap, fuel, tyres …)
>>> live.tips()           # DataFrame of the tips so far
>>> live.set_reference("optimal")
>>> live.stop()

The messages are the ones the recorder's own live coach sends (contract A in docs/live.md):
``reference``, ``coach``, ``tip``, and per frame a ``frame`` message whose ``values`` hold the
derived channels only (``pitbox_delta_s``, ``pitbox_predicted_lap_s``, ``pitbox_lap_dist_m``);
on a relay each carries ``driver`` and every driver has a coach of its own.

What the coach sees is what the client receives: at 60 Hz from the start of the session it
agrees with the recorder's coach; joining late it starts from the stream's history (10 Hz
by default), so its first laps' tips are approximate.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from pitbox.live.protocol import LiveError
from pitbox.livecoach.core import LiveCoach
from pitbox.livecoach.frames import FIELDS, TYRE_CHANNELS

log = logging.getLogger(__name__)

#: What a client must subscribe to for the coach.
CHANNELS = tuple(dict.fromkeys((*FIELDS, *TYRE_CHANNELS)))


class _DriverCoach:
    def __init__(self, driver: str | None, owner: AttachedCoach):
        self.driver = driver
        self.owner = owner
        self.lock = threading.RLock()
        self.coach = LiveCoach(owner.reference, owner.lap, fuel_laps=owner.fuel_laps, fuel_minutes=owner.fuel_minutes)
        self.derived: dict[str, Any] | None = None
        self.reference: dict[str, Any] | None = None
        self.state: dict[str, Any] | None = None
        from pitbox.livecoach.worker import AnalystProcess, InlineAnalyst

        cls = AnalystProcess if owner.process else InlineAnalyst
        self.analyst = cls(self._on_result, owner.data).start()

    def _on_result(self, result: Any) -> None:
        with self.lock:
            self.coach.deliver(result)
            self._flush()

    def take(self, msg: dict[str, Any]) -> None:
        with self.lock:
            kind = msg.get("type")
            if kind == "frame":
                d = self.coach.feed(int(msg["tick"]), float(msg["t"]), msg["values"])
                self.derived = {"tick": msg["tick"], "t": msg["t"], **d}
                self._emit({"v": 1, "type": "frame", "tick": msg["tick"], "t": msg["t"], "values": d})
            else:
                self.coach.on_message(msg)
            self._flush()

    def _flush(self) -> None:
        jobs = self.coach.jobs()
        if jobs:
            self.analyst.submit(jobs)
        for m in self.coach.messages():
            if m["type"] == "reference":
                self.reference = m
            elif m["type"] == "coach":
                self.state = m
            self._emit(m)

    def _emit(self, msg: dict[str, Any]) -> None:
        if self.driver is not None:
            msg = {**msg, "driver": self.driver}
        self.owner._emit(msg)


class AttachedCoach:
    """Live coaches (one per driver) fed by a :class:`~pitbox.live.LiveFeed`; see :func:`attach`."""

    def __init__(self, feed: Any, own_feed: bool, *, reference: str = "session_best", lap: str | None = None,
                 data: str | os.PathLike[str] | None = None, fuel_laps: float | None = None,
                 fuel_minutes: float | None = None, process: bool = True,
                 on_message: Callable[[dict[str, Any]], None] | None = None):
        from pitbox.livecoach.reference import parse_kind

        self.reference_kind = parse_kind(reference, lap)
        self.reference, self.lap = self.reference_kind
        self.data, self.fuel_laps, self.fuel_minutes, self.process = data, fuel_laps, fuel_minutes, process
        self.feed = feed
        self._own_feed = own_feed
        self._listeners: list[Callable[[dict[str, Any]], None]] = [on_message] if on_message else []
        self._drivers: dict[str | None, _DriverCoach] = {}
        self._lock = threading.Lock()
        self._tips: list[dict[str, Any]] = []
        feed.add_listener(self._take)

    def _coach_for(self, driver: str | None) -> _DriverCoach:
        with self._lock:
            c = self._drivers.get(driver)
            if c is None:
                c = self._drivers[driver] = _DriverCoach(driver, self)
            return c

    def _take(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind not in ("frame", "history", "session", "session_info"):
            return
        try:
            self._coach_for(msg.get("driver")).take(msg)
        except Exception:  # noqa: BLE001 - a bad frame must not stop the feed
            log.exception("live coach on %s", self.feed.url)

    def _emit(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "tip":
            self._tips.append(msg)
        for fn in list(self._listeners):
            try:
                fn(msg)
            except Exception:  # noqa: BLE001
                log.exception("live coach listener")

    def add_listener(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """``callback(msg)`` for every message the coaches make (on the feed's or the
        analyst's thread)."""
        self._listeners.append(callback)

    def coach(self, driver: str | None = None) -> LiveCoach:
        """The core of one driver (the only one on a recorder's stream)."""
        return self._pick(driver).coach

    def _pick(self, driver: str | None) -> _DriverCoach:
        with self._lock:
            if driver is None and len(self._drivers) == 1:
                return next(iter(self._drivers.values()))
            c = self._drivers.get(driver)
        if c is None and driver is None and not self._drivers:  # a stream's only coach, before its first frame
            return self._coach_for(None)
        if c is None:
            raise LiveError(f"attach: no frames of driver {driver!r} yet (drivers: {sorted(map(str, self._drivers))})")
        return c

    def state(self, driver: str | None = None) -> dict[str, Any] | None:
        """The latest ``coach`` message."""
        return self._pick(driver).state

    def reference_message(self, driver: str | None = None) -> dict[str, Any] | None:
        """The latest ``reference`` message."""
        return self._pick(driver).reference

    def derived(self, driver: str | None = None) -> dict[str, Any] | None:
        """The derived channels of the latest frame (with its ``tick`` and ``t``)."""
        return self._pick(driver).derived

    def tips(self, driver: str | None = None) -> pd.DataFrame:
        """Every tip so far (one row per ``tip`` message)."""
        return pd.DataFrame([t for t in self._tips if driver is None or t.get("driver") == driver])

    def set_reference(self, kind: str, lap: str | None = None, driver: str | None = None) -> None:
        """Switch the reference of one driver's coach (all drivers' when ``driver`` is None)."""
        with self._lock:
            targets = list(self._drivers.values()) if driver is None else [self._pick(driver)]
        for c in targets:
            with c.lock:
                c.coach.set_reference(kind, lap)
                c._flush()

    def stop(self) -> None:
        self.feed.remove_listener(self._take)
        if self._own_feed:
            self.feed.stop()
        for c in list(self._drivers.values()):
            c.analyst.stop()


def attach(feed_or_url: Any, reference: str = "session_best", lap: str | None = None, *,
           data: str | os.PathLike[str] | None = None, on_message: Callable[[dict[str, Any]], None] | None = None,
           token: str | None = None, drivers: Sequence[str] | None = None, history: bool = True,
           fuel_laps: float | None = None, fuel_minutes: float | None = None, process: bool = True) -> AttachedCoach:
    """Run the live coach on what a Python client receives.

    ``feed_or_url``: a started :class:`~pitbox.live.LiveFeed` (it must carry the coach's
    channels, :data:`CHANNELS`, at best at 60 Hz) or a stream/relay URL (a feed is opened on
    it: those channels, 60 Hz, ``history`` first, ``token``, ``drivers``). ``reference``/
    ``lap``: see :class:`~pitbox.livecoach.LiveCoach`. ``data``: the store (references of
    other sessions, the map). ``process``: the after-lap analysis in its own process (else
    on the analyst's caller thread, which then holds the notebook's kernel for hundreds of
    ms per lap).
    """
    if isinstance(feed_or_url, str):
        from pitbox.live.client import LiveFeed

        feed = LiveFeed(feed_or_url, token=token, channels=list(CHANNELS), rate=60, history=history,
                        drivers=None if drivers is None else list(drivers))
        coach = AttachedCoach(feed, True, reference=reference, lap=lap, data=data, fuel_laps=fuel_laps,
                              fuel_minutes=fuel_minutes, process=process, on_message=on_message)
        feed.start()
        return coach
    if not hasattr(feed_or_url, "add_listener"):
        raise LiveError(f"attach: expected a LiveFeed or a ws:// URL, got {type(feed_or_url).__name__}")
    return AttachedCoach(feed_or_url, False, reference=reference, lap=lap, data=data, fuel_laps=fuel_laps,
                         fuel_minutes=fuel_minutes, process=process, on_message=on_message)
