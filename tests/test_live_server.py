"""The recorder's live stream (issue 6): order, channels, rates, history, slow clients,
bad messages, many clients. Frames are real rows of a Langley .ibt replayed faster than
60 Hz, in lock step with one client (no sleeps)."""

from __future__ import annotations

import asyncio
import http.client
import json
import time

import numpy as np
import pytest

from pitbox.ibt import open_telemetry
from pitbox.live import LiveError, StreamServer
from pitbox.live.replay import ibt_frames
from pitbox.live.testing import MessageLog, open_log, run, stalled_client, wait_until

from conftest import LANGLEY, need

START, STOP = 1000, 1600  # 10 s of clean 60 Hz rows (no dropped tick), lap 183 -> 184 at row 1090
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def rows() -> list:
    return ibt_frames(need(LANGLEY), start=START, stop=STOP)


@pytest.fixture(scope="module")
def source() -> dict[str, np.ndarray]:
    """The same rows read straight from the file: what every client must receive."""
    with open_telemetry(need(LANGLEY)) as f:
        return f.read(None, START, STOP)


@pytest.fixture
def server():
    s = StreamServer(port=0).start()
    yield s
    s.stop()






def last_frame_is(tick: int):
    def check(log: MessageLog) -> bool:
        return bool(log.messages) and log.messages[-1].get("type") == "frame" and log.messages[-1]["tick"] == tick
    return check


async def publish_lockstep(server: StreamServer, frames, sync: MessageLog) -> list[int]:
    """Publish each frame once ``sync`` (a 60 Hz client) has the previous one; returns
    the publish time of each frame [perf_counter ns] by tick."""
    sent = {}
    for tick, t, values in frames:
        sent[tick] = time.perf_counter_ns()
        server.publish_frame(tick, t, values)
        await sync.wait_for(last_frame_is(tick))
    return sent


def test_source_window_is_clean_60hz(source):
    dt = np.diff(source["SessionTime"])
    assert np.allclose(dt, 1 / 60, atol=1e-6), "the window must have no dropped tick for the exact tick grid below"


def test_frames_arrive_in_order_with_chosen_channels_and_rate(server, rows, source):
    choices = {60: ["Speed", "RPM", "Gear"], 30: ["Throttle", "Brake"], 10: ["LapDistPct", "Lap", "OnPitRoad"], 1: None}

    async def scenario():
        logs = {rate: await open_log(server.url, subscribe={"channels": ch, "rate": rate}) for rate, ch in choices.items()}
        for log in logs.values():
            await log.wait_for(lambda lg: lg.of("subscribed"))
        await publish_lockstep(server, rows, logs[60])
        for rate, log in logs.items():
            last = START + (len(rows) - 1) // (60 // rate) * (60 // rate)
            await log.wait_for(lambda lg, last=last: any(f["tick"] == last for f in lg.frames()))
        return logs

    logs = run(scenario())
    for rate, channels in choices.items():
        frames = logs[rate].frames()
        ticks = [f["tick"] for f in frames]
        assert ticks == list(range(START, STOP, 60 // rate)), f"rate {rate}: the 60 Hz tick grid thinned by {60 // rate}"
        names = list(source) if channels is None else channels
        for f in frames:
            assert sorted(f["values"]) == sorted(names)
            i = f["tick"] - START
            assert f["t"] == float(source["SessionTime"][i])
            for name in names:
                expected = source[name][i]
                assert f["values"][name] == (expected.item() if np.ndim(expected) == 0 else expected.tolist()), name
        spacing = np.diff([f["t"] for f in frames])
        assert np.allclose(spacing, 1 / rate, atol=1e-6)


def test_rate_follows_session_time_across_dropped_ticks(server):
    """Rows 300-420 hold two dropped ticks (SessionTime jumps 2/60): a 10 Hz client still
    gets one frame per 0.1 s of session time, never two within 0.1 s - half a tick."""
    frames = ibt_frames(need(LANGLEY), channels=["Speed"], start=300, stop=420)

    async def scenario():
        sync = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 60})
        slow = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 10})
        await slow.wait_for(lambda lg: lg.of("subscribed"))
        await publish_lockstep(server, frames, sync)
        await sync.wait_for(lambda lg: len(lg.frames()) == len(frames))
        return sync, slow

    sync, slow = run(scenario())
    t_all = [f["t"] for f in sync.frames()]
    assert max(np.diff(t_all)) > 1.5 / 60, "the source window has a dropped tick"
    spacing = np.diff([f["t"] for f in slow.frames()])
    assert spacing.min() >= 0.1 - 0.5 / 60 - 1e-9 and spacing.max() <= 0.1 + 1 / 60 + 1e-9


