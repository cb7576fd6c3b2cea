"""Python clients of the live stream and the relay.

* :class:`LiveClient`: ``async for msg in LiveClient(url, token=..., channels=[...], rate=10)``
  yields every message as a dict (``hello`` first on each connection, then ``subscribed``,
  ``session``, ``frame``, ``lap`` …), reconnecting with exponential backoff when the
  connection drops. Refused tokens raise :class:`~pitbox.live.protocol.LiveError` (retrying
  would not help).
* :class:`LiveFeed`: the same on a background thread, for notebooks: ``latest()``,
  ``frames()`` (a DataFrame of the frames kept), ``laps()``, ``lap_frames(lap)``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl as ssl_module
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from pitbox.live import protocol
from pitbox.live._loop import BackgroundLoop
from pitbox.live.protocol import LiveError, dumps, envelope

log = logging.getLogger(__name__)

#: HTTP statuses that retrying cannot fix.
FATAL_STATUSES = (400, 401, 403, 404)
SslArg = ssl_module.SSLContext | str | Path | bool | None


def client_ssl_context(ssl: SslArg) -> ssl_module.SSLContext | None:
    """``None``/``False``: plain ws; ``True``: system CAs; a path: trust that CA or
    self-made certificate (PEM); a context: used as is."""
    if ssl is None or ssl is False:
        return None
    if isinstance(ssl, ssl_module.SSLContext):
        return ssl
    if ssl is True:
        return ssl_module.create_default_context()
    try:
        return ssl_module.create_default_context(cafile=str(ssl))
    except (OSError, ssl_module.SSLError) as exc:
        raise LiveError(f"{ssl}: expected a PEM certificate to trust ({exc})") from None


async def open_connection(url: str, *, token: str | None = None, ssl: SslArg = None, origin: str | None = None,
                          open_timeout_s: float = 10.0, max_message_bytes: int | None = 64 << 20,
                          compression: bool = False) -> ClientConnection:
    """One WebSocket connection to a PitBox server or relay, token in the
    ``Authorization`` header; refusals raise :class:`InvalidStatus`."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    ctx = client_ssl_context(ssl)
    if ctx is None and url.startswith("wss://"):
        ctx = ssl_module.create_default_context()
    kwargs: dict[str, Any] = {"ssl": ctx} if ctx is not None else {}
    return await connect(url, additional_headers=headers, origin=origin, proxy=None,  # type: ignore[arg-type]
                         open_timeout=open_timeout_s, max_size=max_message_bytes, close_timeout=2.0,
                         compression="deflate" if compression else None, **kwargs)


def backoff_delays(initial_s: float, max_s: float, rng: random.Random) -> Callable[[int], float]:
    """Delay before retry ``n`` (1, 2, …): ``initial_s * 2**(n-1)`` capped at ``max_s``,
    scaled by a random factor in [0.5, 1] so many clients do not return in step."""
    def delay(attempt: int) -> float:
        return min(max_s, initial_s * 2 ** min(attempt - 1, 30)) * (0.5 + 0.5 * rng.random())
    return delay


