"""The in-loop state of a stream: frames, one source's history and laps, one client's
latest-frame slots. Everything here runs on the server's event loop thread only.

A :class:`Feed` is one source of frames: the local recorder on a :class:`StreamServer`,
one driver on a relay. A :class:`Subscriber` is one connected client: per feed it keeps
only the latest frame that passes its rate (older ones are dropped and counted), and an
ordered, bounded queue for the rare messages that must not be dropped (laps, session
changes). A stalled client therefore costs one slot per feed, never a growing queue of
frames, and never delays the publisher or other clients.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode

from pitbox.live import protocol
from pitbox.live.protocol import (
    KEEP_ALL,
    KEEP_LATEST,
    TICK_RATE_HZ,
    channel_names,
    dumps,
    envelope,
    frame_message,
    jsonable,
    select_values,
)

#: Half a 60 Hz tick [s]: rate decimation keeps a frame when at least ``1/rate - HALF_TICK_S``
#: seconds of session time passed since the last kept one.
HALF_TICK_S = 0.5 / TICK_RATE_HZ

#: ``history_provider(channels, rate, since_tick)`` -> frames ``(tick, session_time_s, values)``
#: of the current session, oldest first. Called in a worker thread; must be thread-safe.
HistoryProvider = Callable[[Sequence[str] | None, int, int | None], Iterable[tuple[int, float, Mapping[str, Any]]]]


class Frame:
    """One published sample: ``tick``, ``t`` (session time [s]), ``values`` (channel -> value).

    ``clean`` frames hold JSON-safe values already (they came in as JSON on a relay).
    Encoded messages are cached per channel selection, so clients that chose the same
    channels share one encoding."""

    __slots__ = ("tick", "t", "values", "driver", "clean", "published_ns", "rates", "_cache", "_wire")

    def __init__(self, tick: int, t: float, values: Mapping[str, Any], driver: str | None = None,
                 clean: bool = False, published_ns: int = 0):
        self.tick = tick
        self.t = t
        self.values = values
        self.driver = driver
        self.clean = clean
        self.published_ns = published_ns
        self.rates = ALL_RATES  #: bit mask of the rate grids this frame is on (set by its feed)
        self._cache: dict[tuple[str, ...] | None, bytes] = {}
        self._wire: dict[tuple[str, ...] | None, bytes] = {}

    def encoded(self, channels: tuple[str, ...] | None) -> bytes:
        data = self._cache.get(channels)
        if data is None:
            values = select_values(self.values, channels, self.clean)
            data = self._cache[channels] = dumps(frame_message(self.tick, self.t, values, self.driver))
        return data

    def wire(self, channels: tuple[str, ...] | None) -> bytes:
        """The encoded message as one unmasked WebSocket text frame (what a server sends on a
        connection without extensions), made once per channel selection and written as is
        to every such client."""
        data = self._wire.get(channels)
        if data is None:
            data = self._wire[channels] = WsFrame(Opcode.TEXT, self.encoded(channels)).serialize(mask=False)
        return data

    def history_item(self, channels: tuple[str, ...] | None) -> dict[str, Any]:
        return {"tick": self.tick, "t": self.t, "values": select_values(self.values, channels, self.clean)}


#: One bit per rate: a frame is on the 10 Hz grid when ``frame.rates & RATE_BIT[10]``.
RATE_BIT = {rate: 1 << i for i, rate in enumerate(protocol.RATES)}
ALL_RATES = sum(RATE_BIT.values())


class RateGrid:
    """Marks which rates each frame of one feed belongs to. Every client at 10 Hz gets
    the same frames (one shared encoding), the history holds the same frames, and a
    client reconnecting continues on the grid it left."""

    def __init__(self) -> None:
        self._last: dict[int, float | None] = dict.fromkeys(protocol.RATES)

    def mark(self, frame: Frame) -> None:
        mask = 0
        for rate, last in self._last.items():
            if keep(last, frame.t, 1.0 / rate):
                self._last[rate] = frame.t
                mask |= RATE_BIT[rate]
        frame.rates = mask

    def reset(self) -> None:
        self._last = dict.fromkeys(protocol.RATES)


def keep(last_t: float | None, t: float, period_s: float) -> bool:
    """Rate decimation: keep a frame at session time ``t`` after one kept at ``last_t``.
    A session time that goes backwards (new session, replay restart) is always kept."""
    return last_t is None or t < last_t or t - last_t >= period_s - HALF_TICK_S


def decimate(frames: Iterable[Frame], rate: int, since_tick: int | None = None) -> list[Frame]:
    """The frames a client at ``rate`` Hz would have received, after ``since_tick``
    (frames from a history provider, which carry no grid marks)."""
    out: list[Frame] = []
    last: float | None = None
    period = 1.0 / rate
    for f in frames:
        if since_tick is not None and f.tick <= since_tick:
            continue
        if keep(last, f.t, period):
            out.append(f)
            last = f.t
    return out


class MemoryHistory:
    """The default "session so far": frames kept at ``rate`` Hz for the last ``seconds``.

    Bounded (``seconds * rate`` frames). A client asking for history at a higher rate gets
    this rate; give the server a ``history_provider`` (the recorder's store) for more."""

    def __init__(self, seconds: float = 600.0, rate: int = 10):
        if rate not in protocol.RATES:
            raise protocol.LiveError(f"history_rate: expected one of {list(protocol.RATES)} Hz, got {rate!r}")
        self.rate = rate
        self._mask = sum(bit for r, bit in RATE_BIT.items() if r <= rate)
        per_second = sum(r for r in protocol.RATES if r <= rate)
        self._frames: deque[Frame] = deque(maxlen=max(1, int(seconds * per_second)))

    def add(self, frame: Frame) -> None:
        """Keep a frame marked by the feed's :class:`RateGrid` when it is on this rate's
        grid or a lower one's."""
        if frame.rates & self._mask:
            self._frames.append(frame)

    def clear(self) -> None:
        self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)

    def frames(self, rate: int, since_tick: int | None = None) -> list[Frame]:
        """Frames on the grid of ``rate`` (or of this history's rate, if lower)."""
        bit = RATE_BIT[min(rate, self.rate)]
        return [f for f in self._frames if f.rates & bit and (since_tick is None or f.tick > since_tick)]