def test_joining_client_fetches_session_so_far(server, rows, source):
    with open_telemetry(LANGLEY) as f:
        yaml_raw, expected_info = f.session_info_raw, f.session_info
    lap_row = {"lap": 183, "lap_time_s": 15.9, "valid": True}

    async def scenario():
        sync = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 60})
        await sync.wait_for(lambda lg: lg.of("subscribed"))
        server.publish_session({"track": "langley", "session_num": 0})
        server.publish_session_info(yaml_raw)  # raw YAML bytes: parsed off the tick loop
        await sync.wait_for(lambda lg: lg.of("session_info"))
        await publish_lockstep(server, rows[:300], sync)
        server.publish_lap(lap_row)
        await sync.wait_for(lambda lg: lg.of("lap"))
        late = await open_log(server.url, subscribe={"channels": ["Speed", "Lap"], "rate": 10})
        await late.send({"v": 1, "type": "history"})
        await late.wait_for(lambda lg: any(m.get("done") for m in lg.of("history")))
        await publish_lockstep(server, rows[300:330], sync)
        await late.wait_for(lambda lg: lg.frames() and lg.frames()[-1]["tick"] >= START + 324)
        return late

    late = run(scenario())
    kinds = [m["type"] for m in late.messages]
    assert kinds[:4] == ["hello", "subscribed", "session", "session_info"]
    assert late.of("session")[0]["meta"] == {"track": "langley", "session_num": 0}
    assert late.of("session_info")[0]["info"]["WeekendInfo"]["TrackName"] == expected_info["WeekendInfo"]["TrackName"]
    assert late.of("lap")[0]["row"] == lap_row and late.of("lap")[0]["history"] is True
    history = [f for m in late.of("history") for f in m["frames"]]
    assert [f["tick"] for f in history] == list(range(START, START + 300, 6)), "the default history keeps 10 Hz"
    assert all(f["values"]["Speed"] == float(source["Speed"][f["tick"] - START]) for f in history)
    live = [f["tick"] for f in late.frames()]
    assert live and live[0] > history[-1]["tick"], "live frames follow the history without repeating it"
    assert kinds.index("history") < kinds.index("frame")


def test_history_provider_gives_full_rate_history(rows, source):
    """The recorder supplies the session so far from its own store; here, the .ibt."""
    calls = []

    def provider(channels, rate, since_tick):
        calls.append((channels, rate, since_tick))
        return [r for r in rows[:120] if since_tick is None or r[0] > since_tick]

    async def scenario(server):
        log = await open_log(server.url, subscribe={"channels": ["Speed", "RPM"], "rate": 60})
        await log.send({"v": 1, "type": "history", "since_tick": START + 59})
        await log.wait_for(lambda lg: any(m.get("done") for m in lg.of("history")))
        return log

    with StreamServer(port=0, history_provider=provider) as server:
        log = run(scenario(server))
    history = [f for m in log.of("history") for f in m["frames"]]
    assert [f["tick"] for f in history] == list(range(START + 60, START + 120))
    assert all(f["values"]["RPM"] == float(source["RPM"][f["tick"] - START]) for f in history)
    assert calls[0] == (["Speed", "RPM"], 60, START + 59)


