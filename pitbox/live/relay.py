"""The team relay: many recorders publish, many clients subscribe.

* :class:`Relay` serves ``/publish`` (token role ``publisher``; one connection per
  driver) and ``/`` (role ``subscriber``). Subscribers get the driver list in ``hello``
  and in ``drivers`` messages, and choose drivers (``"drivers": [...]``, null for all),
  channels and rate as on a recorder's own stream. Each driver has its own history and lap
  list, so a subscriber joining late can fetch the session so far.
* :class:`RelayPublisher` is what a recorder uses (``pitbox record --publish URL
  --token T``): the same ``publish_*`` methods as :class:`~pitbox.live.server.StreamServer`,
  handed to a background thread that connects, sends the newest frame (older unsent frames
  are dropped, never queued), and reconnects by itself with backoff when the relay goes
  away. The tick loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from pitbox.live import protocol
from pitbox.live._inbox import FRAME, LAP, MESSAGE, SESSION, SESSION_INFO, Inbox, parse_session_info
from pitbox.live._loop import BackgroundLoop
from pitbox.live.auth import Keyring
from pitbox.live.client import SslArg, backoff_delays, open_connection
from pitbox.live.feed import Feed, Frame, MemoryHistory, Subscriber, keep
from pitbox.live.hub import SEND_BUFFER_BYTES, Hub
from pitbox.live.limits import Limits
from pitbox.live.protocol import LiveError, ProtocolError, dumps, envelope, jsonable, select_values

log = logging.getLogger(__name__)

PUBLISH_PATH = "/publish"
CLOSE_REPLACED = 4000
CLOSE_POLICY = 1008


class _DriverFeed(Feed):
    def __init__(self, driver: str, history: MemoryHistory):
        super().__init__(driver, history)
        self.publisher: ServerConnection | None = None
        self.info = {"id": driver, "connected": False}


class Relay(Hub):
    """The relay server; same options as :class:`~pitbox.live.server.StreamServer`, plus
    ``max_publisher_message_bytes`` (largest frame a publisher may send) and
    ``max_drivers`` (drivers kept, oldest disconnected ones forgotten first). ``limits``
    (:class:`~pitbox.live.limits.Limits`) replaces the size and count options when given;
    ``keyring`` (:class:`~pitbox.live.auth.Keyring`) the token secret."""

    server_name = "pitbox-relay"
    paths = {"/": "subscriber", "/stream": "subscriber", PUBLISH_PATH: "publisher"}

    def __init__(self, host: str = "127.0.0.1", port: int = protocol.DEFAULT_PORT, token_secret: str | None = None,
                 certfile: str | Path | None = None, keyfile: str | Path | None = None,
                 origins: Sequence[str] | None = None, *, history_seconds: float = 600.0, history_rate: int = 10,
                 max_message_bytes: int = 64 * 1024, max_publisher_message_bytes: int = 4 << 20,
                 max_clients: int = 1000, max_drivers: int = 256, compression: bool = False,
                 send_buffer_bytes: int | None = SEND_BUFFER_BYTES, limits: Limits | None = None,
                 keyring: Keyring | None = None):
        if limits is None:
            limits = Limits(max_message_bytes=int(max_message_bytes), max_subscribers=int(max_clients),
                            max_publisher_message_bytes=int(max_publisher_message_bytes))
        super().__init__(host, port, token_secret=token_secret, certfile=certfile, keyfile=keyfile, origins=origins,
                         compression=compression, send_buffer_bytes=send_buffer_bytes, limits=limits, keyring=keyring)
        self.max_publisher_message_bytes = limits.max_publisher_message_bytes
        self.max_drivers = max(int(max_drivers), limits.max_publishers)
        self._history_seconds = history_seconds
        self._history_rate = history_rate
        MemoryHistory(history_seconds, history_rate)  # checks the settings now, not on first publisher
        self._feeds: dict[str, _DriverFeed] = {}

    def start(self) -> Relay:
        super().start()
        return self

    def run_forever(self) -> None:
        """Start and serve until Ctrl+C (for the CLI)."""
        if not self.running:
            self.start()
        stop = threading.Event()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def drivers(self) -> list[dict[str, Any]]:
        """The drivers the relay knows (``id``, ``name`` …, ``connected``)."""
        async def snap() -> list[dict[str, Any]]:
            return self._driver_list()
        return self._bg.run(snap()) if self.running else []

    def _max_size(self) -> int:
        return max(self.max_message_bytes, self.max_publisher_message_bytes)

    def _driver_counts(self) -> dict[str, int]:
        return {"known": len(self._feeds), "connected": sum(f.publisher is not None for f in self._feeds.values())}

    def _driver_list(self) -> list[dict[str, Any]]:
        return [dict(f.info) for f in self._feeds.values()]

    def _hello(self, claims: dict[str, Any]) -> dict[str, Any]:
        msg = super()._hello(claims)
        msg["drivers"] = self._driver_list()
        # whether this client may send voice commands; which drivers take them: ``commands``
        # in each driver's entry; a token limited to some drivers (``command:<driver>``) says whose
        msg["commands"] = self._may_command(claims)
        limited = self._command_drivers(claims)
        if limited:
            msg["command_drivers"] = sorted(limited)
        return msg

    def _feeds_for(self, drivers: tuple[str, ...] | None) -> list[Feed]:
        if drivers is None:
            return list(self._feeds.values())
        return [self._feeds[d] for d in drivers if d in self._feeds]

    def _broadcast_drivers(self) -> None:
        data = dumps(envelope("drivers", drivers=self._driver_list()))
        for sub in self._subs:
            sub.push("drivers", data)

    def _feed(self, driver: str) -> _DriverFeed:
        feed = self._feeds.get(driver)
        if feed is not None:
            return feed
        if len(self._feeds) >= self.max_drivers:
            idle = [d for d, f in self._feeds.items() if f.publisher is None]
            if not idle:
                raise ProtocolError("relay_full", f"relay full: {self.max_drivers} drivers connected")
            for sub in self._feeds[idle[0]].subscribers:
                sub.feeds.discard(self._feeds[idle[0]])
            del self._feeds[idle[0]]
        feed = self._feeds[driver] = _DriverFeed(driver, MemoryHistory(self._history_seconds, self._history_rate))
        for sub in self._subs:
            if sub.subscribed and (sub.wanted is None or driver in sub.wanted):
                sub.attach(feed)
        return feed

    async def _serve_publisher(self, ws: ServerConnection, claims: dict[str, Any]) -> None:
        limit = self.max_publisher_message_bytes
        try:
            data = await ws.recv()  # the guard closes the connection after limits.hello_timeout_s
            self._admit(ws)
            first = protocol.decode(data, limit)
            driver, info = self._publisher_identity(first, claims)
            self._guards[ws].name = driver
            current = self._feeds.get(driver)
            if (current is None or current.publisher is None) and self._publishers() >= self.limits.max_publishers:
                await self._full(ws, "publisher", self.limits.max_publishers)
                return
            feed = self._feed(driver)
        except ProtocolError as exc:
            reason = str(exc)
            await ws.send(protocol.error(exc.code, reason), text=True)
            await ws.close(CLOSE_POLICY, reason[:120])
            return
        old = feed.publisher
        if old is not None:
            asyncio.ensure_future(old.close(CLOSE_REPLACED, "replaced by a newer connection of this driver"))
        feed.publisher = ws
        feed.info = {**info, "id": driver, "connected": True, "since": time.time()}
        self._broadcast_drivers()
        log.info("relay: driver %s connected from %s", driver, ws.remote_address)
        try:
            try:
                await ws.send(dumps(envelope("hello", server=self.server_name, role="publisher", driver=driver,
                                             keepalive_s=self._guards[ws].keepalive_s)), text=True)
            except ConnectionClosed:
                pass  # a publisher that said all and left already: what it sent is still read below
            async for data in ws:
                if not self._admit(ws):
                    continue
                try:
                    self._on_publisher_message(feed, protocol.decode(data, limit))
                except ProtocolError as exc:
                    await ws.send(protocol.error(exc.code, str(exc)), text=True)
        finally:
            if feed.publisher is ws:
                feed.publisher = None
                feed.info["connected"] = False
                self._broadcast_drivers()
                log.info("relay: driver %s disconnected", driver)

    def _publishers(self) -> int:
        return sum(f.publisher is not None for f in self._feeds.values())

    def _publisher_identity(self, hello: dict[str, Any], claims: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if hello["type"] != "hello":
            raise ProtocolError("bad_hello", f"a publisher starts with a hello message, got {hello['type']!r}")
        info = hello.get("driver")
        if not isinstance(info, dict):
            raise ProtocolError("bad_hello", "field driver: expected an object with at least an id")
        subject = claims.get("sub")
        driver = info.get("id", subject)
        if subject is not None and driver != subject:
            raise ProtocolError("bad_driver", f"driver id {driver!r} does not match the token's subject {subject!r}")
        driver = protocol.check_driver_id(driver)
        return driver, {k: v for k, v in info.items() if isinstance(k, str) and isinstance(v, (str, int, float, bool))}

    def _on_publisher_message(self, feed: _DriverFeed, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "frame":
            tick, t, values = protocol.check_frame(msg)
            # one copy of each channel name for all the frames kept in the history (json makes
            # new key strings per message): 6.4 instead of 15 KB per frame of 143 channels
            values = {sys.intern(k): v for k, v in values.items()}
            feed.add_frame(Frame(tick, t, values, feed.driver, clean=True))
        elif kind == "lap":
            feed.add_lap(_object(msg, "row"))
        elif kind == "session":
            feed.set_session(_object(msg, "meta"))
        elif kind == "session_info":
            feed.set_session_info(_object(msg, "info"))
        elif kind == "keepalive":
            pass  # only resets the idle timer (limits.idle_timeout_s)
        elif kind in protocol.COACH_TYPES:
            feed.add_message(msg)
        else:
            raise ProtocolError("unknown_type", f"field type: expected frame, lap, session, session_info or a live "
                                f"coach message ({', '.join(protocol.COACH_TYPES)}), got {kind!r}")

    def _driver_feed(self, msg: dict[str, Any]) -> tuple[str, _DriverFeed]:
        """The driver a client's request names and its feed, which must have a publisher."""
        driver = protocol.check_driver_id(msg.get("driver"))
        feed = self._feeds.get(driver)
        if feed is None or feed.publisher is None:
            raise ProtocolError("bad_driver", f"driver {driver!r} is not connected")
        return driver, feed

    async def _set_reference(self, sub: Subscriber, msg: dict[str, Any]) -> None:
        """Passed on to the driver's recorder, whose live coach answers on its stream."""
        kind, lap = protocol.check_set_reference(msg)
        _, feed = self._driver_feed(msg)
        await feed.publisher.send(dumps({"v": protocol.VERSION, "type": "set_reference", "kind": kind, "lap": lap}),
                                  text=True)

    async def _command(self, sub: Subscriber, msg: dict[str, Any]) -> None:
        """Passed on to the driver's recorder, whose voice coach answers (a ``voice`` message)."""
        name, arg = protocol.check_command(msg)
        rid = protocol.command_id(msg)
        extra = {} if rid is None else {"id": rid}
        allowed = sub.command_drivers
        named = protocol.check_driver_id(msg.get("driver"))
        if allowed is not None and named not in allowed:  # before saying whether that driver is connected
            raise ProtocolError("forbidden", f"command: this token may command only {', '.join(sorted(allowed))}, "
                                f"not {named!r}")
        driver, feed = self._driver_feed(msg)
        if not feed.info.get("commands"):
            raise ProtocolError("no_voice", f"driver {driver!r}: the recorder runs no voice coach (pitbox record --voice)")
        await feed.publisher.send(dumps(envelope("command", command=name, arg=arg, **extra)), text=True)
        log.info("relay: voice command from %s to %s: %s%s", sub.peer, driver, name, f" {arg}" if arg is not None else "")
        sub.push("command_ok", dumps(envelope("command_ok", command=name, arg=arg, driver=driver, **extra)))