class Feed:
    """One source of frames and its session state (loop thread only)."""

    def __init__(self, driver: str | None, history: MemoryHistory | None, provider: HistoryProvider | None = None):
        self.driver = driver
        self.history = history
        self.provider = provider
        self.info: dict[str, Any] = {"id": driver} if driver else {}
        self.session: dict[str, Any] | None = None
        self.session_info: Any = None
        self.laps: list[dict[str, Any]] = []
        self._lap_keys: set[bytes] = set()
        self.latest: Frame | None = None
        self.kept: dict[str, bytes] = {}  #: latest live coach message of each KEEP_LATEST type
        self.kept_all: list[bytes] = []  #: every KEEP_ALL message of the session (tips)
        self.subscribers: set[Subscriber] = set()
        self.frames_in = 0
        self.grid = RateGrid()

    @property
    def channels(self) -> list[str]:
        return channel_names(self.latest.values) if self.latest is not None else []

    def add_frame(self, frame: Frame, direct: bool = False) -> None:
        """A new frame. ``direct``: it is the newest one there is (nothing queued behind it),
        so a client with nothing waiting may get it written at once (:meth:`Subscriber.offer`);
        a frame of a backlog goes through the clients' latest-frame slots, so a server that
        fell behind sends each client only the newest frame instead of every one."""
        self.latest = frame
        self.frames_in += 1
        self.grid.mark(frame)
        if self.history is not None:
            self.history.add(frame)
        for sub in self.subscribers:
            sub.offer(self, frame, direct)

    def add_lap(self, row: Mapping[str, Any]) -> None:
        row = jsonable(row)
        key = dumps(row)
        if key in self._lap_keys:
            return  # a publisher re-sending its laps after a reconnect
        self._lap_keys.add(key)
        self.laps.append(row)
        self._broadcast("lap", self.message("lap", row=row))

    def set_session(self, meta: Mapping[str, Any]) -> None:
        """A new session: laps and history restart. The same meta again (a publisher
        reconnecting) changes nothing."""
        meta = jsonable(meta)
        if meta == self.session:
            return
        self.session = meta
        self.laps.clear()
        self._lap_keys.clear()
        self.kept.clear()
        self.kept_all.clear()
        self.latest = None
        self.grid.reset()
        if self.history is not None:
            self.history.clear()
        for sub in self.subscribers:
            sub.new_session(self)
        self._broadcast("session", self.message("session", meta=meta))

    def set_session_info(self, info: Any) -> None:
        self.session_info = jsonable(info)
        self._broadcast("session_info", self.message("session_info", info=self.session_info))

    def add_message(self, msg: Mapping[str, Any]) -> None:
        """A live coach message (``reference``, ``coach``, ``tip`` …): sent to every
        subscriber in order; kept for later ones as :data:`KEEP_LATEST`/:data:`KEEP_ALL` say."""
        kind = str(msg["type"])
        out = {**jsonable(msg), "v": protocol.VERSION, "type": kind}
        out.pop("driver", None)
        if self.driver is not None:
            out["driver"] = self.driver
        data = dumps(out)
        if kind in KEEP_LATEST:
            self.kept[kind] = data
        elif kind in KEEP_ALL:
            self.kept_all.append(data)
        self._broadcast(kind, data)

    def message(self, kind: str, **fields: Any) -> bytes:
        if self.driver is not None:
            fields["driver"] = self.driver
        return dumps(envelope(kind, **fields))

    def state_messages(self) -> list[bytes]:
        """What a client needs before frames make sense: the session and its info, and the
        live coach's latest reference and state and the session's tips."""
        out = []
        if self.session is not None:
            out.append(self.message("session", meta=self.session))
        if self.session_info is not None:
            out.append(self.message("session_info", info=self.session_info))
        out.extend(self.kept[k] for k in KEEP_LATEST if k in self.kept)
        out.extend(self.kept_all)
        return out

    def history_frames(self, channels: tuple[str, ...] | None, rate: int, since_tick: int | None) -> list[Frame]:
        if self.history is None:
            return []
        return self.history.frames(rate, since_tick)

    def _broadcast(self, kind: str, data: bytes) -> None:
        for sub in self.subscribers:
            sub.push(kind, data, self)