def test_stalled_client_neither_holds_up_others_nor_the_publisher(server, rows):
    """A client that stops reading fills its socket; from then on the server keeps only its
    latest frame (counted as dropped), while the live client still gets every frame in
    lock step and ``publish_frame`` keeps returning. Latency and publish cost with a stalled
    client are measured by ``bench/stream_bench.py``, not asserted here."""

    async def scenario():
        sync = await open_log(server.url, subscribe={"channels": ["Speed", "RPM", "Throttle"], "rate": 60})
        await sync.wait_for(lambda lg: lg.of("subscribed"))
        await publish_lockstep(server, rows[:30], sync)
        stalled = await stalled_client(server.url, channels=None, rate=60)
        i = 30
        while not any(c["dropped"] > 0 for c in server.clients()):  # its socket is full
            await publish_lockstep(server, rows[i : i + 10], sync)
            i += 10
            assert i < 400, "the stalled client never filled its socket"
        await publish_lockstep(server, rows[i : i + 150], sync)
        stats = server.clients()
        stalled.transport.abort()
        return sync, stats, i + 150

    sync, stats, n = run(scenario())
    assert [f["tick"] for f in sync.frames()] == list(range(START, START + n)), "the live client lost nothing"
    stalled = max(stats, key=lambda c: c["dropped"])
    assert stalled["channels"] is None and stalled["sent"] < n - 100, "the stalled client really stalled"
    assert stalled["dropped"] >= 100 and stalled["queued"] == 0, "only its latest frame is kept, nothing queues"
    assert min(c["dropped"] for c in stats) == 0


def test_fifty_clients_at_once(server, rows):
    async def scenario():
        logs = await asyncio.gather(*(open_log(server.url, subscribe={"channels": ["Speed"], "rate": 60})
                                      for _ in range(50)))
        for log in logs:
            await log.wait_for(lambda lg: lg.of("subscribed"))
        for tick, t, values in rows[:60]:
            server.publish_frame(tick, t, values)
            for log in logs:
                await log.wait_for(last_frame_is(tick))
        await asyncio.gather(*(log.close() for log in logs))
        return logs

    logs = run(scenario())
    wait_until(lambda: not server.clients())
    for log in logs:
        assert [f["tick"] for f in log.frames()] == list(range(START, START + 60))


def test_malformed_messages_get_errors_and_the_stream_goes_on(server, rows):
    bad = [
        ("not json", "bad_json"),
        (b"\x00\x01binary", "binary"),
        ('{"v": 2, "type": "subscribe"}', "bad_version"),
        ('[1, 2]', "bad_message"),
        ('{"v": 1, "type": "dance"}', "unknown_type"),
        ('{"v": 1, "type": "history"}', "not_subscribed"),
        ('{"v": 1, "type": "subscribe", "rate": 7}', "bad_rate"),
        ('{"v": 1, "type": "subscribe", "channels": "Speed", "rate": 10}', "bad_channels"),
        ('{"v": 1, "type": "subscribe", "channels": [1, 2], "rate": 10}', "bad_channels"),
        ('{"v": 1, "type": "subscribe", "channels": ["Speed"], "rate": NaN}', "bad_json"),
        ('{"v": 1, "type": "history", "since_tick": "x"}', "bad_history"),
    ]

    async def scenario():
        log = await open_log(server.url)
        for i, (payload, _) in enumerate(bad):
            await log.send(payload)
            await log.wait_for(lambda lg, i=i: len(lg.of("error")) > i)
        await log.send({"v": 1, "type": "subscribe", "channels": ["Speed", "NoSuchChannel"], "rate": 60})
        await log.wait_for(lambda lg: lg.of("subscribed"))
        tick, t, values = rows[0]
        server.publish_frame(tick, t, values)
        await log.wait_for(last_frame_is(tick))
        return log

    log = run(scenario())
    assert [e["code"] for e in log.of("error")] == [code for _, code in bad]
    assert log.frames()[0]["values"] == {"Speed": float(rows[0][2]["Speed"])}


