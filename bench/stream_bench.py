"""Live stream benchmark: sample-to-client latency at 60 Hz on loopback, PitBox's
:class:`~pitbox.live.StreamServer` against a naive broadcast, in the same run.

The publisher plays real rows of a Langley ``.ibt`` (143 channels) at 60 Hz real time,
calling ``publish_frame`` as the recorder's tick loop does. Clients run in separate
worker processes (so they do not share the server's GIL) and subscribe to 10 channels at
60 Hz; the stalled client subscribes to every channel and never reads. Latency is the
time from the ``publish_frame`` call to the client having parsed the frame
(``time.perf_counter_ns`` is one system-wide monotonic clock on Linux and Windows).

Peers, on the same websockets library, same envelope, same per-socket send buffer:

* ``broadcast`` (the peer for 100 clients and for the stalled-client cases): one task on the
  server's loop encodes each frame once per distinct subscription and hands it to
  ``websockets.broadcast()``, which writes to every connection without ever awaiting one;
* ``naive`` (1 and 20 clients): one task that encodes for each client and awaits each
  client's ``send`` in turn, the way a broadcast loop is usually first written.

Also the **client spread**: per frame, the time from the first to the last of one client
process's connections to have parsed it (the median over frames, the larger of the processes).
That is the clients' own serial work (each of 2 processes reads and parses its 50
connections in turn, on the same 2 cores as the server): the last connection of a process
waits for it whatever the server does, so a p99 below it cannot be reached in this harness.

Two kinds of clients (``--client-kinds``, both by default): **websockets** (the library's
asyncio client, one task per connection, each frame parsed with ``json.loads``) and **lean**
(bare sockets in one ``selectors`` loop per process; every byte is read and cut into frames,
but only the tick is taken, with a regular expression). On this 2-core machine the clients
run on the server's cores; the lean ones take most of the clients' own Python work out of the
measurement (a coach's laptop does that work on its own CPU), and leave the server's fan-out
and the loopback network stack.

Also the server process's CPU time per frame published (every thread of this process: the
publisher, the hand-off, the server's loop; the clients run elsewhere), which moves far less
than latency on a loaded machine.

Goals (brief): p99 under 10 ms with 20 clients, under 4 ms with 100 clients; a stalled
client changes nobody else's latency.
Run: ``.venv/bin/python bench/stream_bench.py [--seconds 3] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from pitbox.live import LiveError, StreamServer
from pitbox.live._loop import BackgroundLoop
from pitbox.live.hub import SEND_BUFFER_BYTES
from pitbox.live.protocol import envelope, jsonable
from pitbox.live.replay import ibt_frames
from pitbox.live.testing import stalled_client

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "real" / "skmodified_langley_iRacingTelemetry_2015-05-28_14-50-46.ibt"
CHANNELS = ["Speed", "RPM", "Gear", "Throttle", "Brake", "SteeringWheelAngle", "Lap", "LapDistPct",
            "LapCurrentLapTime", "LapDeltaToBestLap"]
WARMUP_S = 0.5
GRACE_S = 0.5


class NaiveBroadcast:
    """Peer: one broadcast task awaiting each client's send in turn (``fanout="await"``), or
    handing each frame to ``websockets.broadcast()`` once per distinct channel choice, which
    never awaits a client (``fanout="broadcast"``)."""

    def __init__(self, fanout: str = "await") -> None:
        self.fanout = fanout
        self._bg = BackgroundLoop("naive-broadcast")
        self.clients: dict[ServerConnection, list[str] | None] = {}
        self.port = 0
        self._queue: asyncio.Queue[Any] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> NaiveBroadcast:
        self._bg.start()
        self._bg.run(self._open())
        return self

    async def _open(self) -> None:
        self._queue = asyncio.Queue()
        self._server = await serve(self._handler, "127.0.0.1", 0, compression=None, process_request=self._sndbuf)
        self.port = self._server.sockets[0].getsockname()[1]
        asyncio.ensure_future(self._broadcast())

    def _sndbuf(self, connection: ServerConnection, request: Any) -> None:
        connection.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)

    async def _handler(self, ws: ServerConnection) -> None:
        await ws.send(json.dumps(envelope("hello", server="naive")))
        try:
            async for data in ws:
                msg = json.loads(data)
                if msg.get("type") == "subscribe":
                    self.clients[ws] = msg.get("channels")
        except ConnectionClosed:
            pass
        finally:
            self.clients.pop(ws, None)

    def publish_frame(self, tick: int, session_time: float, values: dict[str, Any]) -> None:
        assert self._bg.loop is not None and self._queue is not None
        self._bg.loop.call_soon_threadsafe(self._queue.put_nowait, (tick, session_time, values))

    async def _broadcast(self) -> None:
        assert self._queue is not None
        while True:
            tick, t, values = await self._queue.get()
            if self.fanout == "broadcast":
                groups: dict[tuple[str, ...] | None, list[ServerConnection]] = {}
                for ws, channels in self.clients.items():
                    groups.setdefault(None if channels is None else tuple(channels), []).append(ws)
                for channels, conns in groups.items():
                    names = values if channels is None else channels
                    msg = envelope("frame", tick=tick, t=t, values={k: jsonable(values[k]) for k in names if k in values})
                    broadcast(conns, json.dumps(msg))
                continue
            for ws, channels in list(self.clients.items()):
                names = values if channels is None else channels
                msg = envelope("frame", tick=tick, t=t, values={k: jsonable(values[k]) for k in names if k in values})
                try:
                    await ws.send(json.dumps(msg))
                except ConnectionClosed:
                    self.clients.pop(ws, None)

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
        try:
            self._bg.run(close(), 30)
        except LiveError:  # a loop flooded by the peer's unbounded buffers: stop it anyway
            pass
        finally:
            self._bg.stop(5)


class BareFloor:
    """The floor, not a peer: the least a Python server can do per frame. The publisher's own
    thread encodes each frame once (the clients' 10 channels) and writes it with one
    ``socket.send`` per connection, in turn, on blocking-free sockets: no event loop, no
    hand-off, no per-client WebSocket machinery, no subscriptions read (every client gets the 10
    channels). A client whose buffer is full misses the frame. What stays is the loopback TCP
    stack and the 2 cores shared with the clients."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        #: appended by the accept thread, read by the publisher's: a list append is atomic and
        #: iterating meanwhile sees the new socket or not, so no lock is needed
        self._socks: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, name="floor-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> BareFloor:
        self._accepting.start()
        return self

    def _accept(self) -> None:
        from websockets.frames import Frame as WsFrame
        from websockets.frames import Opcode
        from websockets.utils import accept_key

        hello = WsFrame(Opcode.TEXT, json.dumps(envelope("hello", server="floor")).encode()).serialize(mask=False)
        while True:
            try:
                s, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", buf).group(1).decode()  # type: ignore[union-attr]
            s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n" + hello)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            s.setblocking(False)
            self._socks.append(s)

    def publish_frame(self, tick: int, session_time: float, values: dict[str, Any]) -> None:
        from websockets.frames import Frame as WsFrame
        from websockets.frames import Opcode

        msg = envelope("frame", tick=tick, t=session_time, values={k: jsonable(values[k]) for k in CHANNELS if k in values})
        data = WsFrame(Opcode.TEXT, json.dumps(msg).encode()).serialize(mask=False)
        for s in self._socks:
            try:
                s.send(data)
            except OSError:  # full (a stalled client) or gone: this frame is lost for it
                pass

    def stop(self) -> None:
        self._listener.close()
        for s in self._socks:
            s.close()


# -- client worker processes ---------------------------------------------------------------
def worker_main(conn: Any) -> None:
    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            return
        kind, url, n_clients, stalled = cmd
        if kind == "lean":
            conn.send(_run_lean_clients(conn, url, n_clients, stalled))
        else:
            conn.send(asyncio.run(_run_clients(conn, url, n_clients, stalled)))


_TICK = re.compile(rb'"type":\s*"frame",\s*"tick":\s*(\d+)')


def _run_lean_clients(conn: Any, url: str, n_clients: int, stalled: bool) -> list[list[tuple[int, int]]]:
    """The same clients written on bare sockets, one ``selectors`` loop per process: each reads
    its bytes, cuts them into WebSocket frames and takes the frame's tick with a regular
    expression (no JSON decoding, no per-connection task). They still read every byte of every
    frame; what they leave out is the clients' own Python work, which in this harness runs on
    the server's 2 cores (a coach's laptop does it on its own)."""
    import base64
    import os
    import selectors
    import struct

    from websockets.frames import Frame as WsFrame
    from websockets.frames import Opcode

    host, port = url.removeprefix("ws://").rsplit(":", 1)
    sub = WsFrame(Opcode.TEXT, json.dumps(envelope("subscribe", channels=CHANNELS, rate=60)).encode()).serialize(
        mask=True)
    sel = selectors.DefaultSelector()
    logs: list[list[tuple[int, int]]] = [[] for _ in range(n_clients)]
    def open_ws(rcvbuf: int | None = None, subscribe: bytes = sub) -> tuple[socket.socket, bytes]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # the stalled client: a small window, never read
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, rest = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        s.sendall(subscribe)
        return s, rest

    socks = []
    for i in range(n_clients):
        s, rest = open_ws()
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, (logs[i], bytearray(rest)))
        socks.append(s)
    every = WsFrame(Opcode.TEXT, json.dumps(envelope("subscribe", channels=None, rate=60)).encode()).serialize(mask=True)
    stalled_sock = open_ws(4096, every)[0] if stalled else None
    time.sleep(0.2)  # let the subscribe messages land before the publisher starts
    conn.send("ready")
    clock = time.perf_counter_ns
    while not conn.poll():
        for key, _ in sel.select(0.05):
            log, buf = key.data
            try:
                data = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            now = clock()
            buf += data
            while len(buf) >= 2:
                n, at = buf[1] & 0x7F, 2
                if n == 126:
                    if len(buf) < 4:
                        break
                    (n,), at = struct.unpack_from("!H", buf, 2), 4
                elif n == 127:
                    if len(buf) < 10:
                        break
                    (n,), at = struct.unpack_from("!Q", buf, 2), 10
                if len(buf) < at + n:
                    break
                m = _TICK.search(buf, at, min(at + n, at + 64)) if buf[0] & 0x0F == 1 else None
                if m is not None:
                    log.append((int(m.group(1)), now))
                del buf[:at + n]
    conn.recv()  # "stop"
    for s in socks:
        sel.unregister(s)
        s.close()
    if stalled_sock is not None:
        stalled_sock.close()
    return logs


