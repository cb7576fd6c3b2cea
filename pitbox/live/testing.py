"""Test and benchmark support: a WebSocket client that stops reading.

A stalled client subscribes, then never reads again; with a small receive buffer the
server's socket to it fills within a few frames, which is what a frozen browser tab or a
client on a saturated link looks like to the server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

from pitbox.live.limits import Limits
from pitbox.live.protocol import VERSION, LiveError

#: Limits for a relay fed by a sim replayed faster than real time: the publisher rate limit off
#: (a recorder at 60 Hz stays far below the default 240 messages/s; the limit itself is tested
#: in tests/test_relay_limits.py), else the relay drops what a fast replay sends over it, tips
#: included.
FAST_REPLAY = Limits(publisher_messages_per_s=0)


async def stalled_client(url: str, *, channels: list[str] | None = None, rate: int = 60, token: str | None = None,
                         rcvbuf_bytes: int = 4096) -> ClientConnection:
    """Connect, subscribe, read the ``hello``, and from then on never read.

    The caller closes it (``await ws.close()`` may wait for the close timeout; use
    ``ws.transport.abort()`` to drop it at once)."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET6 if ":" in (parts.hostname or "") else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    headers = {"Authorization": f"Bearer {token}"} if token else None
    ws = await connect(url, sock=sock, additional_headers=headers, max_queue=1, proxy=None, compression=None,
                       close_timeout=0.5)
    await ws.recv()  # hello
    msg: dict[str, Any] = {"v": VERSION, "type": "subscribe", "channels": channels, "rate": rate}
    await ws.send(json.dumps(msg))
    return ws


class MessageLog:
    """A client that reads every message into ``messages`` with its arrival time
    (``time.perf_counter_ns``), so a test can await a condition instead of sleeping."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.arrival_ns: list[int] = []
        self._changed = asyncio.Event()
        self.closed: BaseException | None = None
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        import time

        try:
            async for data in self.ws:
                now = time.perf_counter_ns()
                self.messages.append(json.loads(data))
                self.arrival_ns.append(now)
                self._changed.set()
        except Exception as exc:  # the connection's end is what some tests wait for
            self.closed = exc
        else:
            self.closed = ConnectionError("closed")
        self._changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    def frames(self, driver: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == "frame" and (driver is None or m.get("driver") == driver)]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Until ``predicate(self)`` is true; TimeoutError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s; last messages: {self.messages[-3:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                continue

    async def send(self, msg: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(msg if isinstance(msg, (str, bytes)) else json.dumps(msg))

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._task, return_exceptions=True)


async def open_log(url: str, *, token: str | None = None, subscribe: dict[str, Any] | None = None,
                   **kwargs: Any) -> MessageLog:
    """Connect (see :func:`pitbox.live.client.open_connection`), start logging, and send
    ``subscribe`` (``channels``, ``rate``, ``drivers``) when given."""
    from pitbox.live.client import open_connection

    log = MessageLog(await open_connection(url, token=token, **kwargs))
    _OPEN.append(log)
    if subscribe is not None:
        await log.send({"v": VERSION, "type": "subscribe", **subscribe})
    return log


_OPEN: list[MessageLog] = []


async def close_all() -> None:
    """Close every client :func:`open_log` opened (end of a test's event loop)."""
    logs, _OPEN[:] = list(_OPEN), []
    await asyncio.gather(*(log.close() for log in logs), return_exceptions=True)


def run(coro: Any, timeout: float = 45.0) -> Any:
    """Run a test coroutine in a fresh event loop with a time limit, closing every client
    :func:`open_log` opened on the way out."""

    async def main() -> Any:
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            await close_all()

    return asyncio.run(main())


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll a condition that no event signals (a server's view of its clients), with a
    deadline that is only a safety net. Read shared state once per call: a client may leave
    between two reads (``any(... for c in server.clients())``, not ``clients()[0]``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def self_signed_certificate(folder: str | Path, names: Sequence[str] = ("localhost", "127.0.0.1"), *,
                            days: int = 2, stem: str = "relay") -> tuple[Path, Path]:
    """A self-made certificate and its key (``<stem>.crt``, ``<stem>.key``, PEM, EC P-256)
    for ``names`` (host names and IP addresses), made with the ``openssl`` command (the
    ``cryptography`` package is not a dependency). Raises :class:`LiveError` without it."""
    import ipaddress
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        raise LiveError("openssl not found: it makes the test certificate (apt-get install openssl)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"

    def san(name: str) -> str:
        try:
            ipaddress.ip_address(name)
            return f"IP:{name}"
        except ValueError:
            return f"DNS:{name}"

    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", f"/CN={names[0]}",
                    "-addext", "subjectAltName=" + ",".join(san(n) for n in names)], check=True, capture_output=True)
    return cert, key