def test_unknown_channels_are_reported(server, rows):
    async def scenario():
        sync = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 60})
        await sync.wait_for(lambda lg: lg.of("subscribed"))
        await publish_lockstep(server, rows[:1], sync)
        log = await open_log(server.url, subscribe={"channels": ["Speed", "NoSuchChannel"], "rate": 60})
        await log.wait_for(lambda lg: lg.of("subscribed"))
        return log

    log = run(scenario())
    assert log.of("subscribed")[0]["unknown"] == ["NoSuchChannel"]
    assert "Speed" in log.of("hello")[0]["channels"]


def test_oversized_message_closes_only_that_connection(rows):
    async def scenario(server):
        big = await open_log(server.url)
        other = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 60})
        await other.wait_for(lambda lg: lg.of("subscribed"))
        await big.send('{"v": 1, "type": "subscribe", "channels": ["' + "x" * 5000 + '"]}')
        await big.wait_for(lambda lg: lg.closed is not None)
        tick, t, values = rows[0]
        server.publish_frame(tick, t, values)
        await other.wait_for(last_frame_is(tick))
        return big

    with StreamServer(port=0, max_message_bytes=4096) as server:
        big = run(scenario(server))
    assert big.ws.close_code == 1009, "message too big"


def test_session_change_restarts_laps_and_history(server, rows):
    async def scenario():
        sync = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 60})
        await sync.wait_for(lambda lg: lg.of("subscribed"))
        server.publish_session({"session": 1})
        await publish_lockstep(server, rows[:60], sync)
        server.publish_lap({"lap": 1})
        server.publish_session({"session": 2})
        await publish_lockstep(server, rows[60:90], sync)
        late = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 10})
        await late.send({"v": 1, "type": "history"})
        await late.wait_for(lambda lg: any(m.get("done") for m in lg.of("history")))
        return sync, late

    sync, late = run(scenario())
    kinds = [(m["type"], m.get("tick")) for m in sync.messages if m["type"] in ("frame", "lap", "session")]
    i_lap, i_session = kinds.index(("lap", None)), [k for k, _ in kinds].index("session", 2)
    assert kinds[i_lap - 1] == ("frame", START + 59) and i_session == i_lap + 1, "order kept: frames, lap, session"
    assert late.of("session")[0]["meta"] == {"session": 2} and not late.of("lap")
    history = [f["tick"] for m in late.of("history") for f in m["frames"]]
    assert history == list(range(START + 60, START + 90, 6)), "history of the new session only"


def test_healthz_and_unknown_path(server):
    host, port = "127.0.0.1", server.port
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/json"
    assert doc["status"] == "ok" and doc["server"] == "pitbox-stream" and doc["clients"]["subscribers"] == 0
    conn.close()
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("GET", "/nothing-here")
    assert conn.getresponse().status == 404
    conn.close()


def test_publish_never_raises_when_not_running(rows):
    """Before start and after stop, publishing returns at once without an error, and the
    server then serves clients as usual. (That it never waits is measured by
    ``bench/stream_bench.py``, not asserted on time here.)"""
    server = StreamServer(port=0)
    tick, t, values = rows[0]
    for _ in range(100):
        assert server.publish_frame(tick, t, values) is None

    async def scenario():
        log = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 60})
        await log.wait_for(lambda lg: lg.of("subscribed"))
        server.publish_frame(tick + 1, t + 1 / 60, values)
        await log.wait_for(last_frame_is(tick + 1))
        return log

    server.start()
    try:
        log = run(scenario())
    finally:
        server.stop()
    assert server.publish_frame(tick, t, values) is None
    assert server.publish_lap({"lap": 1}) is None
    assert [f["tick"] for f in log.frames()] == [tick + 1]


