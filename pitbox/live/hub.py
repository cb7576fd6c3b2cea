"""What the stream server and the relay share: listening (ws or wss) on an event loop in
a background thread, the checks before the upgrade (``/healthz``, path, origin, token),
and serving subscribers (subscribe, history, the per-client sender).
"""

from __future__ import annotations

import asyncio
import http
import logging
import socket
import ssl
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from pitbox.live import auth, protocol
from pitbox.live._loop import BackgroundLoop
from pitbox.live.feed import RATE_BIT, DirectLine, Feed, Frame, Subscriber, decimate
from pitbox.live.limits import (
    ADMIT,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    COMMAND_BURST,
    DROP_AND_TELL,
    ClientGuard,
    Limits,
    ThrottledLog,
    TokenBucket,
)
from pitbox.live.protocol import LiveError, ProtocolError, dumps, envelope

log = logging.getLogger(__name__)

HISTORY_CHUNK_FRAMES = 256
HISTORY_CATCH_UP_PASSES = 3
CLOSE_TOO_SLOW = 1013
#: Kernel send buffer per client [bytes]. Loopback autotuning grows it to megabytes, which
#: hides a stalled client for tens of seconds and holds that much memory per client; 128 KiB
#: still carries 1.3 MB/s over a 100 ms link, far more than a telemetry stream needs.
SEND_BUFFER_BYTES = 128 * 1024


def server_ssl_context(certfile: str | Path | None, keyfile: str | Path | None) -> ssl.SSLContext | None:
    """A TLS context for wss, or None for plain ws when no certificate is given."""
    if certfile is None:
        if keyfile is not None:
            raise LiveError(f"keyfile {keyfile}: given without certfile; pass both to serve wss")
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
    except FileNotFoundError:  # ssl names no file: say which of the two is missing
        missing = [str(p) for p in (certfile, keyfile) if p is not None and not Path(p).is_file()]
        raise LiveError(f"{' and '.join(missing) or certfile}: certificate or key file not found") from None
    except (ssl.SSLError, OSError) as exc:
        raise LiveError(f"certfile {certfile} / keyfile {keyfile}: expected a PEM certificate and its "
                        f"private key ({exc})") from None
    return ctx


def _offered_subprotocols(headers: Headers) -> list[str]:
    return [p.strip() for value in headers.get_all("Sec-WebSocket-Protocol") for p in value.split(",") if p.strip()]


def _select_subprotocol(connection: ServerConnection, offered: Sequence[str]) -> str | None:
    return auth.SUBPROTOCOL if auth.SUBPROTOCOL in offered else None


def _reject(connection: ServerConnection, status: int, reason: str) -> Response:
    response = connection.respond(status, reason + "\n")
    if status == http.HTTPStatus.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = 'Bearer realm="pitbox"'
    return response