async def _run_clients(conn: Any, url: str, n_clients: int, stalled: bool) -> list[list[tuple[int, int]]]:
    logs: list[list[tuple[int, int]]] = [[] for _ in range(n_clients)]
    sockets = []
    for _ in range(n_clients):
        ws = await connect(url, proxy=None, compression=None, max_size=None)
        await ws.recv()
        await ws.send(json.dumps(envelope("subscribe", channels=CHANNELS, rate=60)))
        sockets.append(ws)
    stalled_ws = await stalled_client(url, channels=None, rate=60) if stalled else None

    async def read(i: int, ws: Any) -> None:
        log = logs[i]
        try:
            async for data in ws:
                msg = json.loads(data)
                if msg["type"] == "frame":
                    log.append((msg["tick"], time.perf_counter_ns()))
        except ConnectionClosed:
            pass

    tasks = [asyncio.ensure_future(read(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(0.2)  # let the subscribe messages land before the publisher starts
    conn.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
    for t in tasks:
        t.cancel()
    for ws in sockets:
        ws.transport.abort()
    if stalled_ws is not None:
        stalled_ws.transport.abort()
    return logs


# -- one scenario ---------------------------------------------------------------------------
def run_scenario(impl: str, n_clients: int, stalled: bool, frames: list, pipes: list, seconds: float,
                 kind: str = "websockets") -> dict[str, Any]:
    server: Any
    if impl == "pitbox":
        server = StreamServer(port=0).start()
    elif impl == "floor":
        server = BareFloor().start()
    else:
        server = NaiveBroadcast("broadcast" if impl == "broadcast" else "await").start()
    try:
        shares = [n_clients // len(pipes) + (i < n_clients % len(pipes)) for i in range(len(pipes))]
        active = [(p, n) for p, n in zip(pipes, shares, strict=True) if n > 0]
        for i, (p, n) in enumerate(active):
            p.send(("lean" if kind == "lean" else "run", server.url, n, stalled and i == 0))
        for p, _ in active:
            assert p.recv() == "ready"
        p0 = time.process_time()
        published, cost, cpu = _publish(server, frames, seconds)
        time.sleep(GRACE_S)
        server_cpu_us = (time.process_time() - p0) / max(len(published), 1) * 1e6
        for p, _ in active:
            p.send("stop")
        per_worker = [p.recv() for p, _ in active]
        logs = [log for w in per_worker for log in w]
    finally:
        server.stop()
    return {**_summarise(impl, n_clients, stalled, published, cost, cpu, logs), "server_cpu_us": server_cpu_us,
            "spread_ms": _spread_ms(per_worker, published), "client": kind}


def _spread_ms(per_worker: list, published: dict[int, int]) -> float:
    """Median over ticks of the time between the first and the last of one client process's
    connections to parse the same frame (the larger of the processes): the clients' own serial
    work, which no server can take out of the latency of the last of them."""
    spreads = []
    for logs in per_worker:
        got: dict[int, list[int]] = {}
        for log in logs:
            for t, ns in log:
                if t >= WARMUP_S * 60 and t in published:
                    got.setdefault(t, []).append(ns)
        spreads.append({t: (max(v) - min(v)) / 1e6 for t, v in got.items() if len(v) == len(logs)})
    ticks = set.intersection(*(set(s) for s in spreads)) if spreads else set()
    return float(np.median([max(s[t] for s in spreads) for t in ticks])) if ticks else float("nan")


def _publish(server: Any, frames: list, seconds: float) -> tuple[dict[int, int], np.ndarray, np.ndarray]:
    published: dict[int, int] = {}
    cost, cpu = [], []
    n = int(seconds * 60)
    due = time.perf_counter()
    for tick in range(n):
        _, _, values = frames[tick % len(frames)]
        due += 1 / 60
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        server.publish_frame(tick, tick / 60, values)
        cost.append(time.perf_counter_ns() - t0)
        cpu.append(time.thread_time_ns() - c0)
        published[tick] = t0
    return published, np.array(cost), np.array(cpu)


def _summarise(impl: str, n_clients: int, stalled: bool, published: dict[int, int], cost: np.ndarray,
               cpu: np.ndarray, logs: list) -> dict[str, Any]:
    counted = {t for t in published if t >= WARMUP_S * 60}
    latencies, delivered = [], []
    for log in logs:
        got = [(t, ns) for t, ns in log if t in counted]
        delivered.append(len(got) / len(counted))
        latencies.extend(ns - published[t] for t, ns in got)
    lat = np.array(latencies, dtype=float) / 1e6
    pct = (lambda q: float(np.percentile(lat, q))) if len(lat) else (lambda q: float("nan"))
    return {"impl": impl, "clients": n_clients, "stalled": stalled, "p50_ms": pct(50), "p99_ms": pct(99),
            "max_ms": float(lat.max()) if len(lat) else float("nan"), "delivered": float(np.mean(delivered)),
            "publish_p50_us": float(np.median(cost)) / 1e3, "publish_p99_us": float(np.percentile(cost, 99)) / 1e3,
            "publish_cpu_p50_us": float(np.median(cpu)) / 1e3}


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'server':9} {'client':10} {'clients':>7} {'stalled':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'delivered':>9} {'publish p50 us':>14} {'publish p99 us':>14} {'publish cpu p50 us':>18} "
          f"{'server cpu us/frame':>19} {'client spread p50 ms':>20}")
    for r in rows:
        print(f"{r['impl']:9} {r['client']:10} {r['clients']:>7} {'+1' if r['stalled'] else '-':>7} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{r['max_ms']:8.2f} {r['delivered']:9.1%} {r['publish_p50_us']:14.1f} {r['publish_p99_us']:14.1f} "
              f"{r['publish_cpu_p50_us']:18.1f} {r['server_cpu_us']:19.1f} {r['spread_ms']:20.2f}")
    print("\nratio peer / pitbox (above 1: pitbox is faster; the floor is no peer: the least any Python server does)")
    print(f"{'peer':9} {'client':10} {'clients':>7} {'stalled':>7} {'p50':>8} {'p99':>8} {'delivered':>9} "
          f"{'server cpu':>10}")
    by = {(r["impl"], r["clients"], r["stalled"], r["client"]): r for r in rows}
    for (impl, n, stalled, kind), r in by.items():
        for name in ("naive", "broadcast", "floor"):
            peer = by.get((name, n, stalled, kind))
            if impl != "pitbox" or peer is None:
                continue
            print(f"{name:9} {kind:10} {n:>7} {'+1' if stalled else '-':>7} {peer['p50_ms'] / r['p50_ms']:8.2f} "
                  f"{peer['p99_ms'] / r['p99_ms']:8.2f} {peer['delivered'] / r['delivered']:9.2f} "
                  f"{peer['server_cpu_us'] / r['server_cpu_us']:10.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="publishing time per scenario (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 20, 100])
    parser.add_argument("--stalled-with", type=int, nargs="*", default=[20, 100],
                        help="client counts also run with one stalled client (default 20 100)")
    parser.add_argument("--client-kinds", nargs="+", choices=("websockets", "lean"), default=["websockets", "lean"],
                        help="clients on the websockets library (each parses its JSON), and/or lean ones on bare "
                             "sockets (take the tick only); default both")
    parser.add_argument("--floor", action="store_true",
                        help="also run the floor (bare sockets written from the publisher's thread) without a stalled client")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    if not SOURCE.exists():
        print(f"stream_bench: source file not found: {SOURCE}", file=sys.stderr)
        return 2
    # asyncio logs each write to a client that has just gone (the peers' writes at the end of a scenario)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    frames = ibt_frames(SOURCE, start=1000, stop=2200)
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for _ in range(args.workers):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker_main, args=(child,), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    scenarios = [(n, False) for n in args.clients] + [(n, True) for n in args.stalled_with]
    rows = []
    try:
        for kind in args.client_kinds:
            for n, stalled in scenarios:
                peer = "broadcast" if stalled or n >= 100 else "naive"
                for impl in ("pitbox", peer) + (("floor",) if args.floor and not stalled else ()):
                    row = run_scenario(impl, n, stalled, frames, pipes, args.seconds, kind)
                    rows.append(row)
                    print(f"{impl:7} {kind:10} {n:4} clients{' + 1 stalled' if stalled else '':12}: p50 {row['p50_ms']:.2f} ms, "
                          f"p99 {row['p99_ms']:.2f} ms, delivered {row['delivered']:.1%}", flush=True)
    finally:
        for p in pipes:
            p.send(("quit",))
        for proc in procs:
            proc.join(5)
    print_table(rows)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "publisher"
    sys.exit(main())