def test_port_in_use_is_a_clear_error(server):
    with pytest.raises(LiveError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        StreamServer(port=server.port).start()


def test_first_frame_after_a_quiet_spell_wakes_the_stream(rows):
    """The hand-off polls while frames flow and sleeps when they stop; the first publish
    after a pause must wake it (no lost wake-up), and a lap alone must get through too."""
    async def scenario(server):
        log = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 60})
        await log.wait_for(lambda lg: lg.of("subscribed"))
        for k in range(3):
            await asyncio.to_thread(wait_until, lambda: server._waker_idle)
            tick, t, values = rows[k]
            server.publish_frame(tick, t, values)
            await log.wait_for(last_frame_is(tick))
        await asyncio.to_thread(wait_until, lambda: server._waker_idle)
        server.publish_lap({"lap": 9})
        await log.wait_for(lambda lg: lg.of("lap"))
        return log

    server = StreamServer(port=0)
    server.linger_s = 0.01
    with server:
        log = run(scenario(server))
    assert [f["tick"] for f in log.frames()] == [START, START + 1, START + 2]


def test_a_decoded_row_can_be_published_as_is(server, source):
    """The recorder may hand over the structured row it decoded (no dict per tick); the
    channels a client asks for are converted off the tick loop."""
    with open_telemetry(LANGLEY) as f:
        raw = f.read_rows(START, START + 3).copy()

    async def scenario():
        log = await open_log(server.url, subscribe={"channels": ["Speed", "Gear", "NoSuchChannel"], "rate": 60})
        await log.wait_for(lambda lg: lg.of("subscribed"))
        for i, row in enumerate(raw):
            server.publish_frame(START + i, float(row["SessionTime"]), row)
            await log.wait_for(last_frame_is(START + i))
        every = await open_log(server.url, subscribe={"channels": None, "rate": 60})
        await every.wait_for(lambda lg: lg.of("subscribed"))
        return log, every

    log, every = run(scenario())
    for i, f in enumerate(log.frames()):
        assert f["values"] == {"Speed": float(source["Speed"][i]), "Gear": int(source["Gear"][i])}
    assert every.of("hello")[0]["channels"] == list(source)


def test_the_hand_off_sleeps_until_the_next_frame_is_due():
    """The stream's loop and the live coach's pump look once per frame, not every
    millisecond: the pacer learns the interval from the frames' own publish times."""
    from pitbox.live._pace import Pacer

    pacer = Pacer(poll_s=0.001, after_s=0.0002, max_s=0.02)
    t0, dt = 100.0, 1 / 60
    assert pacer.delay(t0) == 0.001  # nothing learned yet: plain polling
    for k in range(4):
        pacer.note(k + 1, t0 + k * dt)
    last = t0 + 3 * dt
    assert pacer.interval == pytest.approx(dt)
    assert pacer.delay(last + 0.001) == pytest.approx(dt - 0.001 + 0.0002)  # until just after the next is due
    assert pacer.delay(last + dt + 0.0005) == 0.001  # the next is late: poll
    assert pacer.delay(last + 3 * dt) == 0.001  # frames stopped: poll (the quiet spell then stops the looks)
    pacer.note(7, last + 3 * dt)  # three frames in one look (a catch-up): the interval stays one tick
    assert pacer.interval == pytest.approx(dt)
    slow = Pacer(max_s=0.02)
    for k in range(4):
        slow.note(k + 1, t0 + k * 0.1)  # 10 Hz: other messages must not wait 100 ms
    assert slow.delay(t0 + 0.3) == 0.02