def _object(msg: dict[str, Any], field: str) -> dict[str, Any]:
    value = msg.get(field)
    if not isinstance(value, dict):
        raise ProtocolError("bad_message", f"{msg['type']}.{field}: expected an object")
    return value


def _publish_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise LiveError(f"relay url {url!r}: expected ws://host:port or wss://host:port")
    if parts.path in ("", "/"):
        parts = parts._replace(path=PUBLISH_PATH)
    return urlunsplit(parts)


def _default_driver_id(token: str | None) -> str:
    if token:
        try:
            sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
        except jwt.PyJWTError:
            sub = None
        if isinstance(sub, str):
            return sub
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:64] or "driver"


class RelayPublisher(Inbox):
    """Publishes one recorder's stream to a relay from a background thread.

    ``url``: the relay (``ws://host:port``; ``/publish`` is added); ``token``: a
    ``publisher`` token (its ``sub`` claim is the driver id); ``driver_id`` (else the
    token's subject, else the host name), ``driver_info`` (name, car … shown to
    subscribers); ``channels`` (None: all) and ``rate`` (Hz) of what goes upstream;
    ``ssl``: a CA/certificate path, context or True for wss; ``voice_commands``: this
    recorder runs a voice coach (its driver entry on the relay says ``"commands": true``
    and the relay passes subscribers' ``command`` messages on to :attr:`command_handler`).
    :meth:`start` returns at once
    and never fails because the relay is down: it keeps retrying with backoff
    (``backoff_s`` doubling up to ``backoff_max_s``)."""

    def __init__(self, url: str, *, token: str | None = None, driver_id: str | None = None,
                 driver_info: Mapping[str, Any] | None = None, channels: Sequence[str] | None = None,
                 rate: int = 60, ssl: SslArg = None, compression: bool = True, backoff_s: float = 0.25,
                 backoff_max_s: float = 5.0, open_timeout_s: float = 5.0, seed: int | None = None,
                 voice_commands: bool = False):
        super().__init__()
        if rate not in protocol.RATES:
            raise LiveError(f"rate: expected one of {list(protocol.RATES)} Hz, got {rate!r}")
        self.url = _publish_url(url)
        self.token = token
        self.driver_id = protocol.check_driver_id(driver_id or _default_driver_id(token))
        self.driver_info = dict(driver_info or {})
        if voice_commands:
            self.driver_info["commands"] = True
        self.channels = None if channels is None else tuple(channels)
        self.period_s = 1.0 / rate
        self.ssl = ssl
        self.compression = compression
        self.open_timeout_s = open_timeout_s
        self._delay = backoff_delays(backoff_s, backoff_max_s, random.Random(seed))
        self._bg = BackgroundLoop("pitbox-relay-publisher")
        self._connected = threading.Event()
        self._task: Any = None
        # loop-thread state
        self._slot: tuple[Any, ...] | None = None
        self._last_t: float | None = None
        self._queue: deque[bytes] = deque(maxlen=1024)
        self._session: Any = None
        self._session_info: Any = None
        self._laps: list[Any] = []
        self._kept: dict[str, bytes] = {}  # latest live coach reference / coach, re-sent on reconnect
        self._kept_all: list[bytes] = []  # the session's tips, re-sent on reconnect
        #: ``control_handler(msg)``: called (on the publisher's thread) with each
        #: ``set_reference`` the relay passes on from a subscriber; the live coach sets it.
        self.control_handler: Any = None
        #: ``command_handler(command, arg)``: called (on the publisher's thread) with each
        #: voice ``command`` the relay passes on; the voice coach's ``post_command``.
        self.command_handler: Any = None
        self._wake_event: asyncio.Event | None = None
        self._ws: ClientConnection | None = None
        self._keepalive_s: float | None = None  #: from the relay's hello
        self._logged_error: str | None = None
        self._info_seq = 0
        self.frames_sent = 0
        self.frames_dropped = 0
        self.connects = 0
        self.last_error: str | None = None

    def _command(self, msg: dict[str, Any]) -> None:
        """A voice command the relay passed on (it checked it; checked again here)."""
        try:
            name, arg = protocol.check_command(msg)
            rid = protocol.command_id(msg)
        except ProtocolError as exc:
            log.warning("%s: voice command refused: %s", self.url, exc)
            return
        handler = self.command_handler
        if handler is None:
            log.warning("%s: voice command %r: no voice coach here yet", self.url, name)
            return
        try:
            handler(name, arg, rid)
        except Exception:  # noqa: BLE001 - a bad request must not end the publisher
            log.exception("voice command from the relay")

    # -- lifecycle (any thread) ------------------------------------------------------
    def start(self) -> RelayPublisher:
        loop = self._bg.start()
        self._bg.run(self._init())
        self._attach_loop(loop)
        self._task = self._bg.submit(self._run())
        return self

    async def _init(self) -> None:
        self._wake_event = asyncio.Event()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what was published before this call (up to 2 s when connected), then close."""
        if self._bg.running:
            try:
                self._bg.run(self._flush(min(2.0, timeout)), timeout)
            except LiveError:
                pass
        self._detach_loop()
        if self._bg.running:
            try:
                self._bg.run(self._shutdown(), timeout)
            except LiveError:
                pass
        self._bg.stop(timeout)
        self._connected.clear()

    async def _flush(self, timeout: float) -> None:
        self._drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._ws is not None and self._queue and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def _shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
        ws = self._ws
        if ws is not None:
            await ws.close()

    def __enter__(self) -> RelayPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "frames_published": self.frames_published,
                "frames_sent": self.frames_sent, "frames_dropped": self.frames_dropped,
                "connects": self.connects, "last_error": self.last_error}

    # -- loop thread -----------------------------------------------------------------
    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind is FRAME:
            if not keep(self._last_t, float(item[2]), self.period_s):
                return
            self._last_t = float(item[2])
            if self._slot is not None:
                self.frames_dropped += 1
            self._slot = item
        elif kind is LAP:
            row = jsonable(item[1])
            self._laps.append(row)
            self._send_ordered(dumps(envelope("lap", row=row)))
        elif kind is MESSAGE:
            data = dumps({**jsonable(item[1]), "v": protocol.VERSION})
            if item[1]["type"] in protocol.KEEP_LATEST:
                self._kept[item[1]["type"]] = data
            elif item[1]["type"] in protocol.KEEP_ALL:
                self._kept_all.append(data)
            self._send_ordered(data)
        elif kind is SESSION:
            self._session = jsonable(item[1])
            self._laps = []
            self._kept.clear()
            self._kept_all.clear()
            self._last_t = None
            self._send_ordered(dumps(envelope("session", meta=self._session)))
        elif kind is SESSION_INFO:
            self._set_session_info(item[1])
        assert self._wake_event is not None
        self._wake_event.set()

    def _send_ordered(self, data: bytes) -> None:
        if self._ws is None:
            return  # the state is re-sent on connect
        if self._slot is not None:
            self._queue.append(self._encode(self._slot))
            self._slot = None
        self._queue.append(data)

    def _set_session_info(self, info: Any) -> None:
        if isinstance(info, Mapping):
            self._session_info = jsonable(info)
            self._send_ordered(dumps(envelope("session_info", info=self._session_info)))
            return
        self._info_seq += 1
        seq = self._info_seq
        future = asyncio.get_running_loop().run_in_executor(None, parse_session_info, info)

        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled() or seq != self._info_seq:
                return
            if fut.exception() is not None:
                log.warning("session info not published: %s", fut.exception())
                return
            self._set_session_info(fut.result())
            assert self._wake_event is not None
            self._wake_event.set()

        future.add_done_callback(done)

    def _encode(self, item: tuple[Any, ...]) -> bytes:
        values = select_values(item[3], self.channels, clean=False)
        return dumps(protocol.frame_message(int(item[1]), float(item[2]), values))

    def _state(self) -> list[bytes]:
        hello = envelope("hello", driver={**jsonable(self.driver_info), "id": self.driver_id})
        out = [dumps(hello)]
        if self._session is not None:
            out.append(dumps(envelope("session", meta=self._session)))
        if self._session_info is not None:
            out.append(dumps(envelope("session_info", info=self._session_info)))
        out.extend(dumps(envelope("lap", row=row)) for row in self._laps)
        out.extend(self._kept.values())
        out.extend(self._kept_all)
        return out

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                ws = await open_connection(self.url, token=self.token, ssl=self.ssl, open_timeout_s=self.open_timeout_s,
                                           compression=self.compression)
            except InvalidStatus as exc:
                body = (exc.response.body or b"").decode(errors="replace").strip()
                self.last_error = f"relay refused: HTTP {exc.response.status_code}: {body}"
                if self.last_error != self._logged_error:  # once, not on every retry
                    self._logged_error = self.last_error
                    log.error("%s: %s (check the token)", self.url, self.last_error)
            except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
                self.last_error = str(exc) or type(exc).__name__
            else:
                attempt = 0
                await self._serve(ws)
            attempt += 1
            await asyncio.sleep(self._delay(attempt))

    async def _serve(self, ws: ClientConnection) -> None:
        assert self._wake_event is not None
        self._queue.clear()
        self._ws = ws
        self._keepalive_s = None
        self.connects += 1
        reader = asyncio.create_task(self._read(ws))
        try:
            for data in self._state():
                await ws.send(data, text=True)
            self._connected.set()
            self.last_error = None
            log.info("%s: publishing as %s", self.url, self.driver_id)
            while True:
                while self._queue or self._slot is not None:
                    if self._queue:
                        # taken off the queue once written, so that stop() (_flush) waits for a
                        # message still being written as for one not yet begun
                        data = self._queue[0]
                        await ws.send(data, text=True)
                        if self._queue and self._queue[0] is data:  # (a full queue drops its oldest)
                            self._queue.popleft()
                    else:
                        item, self._slot = self._slot, None
                        assert item is not None
                        await ws.send(self._encode(item), text=True)
                        self.frames_sent += 1
                self._wake_event.clear()
                if self._keepalive_s is None:
                    await self._wake_event.wait()
                else:  # the relay closes publishers that stay silent (limits.idle_timeout_s)
                    try:
                        await asyncio.wait_for(self._wake_event.wait(), self._keepalive_s)
                    except asyncio.TimeoutError:
                        await ws.send(dumps(envelope("keepalive")), text=True)
        except ConnectionClosed as exc:
            self.last_error = f"connection closed: {exc}"
            log.info("%s: %s; reconnecting", self.url, self.last_error)
        finally:
            self._connected.clear()
            self._ws = None
            reader.cancel()

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for data in ws:
                try:
                    msg = protocol.decode(data, 1 << 20)
                except ProtocolError:
                    continue
                if msg["type"] == "error":
                    self.last_error = f"relay: {msg.get('code')}: {msg.get('message')}"
                    if self.last_error != self._logged_error:  # once, not on every retry
                        self._logged_error = self.last_error
                        log.warning("%s", self.last_error)
                elif msg["type"] == "hello":
                    self._logged_error = None
                    keepalive = msg.get("keepalive_s")
                    self._keepalive_s = float(keepalive) if type(keepalive) in (int, float) and keepalive > 0 else None
                    if self._wake_event is not None:
                        self._wake_event.set()  # the sending loop now waits at most keepalive_s
                elif msg["type"] == "set_reference" and self.control_handler is not None:
                    try:
                        kind, lap = protocol.check_set_reference(msg)
                        self.control_handler({"type": "set_reference", "kind": kind, "lap": lap})
                    except Exception:  # noqa: BLE001 - a bad request must not end the publisher
                        log.exception("set_reference from the relay")
                elif msg["type"] == "command":
                    self._command(msg)
        except ConnectionClosed:
            pass