class LiveClient:
    """Async iterator over a stream's messages, with reconnection.

    ``channels`` None means every channel; ``rate`` is 60, 30, 10 or 1 Hz; ``drivers``
    (relay only) None means every driver; ``history`` asks on each connection for the
    session so far (after the last tick already received, so a reconnect fills the gap);
    ``ssl`` is a CA/certificate path, a context or True (see :func:`client_ssl_context`);
    ``max_retries`` None retries forever.
    """

    def __init__(self, url: str, *, token: str | None = None, channels: Sequence[str] | None = None,
                 rate: int = 10, drivers: Sequence[str] | None = None, history: bool = False, ssl: SslArg = None,
                 origin: str | None = None, backoff_s: float = 0.25, backoff_max_s: float = 10.0,
                 max_retries: int | None = None, open_timeout_s: float = 10.0, seed: int | None = None):
        if rate not in protocol.RATES:
            raise LiveError(f"rate: expected one of {list(protocol.RATES)} Hz, got {rate!r}")
        self.url = url
        self.token = token
        self.channels = None if channels is None else list(channels)
        self.rate = rate
        self.drivers = None if drivers is None else list(drivers)
        self.history = history
        self.ssl = ssl
        self.origin = origin
        self.max_retries = max_retries
        self.open_timeout_s = open_timeout_s
        self._delay = backoff_delays(backoff_s, backoff_max_s, random.Random(seed))
        self._ws: ClientConnection | None = None
        self._pending: deque[dict[str, Any]] = deque()
        self._closed = False
        self.last_tick: dict[str | None, int] = {}
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def __aiter__(self) -> LiveClient:
        return self

    async def __aenter__(self) -> LiveClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def subscribe(self, channels: Sequence[str] | None = None, rate: int | None = None,
                        drivers: Sequence[str] | None = None) -> None:
        """Change the subscription (kept across reconnects)."""
        self.channels = None if channels is None else list(channels)
        self.rate = self.rate if rate is None else rate
        self.drivers = None if drivers is None else list(drivers)
        if self._ws is not None:
            await self._ws.send(self._subscribe_message(), text=True)

    async def set_reference(self, kind: str, lap: str | None = None, driver: str | None = None) -> None:
        """Ask the live coach to switch its reference lap: ``kind`` ``session_best``,
        ``all_time_best``, ``optimal`` or ``lap`` with ``lap="SESSION:LAP"``; on a relay
        ``driver`` names whose coach. The answer is a new ``reference`` message (or an
        ``error``; a lap that cannot be found shows as ``reference_error`` in ``coach``)."""
        await self._send_request({"v": protocol.VERSION, "type": "set_reference", "kind": kind, "lap": lap}, driver)

    async def command(self, command: str, arg: int | None = None, driver: str | None = None,
                      id: str | int | None = None) -> None:  # noqa: A002 - the message's field
        """Send a voice command to the recorder's voice coach (``pitbox record --voice``),
        as if the driver had said it: ``command`` one of :data:`pitbox.voice.coach.COMMANDS`,
        ``arg`` the turn number of ``focus on turn``; on a relay ``driver`` names whose. The
        server answers ``command_ok`` (or an ``error``: ``forbidden`` without the token's
        ``command`` scope, ``no_voice``, ``bad_command``); the spoken answer comes as a
        ``voice`` message. The ``hello`` says whether this connection may (``commands``).
        ``id`` (a string of up to 64 characters or an integer) comes back in the ``command_ok``
        or ``error`` and as ``reply_to`` in the answer's ``voice`` message, to tell this
        client's answers from another's. An unknown command or a bad ``arg`` or ``id`` raises
        :class:`ProtocolError` here, unsent."""
        msg: dict[str, Any] = {"v": protocol.VERSION, "type": "command", "command": command, "arg": arg}
        if id is not None:
            msg["id"] = id
        msg["command"], msg["arg"] = protocol.check_command(msg)
        await self._send_request(msg, driver)

    async def _send_request(self, msg: dict[str, Any], driver: str | None) -> None:
        """A ``set_reference`` or ``command`` message, for ``driver`` on a relay."""
        if self._ws is None:
            raise LiveError(f"{self.url}: not connected; {msg['type']} needs a connection")
        if driver is not None:
            msg["driver"] = driver
        await self._ws.send(dumps(msg), text=True)

    def _subscribe_message(self, with_history: bool = False) -> bytes:
        msg = envelope("subscribe", channels=self.channels, rate=self.rate, drivers=self.drivers)
        if with_history:
            since: Any = self.last_tick.get(None)
            if since is None and self.last_tick:
                since = {d: t for d, t in self.last_tick.items() if d is not None}
            msg.update(history=True, since_tick=since)
        return dumps(msg)

    async def __anext__(self) -> dict[str, Any]:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closed:
                raise StopAsyncIteration
            if self._ws is None:
                await self._connect()
                continue
            try:
                data = await self._ws.recv()
            except ConnectionClosed as exc:
                self._ws = None
                if self._closed:
                    raise StopAsyncIteration from None
                log.info("%s: connection closed (%s); reconnecting", self.url, exc)
                continue
            msg = json.loads(data)
            self._track(msg)
            return msg

    def _track(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "frame":
            self.last_tick[msg.get("driver")] = msg["tick"]
        elif kind == "history" and msg.get("frames"):
            self.last_tick[msg.get("driver")] = msg["frames"][-1]["tick"]
        elif kind == "session":
            self.last_tick.pop(msg.get("driver"), None)

    async def _connect(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                ws = await open_connection(self.url, token=self.token, ssl=self.ssl, origin=self.origin,
                                           open_timeout_s=self.open_timeout_s)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in FATAL_STATUSES:
                    body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
                    raise LiveError(f"{self.url}: refused with HTTP {status}: {body}") from None
                error: Exception = exc
            except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
                error = exc
            else:
                await self._start(ws)
                return
            attempt += 1
            if self.max_retries is not None and attempt > self.max_retries:
                raise LiveError(f"{self.url}: cannot connect after {attempt} attempts: {error}")
            delay = self._delay(attempt)
            log.info("%s: %s; retry %d in %.2f s", self.url, error, attempt, delay)
            await asyncio.sleep(delay)

    async def _start(self, ws: ClientConnection) -> None:
        self.connects += 1
        await ws.send(self._subscribe_message(with_history=self.history), text=True)
        self._ws = ws


def _frame_row(msg: dict[str, Any]) -> dict[str, Any]:
    row = {"tick": msg["tick"], "session_time": msg["t"]}
    if "driver" in msg:
        row["driver"] = msg["driver"]
    row.update(msg["values"])
    return row


class LiveFeed:
    """A :class:`LiveClient` on a background thread, for notebooks and scripts.

    ``LiveFeed(url, token=..., channels=[...], rate=10).start()``; then ``latest()`` is the
    newest frame as a dict (``tick``, ``session_time``, channels), ``frames()`` a DataFrame
    of the last ``max_frames`` frames, ``laps()`` the lap rows, ``lap_frames(lap)`` the
    frames of one lap (needs the ``Lap`` channel). ``on_message`` is called on the feed's
    thread for every message. ``error`` holds a fatal error (refused token)."""

    def __init__(self, url: str, *, max_frames: int = 36000, on_message: Callable[[dict[str, Any]], None] | None = None,
                 **client_kwargs: Any):
        self._client_kwargs = client_kwargs
        self.url = url
        self._frames: deque[dict[str, Any]] = deque(maxlen=max_frames)
        self._latest: dict[str | None, dict[str, Any]] = {}
        self._laps: list[dict[str, Any]] = []
        self._session: dict[str | None, Any] = {}
        self._session_info: dict[str | None, Any] = {}
        self._drivers: list[dict[str, Any]] = []
        self._coach: dict[str | None, dict[str, dict[str, Any]]] = {}  # driver -> type -> latest
        self._tips: list[dict[str, Any]] = []
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._count = 0
        self._on_message = on_message
        self._bg = BackgroundLoop("pitbox-live-feed")
        self._task: Any = None
        self._client: LiveClient | None = None
        self.error: BaseException | None = None

    def start(self) -> LiveFeed:
        self._client = LiveClient(self.url, **self._client_kwargs)
        self._bg.start()
        self._task = self._bg.submit(self._run())
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._client is not None and self._bg.running:
            try:
                self._bg.run(self._client.aclose(), timeout)
            except (LiveError, ConnectionClosed):
                pass
        self._bg.stop(timeout)

    def __enter__(self) -> LiveFeed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def _run(self) -> None:
        assert self._client is not None
        try:
            async for msg in self._client:
                self._take(msg)
                if self._on_message is not None:
                    self._on_message(msg)
                for listener in list(self._listeners):
                    try:
                        listener(msg)
                    except Exception:  # noqa: BLE001 - a listener's bug must not stop the feed
                        log.exception("LiveFeed listener failed")
        except LiveError as exc:
            self.error = exc
            log.error("%s", exc)
        finally:
            with self._changed:
                self._changed.notify_all()

    def _take(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        driver = msg.get("driver")
        with self._changed:
            if kind == "frame":
                row = _frame_row(msg)
                self._frames.append(row)
                self._latest[driver] = row
                self._count += 1
            elif kind == "history":
                for item in msg["frames"]:
                    self._frames.append(_frame_row({**item, **({"driver": driver} if driver else {})}))
            elif kind == "lap":
                row = {**msg["row"], **({"driver": driver} if driver else {})}
                if row not in self._laps:
                    self._laps.append(row)
            elif kind == "session":
                self._session[driver] = msg["meta"]
                self._laps = [r for r in self._laps if r.get("driver") != driver]
                self._coach.pop(driver, None)
                self._tips = [t for t in self._tips if t.get("driver") != driver]
            elif kind in ("reference", "coach"):
                self._coach.setdefault(driver, {})[kind] = msg
            elif kind == "tip":
                if msg not in self._tips:
                    self._tips.append(msg)
            elif kind == "session_info":
                self._session_info[driver] = msg["info"]
            elif kind in ("drivers", "hello") and "drivers" in msg:
                self._drivers = msg["drivers"]
            self._changed.notify_all()

    def wait(self, frames: int = 1, timeout: float = 10.0) -> bool:
        """Block until ``frames`` live frames arrived since start (or an error)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count >= frames or self.error is not None, timeout) \
                and self.error is None

    def latest(self, driver: str | None = None) -> dict[str, Any] | None:
        with self._lock:
            if driver is None and len(self._latest) == 1:
                return dict(next(iter(self._latest.values())))
            row = self._latest.get(driver)
            return None if row is None else dict(row)

    def frames(self, driver: str | None = None) -> pd.DataFrame:
        """The frames kept, oldest first: columns ``tick``, ``session_time`` [s], channels."""
        with self._lock:
            rows = [r for r in self._frames if driver is None or r.get("driver") == driver]
        return pd.DataFrame(rows)

    def laps(self, driver: str | None = None) -> pd.DataFrame:
        with self._lock:
            rows = [r for r in self._laps if driver is None or r.get("driver") == driver]
        return pd.DataFrame(rows)

    def lap_frames(self, lap: int | None = None, driver: str | None = None) -> pd.DataFrame:
        """The kept frames of lap ``lap`` (by the ``Lap`` channel); None: the last lap
        completed (the one before the newest frame's lap)."""
        df = self.frames(driver)
        if df.empty:
            return df
        if "Lap" not in df.columns:
            raise LiveError("lap_frames: the Lap channel is not among the subscribed channels; add it to channels")
        if lap is None:
            lap = int(df["Lap"].iloc[-1]) - 1
        return df[df["Lap"] == lap].reset_index(drop=True)

    def session(self, driver: str | None = None) -> Any:
        with self._lock:
            return self._session.get(driver)

    def session_info(self, driver: str | None = None) -> Any:
        with self._lock:
            return self._session_info.get(driver)

    def drivers(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._drivers)

    def coach(self, driver: str | None = None) -> dict[str, Any] | None:
        """The live coach's latest ``coach`` message (delta, fuel, tyres …), or None."""
        with self._lock:
            return self._coach.get(driver, {}).get("coach")

    def reference(self, driver: str | None = None) -> dict[str, Any] | None:
        """The live coach's latest ``reference`` message, or None."""
        with self._lock:
            return self._coach.get(driver, {}).get("reference")

    def tips(self, driver: str | None = None) -> pd.DataFrame:
        """The session's tips so far (one row per ``tip`` message)."""
        with self._lock:
            rows = [t for t in self._tips if driver is None or t.get("driver") == driver]
        return pd.DataFrame(rows)

    def set_reference(self, kind: str, lap: str | None = None, driver: str | None = None,
                      timeout: float = 10.0) -> None:
        """Switch the live coach's reference (see :meth:`LiveClient.set_reference`)."""
        if self._client is None or not self._bg.running:
            raise LiveError("set_reference: the feed is not started")
        self._bg.run(self._client.set_reference(kind, lap, driver), timeout)

    def command(self, command: str, arg: int | None = None, driver: str | None = None, timeout: float = 10.0,
                id: str | int | None = None) -> None:  # noqa: A002 - the message's field
        """Send a voice command to the recorder's voice coach (see :meth:`LiveClient.command`)."""
        if self._client is None or not self._bg.running:
            raise LiveError("command: the feed is not started")
        self._bg.run(self._client.command(command, arg, driver, id=id), timeout)

    def add_listener(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(msg)`` on the feed's thread for every message from now on."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[dict[str, Any]], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)