def test_compressed_and_plain_clients_get_the_same_frames(rows, source):
    """A frame is serialized once and written as is to every client without extensions; a
    client that negotiated permessage-deflate gets it through the protocol instead. Both
    must decode to the rows of the file."""
    names = ["Speed", "RPM", "Gear"]

    async def scenario(server):
        plain = await open_log(server.url, subscribe={"channels": names, "rate": 60})
        packed = await open_log(server.url, subscribe={"channels": names, "rate": 60}, compression=True)
        for log in (plain, packed):
            await log.wait_for(lambda lg: lg.of("subscribed"))
        await publish_lockstep(server, rows[:120], plain)
        await packed.wait_for(lambda lg: len(lg.frames()) == 120)
        return plain, packed

    with StreamServer(port=0, compression=True) as server:
        plain, packed = run(scenario(server))
    assert packed.ws.protocol.extensions and not plain.ws.protocol.extensions  # as negotiated
    for log in (plain, packed):
        frames = log.frames()
        assert [f["tick"] for f in frames] == list(range(START, START + 120))
        for f in frames:
            i = f["tick"] - START
            assert [f["values"][n] for n in names] == [source[n][i].item() for n in names]


async def _raw_ws_client(url: str, deflate: bool, subscribe: dict, out: list[tuple[bool, dict]],
                         changed: asyncio.Event) -> None:
    """A client written on a plain TCP socket (not websockets): it offers permessage-deflate
    or not, subscribes, and appends ``(rsv1, message)`` to ``out`` for every text message,
    setting ``changed`` each time, until cancelled. RSV1 set is a message the server
    compressed (RFC 7692); compressed payloads are inflated here with zlib (one context for
    the connection: the server's default context takeover)."""
    import base64
    import os as _os
    import struct
    import zlib

    from websockets.frames import Frame as WsFrame
    from websockets.frames import Opcode

    host, port = url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(_os.urandom(16)).decode()
    ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
    assert head.startswith("http/1.1 101"), head
    assert ("permessage-deflate" in head) == deflate, head
    writer.write(WsFrame(Opcode.TEXT, json.dumps(subscribe).encode()).serialize(mask=True))
    inflate = zlib.decompressobj(-15)
    try:
        while True:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await reader.readexactly(8))
            payload = await reader.readexactly(n)
            rsv1, opcode = bool(b0 & 0x40), b0 & 0x0F
            assert b0 & 0x80, "a fragmented message"
            if opcode != 1:  # a ping
                continue
            if rsv1:
                payload = inflate.decompress(payload + b"\x00\x00\xff\xff")
            out.append((rsv1, json.loads(payload)))
            changed.set()
    finally:
        writer.close()


def test_a_deflate_client_gets_compressed_frames_and_a_plain_one_plain_frames(rows, source):
    """On the wire (read on a bare socket): every frame message to a client that negotiated
    permessage-deflate is compressed (RSV1), none to a client that did not, and both carry
    the file's values. A frame serialized once for plain clients must never reach a deflate
    client uncompressed, nor compressed bytes a plain one."""
    names = ["Speed", "RPM", "Gear"]
    sub = {"v": 1, "type": "subscribe", "channels": names, "rate": 60}
    logs: list[list[tuple[bool, dict]]] = [[], []]

    async def scenario(server):
        changed = asyncio.Event()
        clients = [asyncio.create_task(_raw_ws_client(server.url, deflate, sub, log, changed))
                   for deflate, log in zip((False, True), logs, strict=True)]

        async def until(done) -> None:
            while not done():
                changed.clear()
                await changed.wait()

        try:
            await until(lambda: all(any(m["type"] == "subscribed" for _, m in log) for log in logs))
            for tick, t, values in rows[:30]:  # in lock step: each once both clients have the one before
                server.publish_frame(tick, t, values)
                await until(lambda tick=tick: all(any(m.get("tick") == tick for _, m in log) for log in logs))
        finally:
            for c in clients:
                c.cancel()

    with StreamServer(port=0, compression=True) as server:
        run(scenario(server))
    for log, compressed in zip(logs, (False, True), strict=True):
        frames = [(rsv1, m) for rsv1, m in log if m["type"] == "frame"]
        assert len(frames) == 30 and all(rsv1 == compressed for rsv1, _ in frames)
        for _, f in frames:
            i = f["tick"] - START
            assert [f["values"][n] for n in names] == [source[n][i].item() for n in names]
