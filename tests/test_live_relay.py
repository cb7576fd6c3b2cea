"""The team relay (issue 6): two recorders publish, subscribers choose drivers, channels
and rates; the relay is killed and restarted mid-session and everything resumes without
restarting the publishers, whose tick loop never stops (that it never waits is measured by
``bench/stream_bench.py``; no test asserts on time)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pitbox.ibt import open_telemetry
from pitbox.live import LiveClient, Relay, RelayPublisher, create_token, new_secret
from pitbox.live.replay import ibt_frames
from pitbox.live.testing import open_log, run, wait_until

from conftest import REAL, need

ROOT = Path(__file__).resolve().parents[1]
FILES = {"alice": (REAL / "skmodified_langley_iRacingTelemetry_2015-05-28_14-50-46.ibt", 1000),
         "bob": (REAL / "skmodified_martinsville_iRacingTelemetry_2016-02-07.ibt", 100)}
N = 120  # 2 s of clean 60 Hz rows from each file
pytestmark = pytest.mark.timeout(60)
SECRET = new_secret()


@pytest.fixture(scope="module")
def drivers():
    """Per driver: frames (tick, t, values) and the same rows read from the file."""
    out = {}
    for name, (path, start) in FILES.items():
        with open_telemetry(need(path)) as f:
            source = f.read(None, start, start + N)
        assert np.allclose(np.diff(source["SessionTime"]), 1 / 60, atol=1e-6)
        out[name] = (ibt_frames(path, start=start, stop=start + N), source)
    return out






def publisher(url: str, driver: str, **kwargs) -> RelayPublisher:
    return RelayPublisher(url, token=create_token(SECRET, "publisher", subject=driver),
                          driver_info={"name": driver.title()}, backoff_s=0.02, backoff_max_s=0.2, **kwargs).start()


def has_frame(driver: str, tick: int):
    def check(log) -> bool:
        return any(m.get("driver") == driver and m.get("tick") == tick for m in log.messages[-6:])
    return check


def test_two_publishers_two_subscribers_each_get_what_they_asked(drivers):
    token = create_token(SECRET, "subscriber")

    async def scenario(relay, pubs):
        sync = await open_log(relay.url, token=token, subscribe={"channels": ["Speed"], "rate": 60})
        one = await open_log(relay.url, token=token,
                             subscribe={"drivers": ["alice"], "channels": ["Speed", "RPM"], "rate": 60})
        both = await open_log(relay.url, token=token,
                              subscribe={"drivers": ["alice", "bob"], "channels": ["Throttle"], "rate": 10})
        for log, n_drivers in ((sync, 2), (one, 1), (both, 2)):
            await log.wait_for(lambda lg, n=n_drivers: lg.of("subscribed") and len(lg.of("session")) == n)
        for k in range(N):
            for name, pub in pubs.items():
                tick, t, values = drivers[name][0][k]
                pub.publish_frame(tick, t, values)
            for name in pubs:
                await sync.wait_for(has_frame(name, drivers[name][0][k][0]))
        for name, pub in pubs.items():
            pub.publish_lap({"lap": 1, "driver_lap_time_s": 15.0 if name == "alice" else 20.0})
        await both.wait_for(lambda lg: len(lg.of("lap")) == 2)
        late = await open_log(relay.url, token=token,
                              subscribe={"channels": ["Speed"], "rate": 10, "history": True})
        await late.wait_for(lambda lg: sum(bool(m.get("done")) for m in lg.of("history")) == 2)
        return one, both, late

    with Relay(port=0, token_secret=SECRET) as relay:
        pubs = {name: publisher(relay.url, name) for name in drivers}
        try:
            assert all(p.wait_connected(60) for p in pubs.values())
            for name, pub in pubs.items():
                pub.publish_session({"track": FILES[name][0].name.split("_")[1]})
            wait_until(lambda: len(relay.drivers()) == 2)
            one, both, late = run(scenario(relay, pubs))
        finally:
            for pub in pubs.values():
                pub.stop()

    listed = {d["id"]: d for d in one.of("hello")[0]["drivers"]}
    assert set(listed) == {"alice", "bob"} and listed["bob"]["name"] == "Bob" and listed["alice"]["connected"]
    assert {m["driver"] for m in one.of("session")} == {"alice"}
    frames_one = one.frames()
    assert {f["driver"] for f in frames_one} == {"alice"}
    alice_frames, alice_src = drivers["alice"]
    assert [f["tick"] for f in frames_one] == [fr[0] for fr in alice_frames]
    for f in frames_one:
        i = f["tick"] - FILES["alice"][1]
        assert f["values"] == {"Speed": float(alice_src["Speed"][i]), "RPM": float(alice_src["RPM"][i])}
    for name, (_, src) in drivers.items():
        got = both.frames(name)
        start = FILES[name][1]
        assert [f["tick"] for f in got] == list(range(start, start + N, 6)), f"{name} at 10 Hz"
        assert all(f["values"] == {"Throttle": float(src["Throttle"][f["tick"] - start])} for f in got)
        history = [f["tick"] for m in late.of("history") if m["driver"] == name for f in m["frames"]]
        assert history == list(range(start, start + N, 6)), f"{name}: the session so far from the relay"
    assert {(m["driver"], m["row"]["driver_lap_time_s"]) for m in late.of("lap")} == {("alice", 15.0), ("bob", 20.0)}


def test_roles_and_driver_identity_are_enforced():
    async def status(url, token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            async with connect(url, additional_headers=headers, proxy=None):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    async def impersonate(url):
        token = create_token(SECRET, "publisher", subject="alice")
        async with connect(url + "/publish", additional_headers={"Authorization": f"Bearer {token}"},
                           proxy=None) as ws:
            await ws.send(json.dumps({"v": 1, "type": "hello", "driver": {"id": "bob"}}))
            error = json.loads(await ws.recv())
            await ws.wait_closed()
            return error, ws.close_code

    with Relay(port=0, token_secret=SECRET) as relay:
        sub, pub = create_token(SECRET, "subscriber"), create_token(SECRET, "publisher", subject="alice")
        async def all_statuses():
            return [await status(relay.url + "/publish", sub), await status(relay.url, pub),
                    await status(relay.url + "/publish"), await status(relay.url, sub),
                    await status(relay.url + "/x", sub)]
        codes = run(all_statuses())
        error, code = run(impersonate(relay.url))
        assert relay.drivers() == []
    assert codes == [403, 403, 401, 101, 404]
    assert error["code"] == "bad_driver" and code == 1008


def start_relay_process(port: int = 0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "pitbox.cli", "relay", "--port", str(port), "--token-secret", SECRET],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"listening on (ws://\S+)", line)
    if match is None:
        proc.kill()
        raise AssertionError(f"relay did not start: {line!r} {proc.stderr.read()}")
    return proc, match.group(1)


def test_relay_killed_and_restarted_mid_session(drivers):
    proc, url = start_relay_process()
    port = int(url.rsplit(":", 1)[1])
    pubs = {name: publisher(url, name, channels=["Speed", "Lap"]) for name in drivers}
    stop = threading.Event()
    published = {"n": 0}

    def tick_loop() -> None:
        """A recorder's tick loop at 120 Hz; it never learns the relay went away."""
        k = 0
        due = time.perf_counter()
        while not stop.is_set():
            for name, pub in pubs.items():
                frames = drivers[name][0]
                tick, t, values = frames[k % N]
                lap_offset = (k // N) * N
                pub.publish_frame(tick + lap_offset, t + lap_offset / 60, values)
            published["n"] = k = k + 1
            due += 1 / 120
            stop.wait(max(0.0, due - time.perf_counter()))

    async def until(predicate, timeout=60.0):
        """Poll state no event signals (frames seen, publishers' connections), with a safety deadline."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.005)

    async def scenario(client, procs):
        seen: dict[str, list[int]] = {}

        async def collect():
            async for msg in client:
                if msg["type"] == "frame":
                    seen.setdefault(msg["driver"], []).append(msg["tick"])

        task = asyncio.ensure_future(collect())
        await until(lambda: len(seen) == 2 and min(map(len, seen.values())) >= 20)
        before = {d: max(t) for d, t in seen.items()}

        procs[0].kill()
        await asyncio.to_thread(procs[0].wait, 60)
        await until(lambda: not any(p.connected for p in pubs.values()))
        n_down = published["n"]
        await until(lambda: published["n"] >= n_down + 30)  # the tick loop goes on with the relay down

        procs.append(None)
        procs[1], url2 = await asyncio.to_thread(start_relay_process, port)
        assert url2 == url
        resumed_from = published["n"]
        await until(lambda: all(sum(t > before[d] for t in seen[d]) >= 20 for d in before))
        await client.aclose()
        task.cancel()
        return seen, before, resumed_from

    token = create_token(SECRET, "subscriber")
    thread = threading.Thread(target=tick_loop, daemon=True)
    procs = [proc]
    try:
        assert all(p.wait_connected(60) for p in pubs.values())
        thread.start()
        client = LiveClient(url, token=token, channels=["Speed"], rate=60, backoff_s=0.02, backoff_max_s=0.2)
        seen, before, resumed_from = run(scenario(client, procs))
        stats = {name: pub.stats() for name, pub in pubs.items()}
    finally:
        stop.set()
        thread.join(60)
        for pub in pubs.values():
            pub.stop()
        for p in procs:
            if p is not None:
                p.kill()
                p.wait(60)
                p.stdout.close()
                p.stderr.close()

    assert client.connects >= 2
    assert all(s["connects"] == 2 for s in stats.values()), "each publisher reconnected once, by itself"
    assert published["n"] > resumed_from, "the tick loop never stopped"
    for d in drivers:
        new = [t for t in seen[d] if t > before[d]]
        assert new == sorted(new) and len(set(new)) == len(new), "resumed stream in order"


def test_record_options_open_a_stream_and_a_relay_publisher():
    """What `pitbox record --stream --publish URL --token T` gets from pitbox.live.cli."""
    import argparse

    from pitbox.live import StreamServer
    from pitbox.live.cli import add_stream_options, open_publishers

    parser = argparse.ArgumentParser()
    add_stream_options(parser)
    assert open_publishers(parser.parse_args([])) == []
    with Relay(port=0, token_secret=SECRET) as relay:
        args = parser.parse_args(["--stream", "--stream-port", "0", "--publish", relay.url,
                                  "--token", create_token(SECRET, "publisher", subject="carol"),
                                  "--publish-channel", "Speed", "--publish-rate", "10"])
        outputs = open_publishers(args, driver_info={"name": "Carol"})
        try:
            server, pub = outputs
            assert isinstance(server, StreamServer) and server.port > 0
            assert pub.wait_connected(60) and pub.driver_id == "carol"
            wait_until(lambda: [d["name"] for d in relay.drivers()] == ["Carol"])
        finally:
            for out in outputs:
                out.stop()


def test_a_publisher_that_leaves_before_the_relays_hello_still_delivers_what_it_sent():
    """A recorder stopped right after it started: its hello, session and tip and its close
    reach the relay in one write, before the relay's own hello to it has gone out. The relay
    still reads and keeps what it sent: a subscriber gets that driver's session and tip. (The
    relay's hello then fails on a closing connection; before the fix that ended the handler
    and dropped what was already received.) The publisher is a plain socket, so that the
    write is one, whatever the machine's load."""
    from websockets.frames import Close, CloseCode, Opcode
    from websockets.frames import Frame as WsFrame

    driver = "quick"
    said = [{"v": 1, "type": "hello", "driver": {"id": driver, "name": "Quick"}},
            {"v": 1, "type": "session", "meta": {"track": "pitboxsim_demo", "id": "s1"}},
            {"v": 1, "type": "tip", "lap": 3, "corner": "T3", "fault": "brake_early", "rank": 1,
             "text": "T3: brake 12 m later"}]

    async def publish_and_leave(url: str) -> None:
        import base64
        import os

        host, port = url.removeprefix("ws://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(f"GET /publish HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
        assert head.startswith("http/1.1 101"), head
        writer.write(b"".join(WsFrame(Opcode.TEXT, json.dumps(m).encode()).serialize(mask=True) for m in said)
                     + WsFrame(Opcode.CLOSE, Close(CloseCode.NORMAL_CLOSURE, "done").serialize()).serialize(mask=True))
        await writer.drain()
        await reader.read()  # until the relay closes its side
        writer.close()

    async def main(url: str) -> tuple[list[dict], list[dict]]:
        await publish_and_leave(url)
        log = await open_log(url, subscribe={"channels": None, "rate": 10, "drivers": None})
        try:
            await log.wait_for(lambda lg: any(m.get("driver") == driver for m in lg.of("tip")), timeout=20)
        except TimeoutError:
            pass
        return log.of("session"), log.of("tip")

    with Relay(port=0) as relay:
        sessions, tips = run(main(relay.url))
    assert [m["meta"] for m in sessions if m.get("driver") == driver] == [said[1]["meta"]]
    assert [(m["lap"], m["corner"], m["fault"]) for m in tips if m.get("driver") == driver] == [(3, "T3", "brake_early")]


def test_a_message_still_being_written_when_the_publisher_stops_reaches_the_relay():
    """``RelayPublisher.stop()`` sends what was published before it. A tip whose write is
    still under way (the socket's buffer full: the write awaits the network) when stop()
    looks must be waited for, not cancelled. The network's slowness is made certain by
    holding that one write of the websockets connection for a moment."""
    driver = "late"

    async def main(relay_url: str, pub: RelayPublisher) -> list[dict]:
        log = await open_log(relay_url, subscribe={"channels": None, "rate": 10, "drivers": None})
        try:
            await log.wait_for(lambda lg: any(m.get("driver") == driver for m in lg.of("tip")), timeout=20)
        except TimeoutError:
            pass
        return log.of("tip")

    with Relay(port=0) as relay:
        pub = RelayPublisher(relay.url, driver_id=driver, backoff_s=0.02, backoff_max_s=0.2).start()
        assert pub._connected.wait(30)
        pub.publish_session({"track": "pitboxsim_demo", "id": "s2"})
        ws = pub._ws
        real_send = ws.send

        async def slow_send(data, text=None):  # the tip's write waits on the network
            if b'"type": "tip"' in data or b'"type":"tip"' in data:
                await asyncio.sleep(0.3)
            return await real_send(data, text=text)

        ws.send = slow_send
        pub.publish_message({"type": "tip", "lap": 3, "corner": "T3", "fault": "brake_early", "rank": 1,
                             "text": "T3: brake 12 m later"})
        pub.stop()
        tips = run(main(relay.url, pub))
    assert [(m["lap"], m["corner"], m["fault"]) for m in tips if m.get("driver") == driver] == [(3, "T3", "brake_early")]