class Hub:
    """Base of :class:`~pitbox.live.server.StreamServer` and :class:`~pitbox.live.relay.Relay`."""

    server_name = "pitbox-hub"
    #: URL path -> role a token must carry there.
    paths: dict[str, str] = {"/": "subscriber", "/stream": "subscriber"}

    def __init__(self, host: str = "127.0.0.1", port: int = protocol.DEFAULT_PORT, *,
                 token_secret: str | None = None, certfile: str | Path | None = None,
                 keyfile: str | Path | None = None, origins: Sequence[str] | None = None,
                 max_message_bytes: int = 64 * 1024, max_clients: int = 1000, compression: bool = False,
                 ping_interval_s: float | None = 20.0, send_buffer_bytes: int | None = SEND_BUFFER_BYTES,
                 limits: Limits | None = None, keyring: auth.Keyring | None = None):
        self.host = host
        self._requested_port = int(port)
        self._keyring = keyring if keyring is not None else auth.Keyring.from_env(token_secret)
        if not self._keyring and not auth.is_loopback(host):
            raise LiveError(f"host {host!r}: serving beyond this computer needs a token secret "
                            f"(--token-secret or {auth.ENV_SECRET}); bind to 127.0.0.1 to serve without one")
        self._certfile, self._keyfile = certfile, keyfile
        self._ssl = server_ssl_context(certfile, keyfile)
        self._origins = auth.origin_policy(origins)
        if limits is None:
            limits = Limits(max_message_bytes=int(max_message_bytes), max_subscribers=int(max_clients),
                            ping_interval_s=ping_interval_s or 0.0)
        self.limits = limits
        self.max_message_bytes = limits.max_message_bytes
        self.max_clients = limits.max_subscribers
        self._compression = "deflate" if compression else None
        self._ping_interval = limits.ping_interval_s or None
        self._send_buffer = send_buffer_bytes
        self._guards: dict[ServerConnection, ClientGuard] = {}
        self._refusals = ThrottledLog(log)
        self._counters = {"refused": 0, "rate_limited": 0, "too_big": 0, "timeouts": 0, "full": 0}
        self._started_at: float | None = None
        self._stopping = False
        self._bg = BackgroundLoop(self.server_name)
        self._server: Server | None = None
        self.port: int | None = None
        self._subs: set[Subscriber] = set()
        self._claims: weakref.WeakKeyDictionary[ServerConnection, tuple[dict[str, Any], str | None]] = \
            weakref.WeakKeyDictionary()

    # -- lifecycle -------------------------------------------------------------------
    @property
    def auth_required(self) -> bool:
        return bool(self._keyring)

    @property
    def url(self) -> str:
        """``ws://host:port`` (``wss`` with a certificate); valid once started."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{'wss' if self._ssl else 'ws'}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None and self._bg.running

    def start(self) -> Hub:
        """Listen; returns once the socket is bound (``.port`` is then the real port)."""
        self._bg.start()
        try:
            self._bg.run(self._open())
        except OSError as exc:
            self._bg.stop()
            raise LiveError(f"cannot listen on {self.host}:{self._requested_port}: {exc.strerror or exc}") from None
        except BaseException:
            self._bg.stop()
            raise
        self._started_at = time.monotonic()
        self._stopping = False
        self._started()
        log.info("%s listening on %s", self.server_name, self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection (code 1001) and the listening socket; join the thread."""
        self._stopping = True
        if self._server is not None and self._bg.running:
            try:
                self._bg.run(self._close(timeout), timeout + 1.0)
            except LiveError:
                log.warning("%s: connections did not close within %s s", self.server_name, timeout)
        self._bg.stop()
        self._server = None

    def __enter__(self) -> Hub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _started(self) -> None:
        """Hook run in the caller's thread once listening."""

    async def _open(self) -> None:
        self._server = await serve(
            self._handler, self.host, self._requested_port, ssl=self._ssl,
            process_request=self._process_request, select_subprotocol=_select_subprotocol,
            compression=self._compression, max_size=self._max_size(), max_queue=16,
            ping_interval=self._ping_interval, ping_timeout=self._ping_interval, close_timeout=1.0,
            open_timeout=10.0, server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def _max_size(self) -> int:
        return self.max_message_bytes

    async def _close(self, timeout: float) -> None:
        assert self._server is not None
        self._server.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), timeout)
        except asyncio.TimeoutError:
            pass

    # -- health, secrets and certificates, from any thread ---------------------------------
    def health(self) -> dict[str, Any]:
        """The ``/healthz`` document (see :mod:`pitbox.live.health`)."""
        async def snap() -> dict[str, Any]:
            return self._health()
        return self._bg.run(snap()) if self.running else {"status": "stopped", "server": self.server_name}

    def _health(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "status": "stopping" if self._stopping else "ok", "server": self.server_name, "version": _version(),
            "uptime_s": round(time.monotonic() - (self._started_at or time.monotonic()), 1),
            "tls": self._ssl is not None, "auth": self.auth_required, "secrets": len(self._keyring),
            "clients": {"publishers": self._publishers(), "subscribers": len(self._subs),
                        "max_publishers": self.limits.max_publishers, "max_subscribers": self.limits.max_subscribers},
            "counters": dict(self._counters), "limits": self.limits.as_dict()}
        drivers = self._driver_counts()
        if drivers is not None:
            doc["drivers"] = drivers
        return doc

    def _driver_counts(self) -> dict[str, int] | None:
        return None

    def _publishers(self) -> int:
        """Publishers connected (past their hello)."""
        return 0

    def reload_secrets(self, *, force: bool = True) -> bool:
        """Re-read the token secrets file (``force``: even if unchanged); connections whose
        token was signed by a secret no longer accepted get ``error`` ``secret_revoked`` and
        close 1008. Returns True when the secrets changed; a bad file keeps the old secrets
        and raises :class:`LiveError`."""
        changed = self._keyring.reload() if force else self._keyring.reload_if_changed()
        if changed:
            log.info("%s: token secrets reloaded: %d accepted", self.server_name, len(self._keyring))
            if self.running:
                self._bg.run(self._revoke())
        return changed

    async def _revoke(self) -> None:
        accepted = set(self._keyring.fingerprints)
        for ws, guard in list(self._guards.items()):
            if guard.key is not None and guard.key not in accepted:
                log.info("%s %s: closed: its token's secret was removed", guard.role, guard.name)
                asyncio.ensure_future(_refuse(ws, "secret_revoked", "the secret that signed this token is no "
                                              "longer accepted; get a new token", CLOSE_POLICY))

    def reload_certificate(self) -> None:
        """Load the certificate and key files again (a renewed certificate); new
        connections use it, open ones keep theirs. Raises :class:`LiveError` when the
        files are bad (the old certificate stays)."""
        if self._ssl is None:
            return
        server_ssl_context(self._certfile, self._keyfile)  # checks the files first, raising LiveError
        ctx, cert, key = self._ssl, str(self._certfile), None if self._keyfile is None else str(self._keyfile)

        async def load() -> None:  # on the loop's thread, between handshakes
            ctx.load_cert_chain(cert, key)

        if self.running:
            self._bg.run(load())
        else:
            ctx.load_cert_chain(cert, key)
        log.info("%s: certificate reloaded from %s", self.server_name, self._certfile)

    def clients(self) -> list[dict[str, Any]]:
        """A snapshot of every subscriber: peer, channels, rate, sent, dropped, queued."""
        async def snap() -> list[dict[str, Any]]:
            return [s.stats() for s in self._subs]
        return self._bg.run(snap()) if self.running else []

    # -- before the upgrade ----------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/healthz":
            return _json_response(connection, self._health())
        role = self.paths.get(path)
        if role is None:
            return _reject(connection, 404, f"no stream at {path}; try {' or '.join(self.paths)}")
        try:
            origin = request.headers.get("Origin")
        except LookupError:
            return _reject(connection, 403, "more than one Origin header")
        if not self._origins.permits(origin):
            return _reject(connection, 403, f"origin {origin} is not allowed (server option --origin)")
        claims: dict[str, Any] = {"role": role}
        key = None
        if self._keyring:
            try:
                token = auth.token_from_request(request.path, _single(request.headers),
                                                _offered_subprotocols(request.headers))
                claims, key = self._keyring.verify(token, role)
            except auth.AuthError as exc:
                self._counters["refused"] += 1
                peer = _peer(connection)
                self._refusals(logging.WARNING, (peer.rsplit(":", 1)[0], exc.reason), "%s: refused %s (%s): %s",
                               self.server_name, peer, role, exc.reason)
                return _reject(connection, exc.status, exc.reason)
        self._claims[connection] = (claims, key)
        # the frame limit of this connection: nothing bigger is ever buffered
        connection.protocol.max_message_size = self.limits.max_bytes(role)
        self._limit_send_buffer(connection)
        return None

    def _limit_send_buffer(self, connection: ServerConnection) -> None:
        sock = connection.transport.get_extra_info("socket") if self._send_buffer else None
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
            except OSError:  # pragma: no cover - platform refuses; the OS default stays
                pass

    async def _handler(self, ws: ServerConnection) -> None:
        claims, key = self._claims.pop(ws, (None, None))
        if claims is None:  # pragma: no cover - process_request always stores them
            await ws.close(1011, "internal error")
            return
        guard = self._guards[ws] = ClientGuard(self.limits, claims["role"], _peer(ws), key)

        def timed_out(code: str, message: str) -> None:
            self._counters["timeouts"] += 1
            asyncio.ensure_future(_refuse(ws, code, message, CLOSE_POLICY))

        guard.start(timed_out)
        try:
            if claims["role"] == "publisher":
                await self._serve_publisher(ws, claims)
            else:
                await self._serve_subscriber(ws, claims)
        except ConnectionClosed:
            pass
        finally:
            guard.stop()
            self._guards.pop(ws, None)
            sent = ws.protocol.close_sent
            if sent is not None and sent.code == CLOSE_TOO_BIG:
                self._counters["too_big"] += 1
                log.warning("%s %s: closed: a message over %d bytes", guard.role, guard.name,
                            self.limits.max_bytes(guard.role))

    def _admit(self, ws: ServerConnection, tell: Any = None) -> bool:
        """Whether a message just received from ``ws`` is within its rate; the first one
        over it is answered with an ``error`` (through ``tell(bytes)``, else sent directly)."""
        guard = self._guards[ws]
        verdict = guard.admit()
        if verdict == ADMIT:
            return True
        if verdict == DROP_AND_TELL:
            self._counters["rate_limited"] += 1
            data = protocol.error(*guard.rate_error())
            if tell is not None:
                tell(data)
            else:
                asyncio.ensure_future(_send_quietly(ws, data))
        return False

    async def _full(self, ws: ServerConnection, role: str, limit: int) -> None:
        self._counters["full"] += 1
        guard = self._guards.get(ws)
        self._refusals(logging.WARNING, ("full", role), "%s: refused %s %s: %d %ss connected (the limit)",
                       self.server_name, role, guard.name if guard else _peer(ws), limit, role)
        await _refuse(ws, f"too_many_{role}s", f"{limit} {role}s connected, the most this relay takes; "
                      "try again later", CLOSE_TRY_AGAIN)

    async def _serve_publisher(self, ws: ServerConnection, claims: dict[str, Any]) -> None:
        await ws.close(1008, "this server takes no publishers")

    # -- subscribers -----------------------------------------------------------------
    def _hello(self, claims: dict[str, Any]) -> dict[str, Any]:
        return envelope("hello", server=self.server_name, role=claims["role"], rates=list(protocol.RATES),
                        max_message_bytes=self.max_message_bytes)

    def _may_command(self, claims: dict[str, Any]) -> bool:
        """Whether a client may send voice commands: any client where no token secret is in
        use (a loopback server), else only one whose token has the ``command`` scope or a
        ``command:<driver>`` one (a subscriber token alone only reads)."""
        return not self._keyring or self._command_drivers(claims) != frozenset()

    def _command_drivers(self, claims: dict[str, Any]) -> frozenset[str] | None:
        """The drivers a client may command (None: any; see :func:`auth.command_drivers`)."""
        return None if not self._keyring else auth.command_drivers(claims)

    def _feeds_for(self, drivers: tuple[str, ...] | None) -> list[Feed]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _known_channels(self, feeds: Iterable[Feed]) -> set[str] | None:
        known: set[str] = set()
        seen = False
        for feed in feeds:
            if feed.latest is not None:
                seen = True
                known.update(protocol.channel_names(feed.latest.values))
        return known if seen else None

    async def _serve_subscriber(self, ws: ServerConnection, claims: dict[str, Any]) -> None:
        if len(self._subs) >= self.limits.max_subscribers:
            await self._full(ws, "subscriber", self.limits.max_subscribers)
            return
        sub = Subscriber(_peer(ws))
        sub.line = _Line(ws)
        sub.may_command = self._may_command(claims)
        sub.command_drivers = self._command_drivers(claims)
        rate = self.limits.commands_per_s
        sub.command_bucket = TokenBucket(rate, COMMAND_BURST, time.monotonic()) if rate > 0 else None
        self._subs.add(sub)
        log.info("%s: subscriber %s connected (token subject %s)", self.server_name, sub.peer, claims.get("sub"))
        sub.push("hello", dumps(self._hello(claims)))
        sender = asyncio.create_task(self._sender(sub, ws))
        try:
            async for data in ws:
                if not self._admit(ws, lambda err: sub.push("error", err)):
                    continue
                msg: Any = None
                try:
                    msg = protocol.decode(data, self.max_message_bytes)
                    await self._on_client_message(sub, msg)
                except ProtocolError as exc:
                    sub.errors += 1
                    sub.push("error", protocol.error(exc.code, str(exc), protocol.request_id(msg)))
        finally:
            sender.cancel()
            sub.detach_all()
            self._subs.discard(sub)
            log.info("%s: subscriber %s disconnected: %d frames sent, %d skipped (slow), %d errors", self.server_name,
                     sub.peer, sub.sent, sub.dropped, sub.errors)

    async def _on_client_message(self, sub: Subscriber, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "subscribe":
            self._subscribe(sub, msg)
        elif kind == "history":
            since = _since_tick(msg)
            if not sub.subscribed:
                raise ProtocolError("not_subscribed", "send subscribe before asking for history")
            sub.push("history", since)
        elif kind == "set_reference":
            await self._set_reference(sub, msg)
        elif kind == "command":
            if not sub.may_command:
                raise ProtocolError("forbidden", "command: this token may not send voice commands (it needs the "
                                    "command scope: pitbox token create --role subscriber --scope command)")
            bucket = sub.command_bucket
            if bucket is not None and not bucket.take(time.monotonic()):
                self._counters["rate_limited"] += 1
                raise ProtocolError("rate_limited", f"command: more than {bucket.rate:g} voice commands per second "
                                    f"(bursts of {COMMAND_BURST}); this one was dropped")
            await self._command(sub, msg)
        else:
            raise ProtocolError("unknown_type", f"field type: expected subscribe, history, set_reference or "
                                f"command, got {kind!r}")

    async def _set_reference(self, sub: Subscriber, msg: dict[str, Any]) -> None:
        """A client asks the live coach to switch its reference lap (see subclasses)."""
        raise ProtocolError("no_coach", "this server runs no live coach")

    async def _command(self, sub: Subscriber, msg: dict[str, Any]) -> None:
        """An authorised client's voice command for a recorder's voice coach (see subclasses)."""
        protocol.check_command(msg)
        raise ProtocolError("no_voice", "this server runs no voice coach")

    def _subscribe(self, sub: Subscriber, msg: dict[str, Any]) -> None:
        channels = protocol.check_names(msg.get("channels"), "channels")
        rate = protocol.check_rate(msg.get("rate", 10))
        history = msg.get("history", False)
        if type(history) is not bool:
            raise ProtocolError("bad_history", f"field history: expected true or false, got {history!r}")
        since = _since_tick(msg)
        drivers_field = msg.get("drivers")
        drivers = None if drivers_field is None else protocol.check_names(drivers_field, "drivers")
        sub.detach_all()
        sub.channels, sub.rate, sub.period_s, sub.rate_bit = channels, rate, 1.0 / rate, RATE_BIT[rate]
        feeds = self._feeds_for(drivers)
        sub.wanted = drivers
        sub.subscribed = True
        for feed in feeds:
            sub.attach(feed)
        known = self._known_channels(feeds)
        unknown = [c for c in channels or () if known is not None and c not in known]
        sub.push("subscribed", dumps(envelope(
            "subscribed", channels=None if channels is None else list(channels), rate=rate,
            drivers=None if drivers is None else list(drivers), unknown=unknown)))
        for feed in feeds:
            self._push_state(sub, feed)
        if history:
            sub.push("history", since)

    def _push_state(self, sub: Subscriber, feed: Feed) -> None:
        for data in feed.state_messages():
            sub.push("state", data, feed)

    async def _sender(self, sub: Subscriber, ws: ServerConnection) -> None:
        """Sends what the subscriber has waiting; blocks only on this client's socket."""
        try:
            while True:
                sub.idle = True
                await sub.wake.wait()
                sub.idle = False
                sub.wake.clear()
                while (item := sub.next_item()) is not None:
                    if sub.overflow:
                        await ws.close(CLOSE_TOO_SLOW, "client too slow: message queue full")
                        return
                    kind, feed, data = item
                    if kind == "frame":
                        if not sub.take_frame(feed, data):
                            continue
                        await ws.send(data.encoded(sub.channels), text=True)
                        sub.sent += 1
                    elif kind == "history":
                        await self._send_history(sub, ws, data)
                    else:
                        await ws.send(data, text=True)
        except ConnectionClosed:
            pass

    async def _send_history(self, sub: Subscriber, ws: ServerConnection,
                            since_tick: int | dict[str, int] | None) -> None:
        loop = asyncio.get_running_loop()
        for feed in list(sub.feeds):
            sub.drop_queued_laps(feed)
            for row in list(feed.laps):
                await ws.send(feed.message("lap", row=row, history=True), text=True)
            floor = since_tick.get(feed.driver or "") if isinstance(since_tick, dict) else since_tick
            for _ in range(HISTORY_CATCH_UP_PASSES):
                frames = await self._history_frames(feed, sub.channels, sub.rate, floor)
                if not frames:
                    break
                for i in range(0, len(frames), HISTORY_CHUNK_FRAMES):
                    chunk = frames[i : i + HISTORY_CHUNK_FRAMES]
                    data = await loop.run_in_executor(None, _history_chunk, chunk, sub.channels, feed.driver)
                    await ws.send(data, text=True)
                floor = frames[-1].tick
                sub.history_sent(feed, frames[-1])
            await ws.send(feed.message("history", frames=[], done=True), text=True)

    async def _history_frames(self, feed: Feed, channels: tuple[str, ...] | None, rate: int,
                              since_tick: int | None) -> list[Frame]:
        if feed.provider is None:
            return feed.history_frames(channels, rate, since_tick)
        provider = feed.provider

        def fetch() -> list[Frame]:
            rows = provider(None if channels is None else list(channels), rate, since_tick)
            return decimate((Frame(int(tick), float(t), values, feed.driver) for tick, t, values in rows),
                            rate, since_tick)

        try:
            return await asyncio.get_running_loop().run_in_executor(None, fetch)
        except Exception:
            log.exception("%s: history_provider failed", self.server_name)
            return []


class _Line(DirectLine):
    """A client's socket, written without awaiting, as ``websockets.broadcast`` does, but only
    when everything written before has gone to the kernel (nothing buffered in the
    transport): a client that stops reading gets its frames through its sender task
    instead, which keeps only the latest one (never a growing buffer)."""

    __slots__ = ("ws", "plain")

    def __init__(self, ws: ServerConnection):
        self.ws = ws
        #: no extension (compression) negotiated: every frame's bytes are the same for every
        #: such client, so the frame is serialized once (:meth:`Frame.wire`) and written as is
        self.plain = not ws.protocol.extensions

    def ready(self) -> bool:
        ws = self.ws
        return (ws.protocol.state is State.OPEN and ws.send_in_progress is None
                and ws.transport is not None and not ws.transport.is_closing()
                and ws.transport.get_write_buffer_size() == 0)

    def write(self, data: bytes) -> None:
        try:
            self.ws.protocol.send_text(data)
            self.ws.send_data()
        except Exception as exc:  # noqa: BLE001 - a connection going away; its handler sees the close
            log.debug("direct write to %s failed: %s", _peer(self.ws), exc)

    def write_frame(self, frame: Frame, channels: tuple[str, ...] | None) -> None:
        """Called only when :meth:`ready` (open, no fragmented message being sent, nothing
        buffered), which is when the protocol would write the same bytes itself."""
        if not self.plain:
            self.write(frame.encoded(channels))
            return
        try:
            self.ws.transport.write(frame.wire(channels))
        except Exception as exc:  # noqa: BLE001 - a connection going away; its handler sees the close
            log.debug("direct write to %s failed: %s", _peer(self.ws), exc)


def _since_tick(msg: dict[str, Any]) -> int | dict[str, int] | None:
    since = msg.get("since_tick")
    if since is None or type(since) is int or (isinstance(since, dict) and all(type(v) is int for v in since.values())):
        return since
    raise ProtocolError("bad_history", "field since_tick: expected an integer, an object of driver -> integer, "
                        f"or null; got {since!r}")


def _history_chunk(frames: list[Frame], channels: tuple[str, ...] | None, driver: str | None) -> bytes:
    msg = envelope("history", frames=[f.history_item(channels) for f in frames], done=False)
    if driver is not None:
        msg["driver"] = driver
    return dumps(msg)


def _json_response(connection: ServerConnection, doc: dict[str, Any]) -> Response:
    ok = doc.get("status") == "ok"
    response = connection.respond(http.HTTPStatus.OK if ok else http.HTTPStatus.SERVICE_UNAVAILABLE,
                                  dumps(doc).decode() + "\n")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    response.headers["Cache-Control"] = "no-store"
    return response


async def _send_quietly(ws: ServerConnection, data: bytes) -> None:
    try:
        await ws.send(data, text=True)
    except ConnectionClosed:
        pass


async def _refuse(ws: ServerConnection, code: str, message: str, close_code: int) -> None:
    """An ``error`` message, then the close (reason: the message, cut to fit a close frame)."""
    await _send_quietly(ws, protocol.error(code, message))
    reason = message.encode()[:120].decode(errors="ignore")
    await ws.close(close_code, reason)


_VERSION: list[str] = []


def _version() -> str:
    if not _VERSION:
        from importlib.metadata import PackageNotFoundError, version

        try:
            _VERSION.append(version("pitbox"))
        except PackageNotFoundError:  # pragma: no cover - run from a source tree without install
            _VERSION.append("unknown")
    return _VERSION[0]


def _single(headers: Headers) -> dict[str, str]:
    """Headers as a plain dict; a header sent twice (e.g. two Authorization) is dropped."""
    out: dict[str, str] = {}
    for name in ("Authorization",):
        values = headers.get_all(name)
        if len(values) == 1:
            out[name] = values[0]
    return out


def _peer(ws: ServerConnection) -> str:
    try:
        addr = ws.remote_address
    except Exception:  # pragma: no cover - transport already gone
        return "?"
    return f"{addr[0]}:{addr[1]}" if addr else "?"