class DirectLine:
    """What :meth:`Subscriber.offer` needs to write a frame at once (see the server's)."""

    def ready(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def write(self, data: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def write_frame(self, frame: Frame, channels: tuple[str, ...] | None) -> None:
        self.write(frame.encoded(channels))


class SlowClient(Exception):
    """A client whose ordered queue overflowed (it stopped reading)."""


class Subscriber:
    """One connected client: its choice of channels and rate, and what is waiting to go."""

    def __init__(self, peer: str, max_queue: int = 1024):
        self.peer = peer
        self.channels: tuple[str, ...] | None = None
        self.rate = 10
        self.period_s = 0.1
        self.rate_bit = RATE_BIT[10]
        self.wanted: tuple[str, ...] | None = None  #: drivers chosen on a relay (None: all)
        self.subscribed = False
        self.feeds: set[Feed] = set()
        self.slots: dict[Feed, Frame] = {}
        self.sent_t: dict[Feed, float] = {}  #: session time of the last frame sent (live or history)
        self.floor: dict[Feed, int] = {}
        self.queue: deque[tuple[str, Feed | None, Any]] = deque()
        self.max_queue = max_queue
        self.wake = asyncio.Event()
        self.overflow = False
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        #: set by the server: writes a message to this client's socket at once, without
        #: awaiting (``ready()``: whether the socket takes it now; ``write(data)``)
        self.line: DirectLine | None = None
        self.idle = False  #: the sender task waits with nothing to send (set by the server)
        self.may_command = False  #: may send voice commands (set by the server from the token)
        #: the drivers it may command on a relay (None: any; a token's ``command:<driver>`` scopes)
        self.command_drivers: frozenset[str] | None = None
        self.command_bucket: Any = None  #: the voice command rate (a ``limits.TokenBucket``; None: no limit)

    def offer(self, feed: Feed, frame: Frame, direct: bool = False) -> None:
        """A new frame of ``feed``: written at once when nothing else waits for this client
        and its socket has room (the common case: one pass over every client, no task
        switch); else kept if the rate allows, replacing an unsent one, for the sender."""
        if not frame.rates & self.rate_bit:
            return
        line = self.line
        if direct and line is not None and self.idle and not self.queue and not self.slots and line.ready():
            if self.take_frame(feed, frame):
                line.write_frame(frame, self.channels)
                self.sent += 1
            return
        if feed in self.slots:
            self.dropped += 1
        self.slots[feed] = frame
        self.wake.set()

    def push(self, kind: str, data: Any, feed: Feed | None = None) -> None:
        """An ordered message; an unsent frame of the same feed goes out before it."""
        if feed is not None and feed in self.slots:
            self.queue.append(("frame", feed, self.slots.pop(feed)))
        self.queue.append((kind, feed, data))
        if len(self.queue) > self.max_queue:
            self.overflow = True
        self.wake.set()

    def new_session(self, feed: Feed) -> None:
        self.floor.pop(feed, None)
        self.sent_t.pop(feed, None)

    def take_frame(self, feed: Feed | None, frame: Frame) -> bool:
        """Whether a frame about to go out is still wanted: newer than the history sent
        and on this client's rate since the last frame sent."""
        if feed is None:
            return True
        if frame.tick <= self.floor.get(feed, -(1 << 62)) or not keep(self.sent_t.get(feed), frame.t, self.period_s):
            return False
        self.sent_t[feed] = frame.t
        return True

    def history_sent(self, feed: Feed, frame: Frame) -> None:
        """The history up to ``frame`` went out: live frames continue after it, on the
        same rate grid."""
        self.floor[feed] = frame.tick
        self.sent_t[feed] = frame.t
        slot = self.slots.get(feed)
        if slot is not None and not keep(frame.t, slot.t, self.period_s):
            del self.slots[feed]

    def attach(self, feed: Feed) -> None:
        self.feeds.add(feed)
        feed.subscribers.add(self)

    def detach_all(self) -> None:
        for feed in self.feeds:
            feed.subscribers.discard(self)
        self.feeds.clear()
        self.slots.clear()
        self.sent_t.clear()
        self.floor.clear()

    def next_item(self) -> tuple[str, Feed | None, Any] | None:
        """The next thing to send: ordered messages first, then the latest frames."""
        if self.queue:
            return self.queue.popleft()
        if self.slots:
            feed = next(iter(self.slots))
            return ("frame", feed, self.slots.pop(feed))
        return None

    def drop_queued_laps(self, feed: Feed) -> None:
        """Laps of ``feed`` still queued are in a history answer being sent now."""
        self.queue = deque(item for item in self.queue if not (item[0] == "lap" and item[1] is feed))

    def stats(self) -> dict[str, Any]:
        return {"peer": self.peer, "channels": None if self.channels is None else list(self.channels),
                "rate": self.rate, "drivers": sorted(f.driver for f in self.feeds if f.driver), "sent": self.sent,
                "dropped": self.dropped, "queued": len(self.queue), "errors": self.errors}
