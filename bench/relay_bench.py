"""Team relay in its container: how many publishers x subscribers it sustains at 10 and
60 Hz before the p99 delivery latency passes 50 ms, its memory per client, and how fast
``podman stop`` stops it. PitBox's relay against a plain ``websockets.broadcast()`` relay
in the same image, container and run.

Setup: the relay image built by ``deploy/localimage.py`` (Debian bookworm base) runs with
podman (runc, cgroupfs) on this machine, port published on 127.0.0.1, plain ws (TLS would
add the same cost to both; a wss row is measured separately). On the host, one worker
process runs every publisher (raw WebSocket connections sending real Langley rows, 10
channels, at the rate) and two worker processes run the subscribers (each subscribes to
every driver, the team view, at the same rate). Latency: from just before the publisher's
``send`` to the subscriber having parsed the frame (``time.monotonic_ns``, one clock for
all processes). Delivered: frames received / (frames sent x subscribers) in the window.
A configuration passes when p99 <= 50 ms and >= 99 % is delivered.

Peer, ``broadcast``: the smallest relay a skilled user would write with the same library:
``websockets.broadcast(subscribers, message)`` of each publisher message as received (no
parsing, no tokens, no per-client rate or channel choice, no history): a floor for the
relay's own work.

Run: ``.venv/bin/python bench/relay_bench.py [--seconds 4] [--rates 10 60]
[--publishers 1 10 50] [--subscribers 10 30 100 300 1000]``. Needs root and podman, as
``make test-deploy`` does. Other engineers share the 2 cores: the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy"))
import localimage  # noqa: E402

SOURCE = ROOT.parent / "shared" / "data" / "real" / "skmodified_langley_iRacingTelemetry_2015-05-28_14-50-46.ibt"
CHANNELS = ["Speed", "RPM", "Gear", "Throttle", "Brake", "SteeringWheelAngle", "Lap", "LapDistPct",
            "LapCurrentLapTime", "LapDeltaToBestLap"]
P99_LIMIT_MS = 50.0
MIN_DELIVERED = 0.99
WARMUP_S = 1.0
GRACE_S = 1.0
SUB_WORKERS = 2

PEER = r'''
import asyncio
from websockets.asyncio.server import broadcast, serve

subscribers = set()

async def handler(ws):
    if ws.request.path.startswith("/publish"):
        async for message in ws:
            broadcast(subscribers, message)
    else:
        subscribers.add(ws)
        try:
            await ws.wait_closed()
        finally:
            subscribers.discard(ws)

async def main():
    async with serve(handler, "0.0.0.0", 8765, compression=None, max_size=1 << 22) as server:
        await server.serve_forever()

asyncio.run(main())
'''


# -- worker processes ------------------------------------------------------------------

def _rows(n: int = 600) -> list[dict[str, Any]]:
    from pitbox.ibt import open_telemetry

    with open_telemetry(SOURCE) as f:
        data = f.read(CHANNELS, 1000, 1000 + n)
    return [{c: float(np.asarray(data[c][i]).ravel()[0]) for c in CHANNELS} for i in range(n)]


def publisher_worker(url: str, tokens: list[str], rate: int, ready: Any, go: Any, window: Any, out: Any) -> None:
    asyncio.run(_publish(url, tokens, rate, ready, go, window, out))


async def _publish(url, tokens, rate, ready, go, window, out) -> None:
    from websockets.asyncio.client import connect

    rows = _rows()
    conns = []
    for k, token in enumerate(tokens):
        ws = await connect(url + "/publish", additional_headers={"Authorization": f"Bearer {token}"}, proxy=None,
                           compression=None, max_size=1 << 22, open_timeout=60)
        await ws.send(json.dumps({"v": 1, "type": "hello", "driver": {"id": f"d{k:03d}"}}))
        conns.append(ws)
    ready.put(len(conns))
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    start_ns, stop_ns = window[0], window[1]
    period_ns = int(1e9 / rate)
    sent_in_window = 0
    tick = 0
    due = time.monotonic_ns()
    while True:
        now = time.monotonic_ns()
        if now > stop_ns:
            break
        row = rows[tick % len(rows)]
        for ws in conns:
            stamp = time.monotonic_ns()
            values = dict(row, bench_ns=stamp)
            await ws.send(json.dumps({"v": 1, "type": "frame", "tick": tick, "t": tick / rate, "values": values}))
            sent_in_window += start_ns <= stamp <= stop_ns
        tick += 1
        due += period_ns
        await asyncio.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
    out.put(("pub", sent_in_window))
    for ws in conns:
        await ws.close()


def subscriber_worker(url: str, token: str, count: int, rate: int, ready: Any, go: Any, window: Any, out: Any) -> None:
    asyncio.run(_subscribe(url, token, count, rate, ready, go, window, out))


async def _subscribe(url, token, count, rate, ready, go, window, out) -> None:
    from websockets.asyncio.client import connect

    latencies: list[int] = []
    received = [0]
    conns = []

    async def reader(ws) -> None:
        try:
            async for data in ws:
                now = time.monotonic_ns()
                msg = json.loads(data)
                if msg.get("type") != "frame":
                    continue
                stamp = msg["values"].get("bench_ns")
                if stamp is not None and window[0] <= stamp <= window[1]:
                    latencies.append(now - stamp)
                    received[0] += 1
        except Exception:
            pass

    for _ in range(count):
        ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None, compression=None,
                           max_size=1 << 22, open_timeout=60, max_queue=None)
        await ws.send(json.dumps({"v": 1, "type": "subscribe", "channels": [*CHANNELS, "bench_ns"], "rate": rate}))
        conns.append(ws)
    tasks = [asyncio.ensure_future(reader(ws)) for ws in conns]
    ready.put(len(conns))
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    end = window[1] / 1e9 + GRACE_S
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    for t in tasks:
        t.cancel()
    out.put(("sub", received[0], np.array(latencies, dtype=np.int64)))
    for ws in conns:
        ws.transport.abort()


# -- the relay in its container ----------------------------------------------------------

class Container:
    def __init__(self, env: dict[str, str], image: str, kind: str, secret: str, peer_file: Path):
        self.env, self.kind = env, kind
        self.name = f"pitbox-bench-{kind}-{os.getpid()}"
        localimage.remove_container(self.name, env)
        args = ["run", "-d", "--name", self.name, "-p", "127.0.0.1::8765", "--health-interval", "disable"]
        if kind == "pitbox":
            args += ["-e", f"PITBOX_TOKEN_SECRET={secret}", "-e", "PITBOX_MAX_SUBSCRIBERS=5000",
                     "-e", "PITBOX_MAX_PUBLISHERS=500", "-e", "PITBOX_STATUS_EVERY_S=0", "-e", "PITBOX_LOG_LEVEL=WARNING",
                     image]
        else:
            args += ["-v", f"{peer_file}:/peer.py:ro", "--entrypoint", "/opt/pitbox/bin/python", image, "/peer.py"]
        localimage.podman(args, env)
        port = localimage.podman(["port", self.name, "8765"], env).stdout.strip().rsplit(":", 1)[1]
        self.url = f"ws://127.0.0.1:{port}"
        self._wait_listening()
        top = localimage.podman(["top", self.name, "hpid", "args"], env).stdout.splitlines()[1:]
        self.pid = int(next(line.split()[0] for line in top if "python" in line and "tini" not in line))

    def _wait_listening(self, timeout: float = 120) -> None:
        import socket

        host, port = "127.0.0.1", int(self.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, port), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    if s.recv(16).startswith(b"HTTP/1.1"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start: {localimage.podman(['logs', self.name], self.env).stderr}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def remove(self) -> None:
        localimage.remove_container(self.name, self.env)


def scenario(relay: Container, secret: str, publishers: int, subscribers: int, rate: int, seconds: float) -> dict:
    from pitbox.live import create_token

    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    window = ctx.Array("q", 2)
    pub_tokens = [create_token(secret, "publisher", subject=f"d{k:03d}") for k in range(publishers)]
    sub_token = create_token(secret, "subscriber")
    procs = [ctx.Process(target=publisher_worker, args=(relay.url, pub_tokens, rate, ready, go, window, out))]
    shares = [subscribers // SUB_WORKERS + (i < subscribers % SUB_WORKERS) for i in range(SUB_WORKERS)]
    procs += [ctx.Process(target=subscriber_worker, args=(relay.url, sub_token, n, rate, ready, go, window, out))
              for n in shares if n]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=300)
        start = time.monotonic_ns() + int(WARMUP_S * 1e9)
        window[0], window[1] = start, start + int(seconds * 1e9)
        cpu0, t0 = relay.cpu_s(), time.monotonic()
        go.set()
        results = [out.get(timeout=seconds + WARMUP_S + GRACE_S + 300) for _ in procs]
        cpu = (relay.cpu_s() - cpu0) / (time.monotonic() - t0)
        rss = relay.rss_kib()
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    sent = sum(r[1] for r in results if r[0] == "pub")
    got = sum(r[1] for r in results if r[0] == "sub")
    lat = np.concatenate([r[2] for r in results if r[0] == "sub"] or [np.zeros(0, np.int64)]) / 1e6
    delivered = got / (sent * subscribers) if sent else 0.0
    p50, p99 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99))) if len(lat) else (float("nan"),) * 2
    return {"relay": relay.kind, "rate": rate, "publishers": publishers, "subscribers": subscribers,
            "p50_ms": p50, "p99_ms": p99, "delivered": delivered, "msgs_out_per_s": got / seconds,
            "relay_cpu": cpu, "rss_mib": rss / 1024, "cpu_us_per_msg": cpu * 1e6 / (got / seconds) if got else float("nan"),
            "ok": bool(len(lat)) and p99 <= P99_LIMIT_MS and delivered >= MIN_DELIVERED}


async def _idle_clients(url: str, secret: str, subscribers: int, publishers: int, hold: Any, ready: Any) -> None:
    from websockets.asyncio.client import connect

    from pitbox.live import create_token
    from pitbox.live.protocol import jsonable
    from pitbox.live.replay import ibt_frames

    full_rows = [jsonable(values) for _, _, values in ibt_frames(SOURCE, start=1000, stop=1600)]
    conns = []
    token = create_token(secret, "subscriber")
    for _ in range(subscribers):
        ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None, open_timeout=60)
        await ws.send(json.dumps({"v": 1, "type": "subscribe", "channels": CHANNELS, "rate": 10}))
        conns.append(ws)
    for k in range(publishers):
        t = create_token(secret, "publisher", subject=f"m{k:03d}")
        ws = await connect(url + "/publish", additional_headers={"Authorization": f"Bearer {t}"}, proxy=None,
                           open_timeout=60)
        await ws.send(json.dumps({"v": 1, "type": "hello", "driver": {"id": f"m{k:03d}"}}))
        for tick in range(600):  # 60 s of 10 Hz history per driver, every channel (the relay keeps 600 s)
            await ws.send(json.dumps({"v": 1, "type": "frame", "tick": tick, "t": tick / 10,
                                      "values": full_rows[tick]}))
        conns.append(ws)
    ready.put(len(conns))
    await asyncio.get_running_loop().run_in_executor(None, hold.wait)
    for ws in conns:
        ws.transport.abort()


def idle_worker(url: str, secret: str, subscribers: int, publishers: int, hold: Any, ready: Any) -> None:
    asyncio.run(_idle_clients(url, secret, subscribers, publishers, hold, ready))


def memory_per_client(relay: Container, secret: str, subscribers: int, publishers: int) -> dict:
    """RSS growth of the relay process per connected client (idle subscribers, publishers
    with 60 s of history each)."""
    ctx = mp.get_context("spawn")
    out = {}
    for label, n_sub, n_pub in (("subscriber", subscribers, 0), ("publisher", 0, publishers)):
        before = relay.rss_kib()
        ready, hold = ctx.Queue(), ctx.Event()
        p = ctx.Process(target=idle_worker, args=(relay.url, secret, n_sub, n_pub, hold, ready))
        p.start()
        ready.get(timeout=300)
        time.sleep(1.0)  # let the relay finish handling what was sent (a measurement, not a test)
        after = relay.rss_kib()
        hold.set()
        p.join(60)
        out[label] = ((after - before) / max(1, n_sub + n_pub), n_sub + n_pub)
    return out


def stop_times(env: dict[str, str], image: str, secret: str, runs: int) -> list[tuple[float, str]]:
    out = []
    for _ in range(runs):
        name = f"pitbox-bench-stop-{os.getpid()}"
        localimage.remove_container(name, env)
        localimage.podman(["run", "-d", "--name", name, "-e", f"PITBOX_TOKEN_SECRET={secret}", image], env)
        try:
            deadline = time.monotonic() + 120
            while "listening" not in localimage.podman(["logs", name], env).stdout:
                assert time.monotonic() < deadline, "relay did not start"
                time.sleep(0.2)
            t0 = time.monotonic()
            localimage.podman(["stop", "-t", "10", name], env)
            took = time.monotonic() - t0
            code = localimage.podman(["inspect", "--format", "{{.State.ExitCode}}", name], env).stdout.strip()
            out.append((took, code))
        finally:
            localimage.remove_container(name, env)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rates", type=int, nargs="+", default=[10, 60])
    ap.add_argument("--publishers", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--subscribers", type=int, nargs="+", default=[10, 30, 100, 300, 1000])
    ap.add_argument("--relays", nargs="+", default=["pitbox", "broadcast"])
    ap.add_argument("--memory-clients", type=int, default=500)
    ap.add_argument("--stop-runs", type=int, default=5)
    args = ap.parse_args(argv)
    reason = localimage.unusable_reason()
    if reason:
        print(f"relay_bench: {reason}", file=sys.stderr)
        return 2
    from pitbox.live import new_secret

    env = localimage.podman_env()
    image = localimage.build_image(env, log=lambda m: print(m, file=sys.stderr))
    secret = new_secret()
    print(f"load before: {os.getloadavg()[0]:.1f} (1-min average, {os.cpu_count()} CPUs)", flush=True)
    rows: list[dict] = []
    memory = None
    with tempfile.TemporaryDirectory() as tmp:
        peer_file = Path(tmp) / "peer.py"
        peer_file.write_text(PEER)
        peer_file.chmod(0o644)
        for kind in args.relays:
            relay = Container(env, image, kind, secret, peer_file)
            try:
                if kind == "pitbox":
                    memory = memory_per_client(relay, secret, args.memory_clients, 50)
                for rate in args.rates:
                    for pubs in args.publishers:
                        for subs in args.subscribers:
                            r = scenario(relay, secret, pubs, subs, rate, args.seconds)
                            r["load"] = os.getloadavg()[0]
                            rows.append(r)
                            print("  {relay:9} {rate:3d} Hz {publishers:3d} pub {subscribers:5d} sub  p50 {p50_ms:7.1f} "
                                  "p99 {p99_ms:7.1f} ms  delivered {delivered:6.1%}  out {msgs_out_per_s:8.0f}/s  "
                                  "relay cpu {relay_cpu:4.0%} ({cpu_us_per_msg:5.1f} us/msg)  rss {rss_mib:6.1f} MiB  "
                                  "load {load:4.1f}".format(**r),
                                  flush=True)
                            if not r["ok"]:
                                break
            finally:
                relay.remove()
    stops = stop_times(env, image, secret, args.stop_runs)

    print("\nLargest passing configuration (p99 <= 50 ms, >= 99 % delivered) per rate and publisher count:")
    print(f"{'relay':10}{'rate':>6}{'pubs':>6}{'max subs':>10}{'p50 ms':>9}{'p99 ms':>9}{'msgs/s out':>12}"
          f"{'relay cpu':>11}{'cpu us/msg':>12}{'first failing subs':>20}{'its p99 ms':>12}")
    for kind in args.relays:
        for rate in args.rates:
            for pubs in args.publishers:
                mine = [r for r in rows if (r["relay"], r["rate"], r["publishers"]) == (kind, rate, pubs)]
                good = [r for r in mine if r["ok"]]
                bad = [r for r in mine if not r["ok"]]
                best = good[-1] if good else None
                fail = bad[0] if bad else None
                print(f"{kind:10}{rate:6d}{pubs:6d}{best['subscribers'] if best else 0:10d}"
                      f"{best['p50_ms'] if best else float('nan'):9.1f}{best['p99_ms'] if best else float('nan'):9.1f}"
                      f"{best['msgs_out_per_s'] if best else 0:12.0f}{best['relay_cpu'] if best else 0:11.0%}"
                      f"{best['cpu_us_per_msg'] if best else float('nan'):12.1f}"
                      f"{(str(fail['subscribers']) if fail else '-'):>20}"
                      f"{(fail['p99_ms'] if fail else float('nan')):12.1f}")
    if memory:
        print("\nRelay memory (RSS growth of the relay process in the container):")
        for label, (kib, n) in memory.items():
            extra = (" (each with 60 s of 10 Hz history of all 143 channels of a real row)" if label == "publisher"
                     else " (subscribed, idle)")
            print(f"  per {label}: {kib:6.1f} KiB over {n} clients{extra}")
    times = [t for t, _ in stops]
    print(f"\npodman stop: median {statistics.median(times):.2f} s, max {max(times):.2f} s over {len(times)} runs; "
          f"exit codes {sorted({c for _, c in stops})} (0: stopped on SIGTERM; 137 would be SIGKILL)")
    busiest = {}
    for r in rows:
        if r["msgs_out_per_s"] > busiest.get(r["relay"], {"msgs_out_per_s": 0})["msgs_out_per_s"]:
            busiest[r["relay"]] = r
    print("\nRelay CPU per frame sent at the busiest configuration run (load-independent-ish; one core = 1e6 us/s):")
    for kind, r in busiest.items():
        print(f"  {kind:10} {r['cpu_us_per_msg']:6.1f} us per frame sent ({r['msgs_out_per_s']:.0f}/s, "
              f"{r['publishers']} pub x {r['subscribers']} sub at {r['rate']} Hz): one dedicated core ~ "
              f"{1e6 / r['cpu_us_per_msg']:.0f} frames/s")
    print(f"load after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
