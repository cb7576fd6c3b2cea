"""The Python clients (issue 6): LiveFeed for notebooks, LiveClient reconnecting and
filling the gap from the server's history, and `pitbox listen`."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading

import numpy as np
import pytest

from pitbox.cli import main
from pitbox.ibt import open_telemetry
from pitbox.live import LiveClient, LiveError, LiveFeed, StreamServer
from pitbox.live.client import backoff_delays
from pitbox.live.replay import ibt_frames
from pitbox.live.testing import close_all, open_log, wait_until

from conftest import LANGLEY, need

pytestmark = pytest.mark.timeout(60)
CHANNELS = ["Lap", "LapDistPct", "Speed", "Throttle"]


@pytest.fixture(scope="module")
def laps_window():
    """Rows 1000-2010: the end of lap 183, all of lap 184 (rows 1090-2000), start of 185."""
    with open_telemetry(need(LANGLEY)) as f:
        source = f.read(CHANNELS + ["SessionTime", "LapLastLapTime"], 1000, 2010)
    return ibt_frames(LANGLEY, channels=CHANNELS, start=1000, stop=2010), source




def test_live_feed_gives_frames_laps_and_one_lap_as_a_dataframe(laps_window):
    frames, source = laps_window
    lap_184 = source["Lap"] == 184
    with StreamServer(port=0) as server, LiveFeed(server.url, channels=CHANNELS, rate=60) as feed:
        wait_until(lambda: subscribed(server, rate=60))
        server.publish_session({"track": "langley"})
        for n, (tick, t, values) in enumerate(frames, start=1):
            server.publish_frame(tick, t, values)
            if tick == 2001:  # iRacing's own lap time for 184, as the recorder's lap table would give it
                server.publish_lap({"lap": 184, "lap_time_s": float(source["LapLastLapTime"][-1])})
            assert feed.wait(frames=n, timeout=10)
        latest = feed.latest()
        lap = feed.lap_frames()
        lap_again = feed.lap_frames(184)
        laps = feed.laps()
        all_frames = feed.frames()
        session = feed.session()
    assert latest["tick"] == 2009 and latest["Speed"] == float(source["Speed"][-1])
    assert list(all_frames.columns) == ["tick", "session_time"] + CHANNELS
    assert len(all_frames) == len(frames)
    assert lap.equals(lap_again)
    assert lap["tick"].tolist() == (np.flatnonzero(lap_184) + 1000).tolist()
    assert np.array_equal(lap["LapDistPct"].to_numpy(), source["LapDistPct"][lap_184].astype(float))
    assert np.array_equal(lap["session_time"].to_numpy(), source["SessionTime"][lap_184])
    assert laps.to_dict("records") == [{"lap": 184, "lap_time_s": float(source["LapLastLapTime"][-1])}]
    assert session == {"track": "langley"}


def test_lap_frames_needs_the_lap_channel():
    with StreamServer(port=0) as server, LiveFeed(server.url, channels=["Speed"], rate=60) as feed:
        wait_until(lambda: subscribed(server, channels=["Speed"]))
        server.publish_frame(1, 0.0, {"Speed": 1.0, "Lap": 3})
        assert feed.wait(1)
        with pytest.raises(LiveError, match="Lap channel"):
            feed.lap_frames()


def test_live_feed_reports_a_refused_token():
    from pitbox.live import create_token, new_secret

    with StreamServer(port=0, token_secret=new_secret()) as server:
        feed = LiveFeed(server.url, token=create_token(new_secret(), "subscriber")).start()
        try:
            assert not feed.wait(1, timeout=10)
            assert isinstance(feed.error, LiveError) and "401" in str(feed.error)
        finally:
            feed.stop()


def test_client_reconnects_and_fills_the_gap_from_history(laps_window):
    """The connection drops mid-session; the client reconnects by itself and asks for the
    frames after the last tick it had, so at 10 Hz it ends with every frame exactly once."""
    frames, _ = laps_window
    frames = frames[:600]

    async def scenario(server):
        sync = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 60})
        await sync.wait_for(lambda lg: lg.of("subscribed"))
        client = LiveClient(server.url, channels=["Speed"], rate=10, history=True, backoff_s=0.01, seed=1)
        got: list[dict] = []
        subscribed = asyncio.Event()
        last_on_grid = asyncio.Event()

        async def consume():
            async for msg in client:
                got.append(msg)
                if msg["type"] == "subscribed":
                    subscribed.set()
                if msg.get("tick") == 1594:  # the last tick on the 10 Hz grid
                    last_on_grid.set()

        task = asyncio.ensure_future(consume())
        await subscribed.wait()

        async def publish(part):
            for tick, t, values in part:
                server.publish_frame(tick, t, values)
                await sync.wait_for(lambda lg, tick=tick: lg.messages[-1].get("tick") == tick)

        await publish(frames[:200])
        subscribed.clear()
        client._ws.transport.abort()  # the network drops
        await publish(frames[200:400])  # the recorder goes on meanwhile
        await subscribed.wait()
        await publish(frames[400:])
        await last_on_grid.wait()
        await client.aclose()
        await task
        return got, client

    with StreamServer(port=0) as server:
        got, client = asyncio.run(_with_cleanup(scenario(server)))
    assert client.connects == 2 and [m["type"] for m in got].count("hello") == 2
    ticks = [m["tick"] for m in got if m["type"] == "frame"]
    ticks += [f["tick"] for m in got if m["type"] == "history" for f in m["frames"]]
    assert sorted(ticks) == list(range(1000, 1600, 6)), "every 10 Hz frame once: live, history, live"


def subscribed(server: StreamServer, **match) -> bool:
    """A client with these settings is subscribed (one snapshot of the server's list: a
    client may leave between two calls)."""
    return any(all(c[k] == v for k, v in match.items()) for c in server.clients())


async def _with_cleanup(coro):
    try:
        return await asyncio.wait_for(coro, 45)
    finally:
        await close_all()


def test_client_gives_up_after_max_retries():
    async def scenario(port):
        async for _ in LiveClient(f"ws://127.0.0.1:{port}", max_retries=2, backoff_s=0.01):
            pass

    with socket.socket() as closed:  # a port the OS picked, bound but not listening: refused
        closed.bind(("127.0.0.1", 0))
        with pytest.raises(LiveError, match="after 3 attempts"):
            asyncio.run(scenario(closed.getsockname()[1]))


def test_backoff_doubles_up_to_the_cap_with_jitter():
    delay = backoff_delays(0.25, 4.0, random.Random(3))
    for attempt in range(1, 10):
        nominal = min(4.0, 0.25 * 2 ** (attempt - 1))
        assert nominal * 0.5 <= delay(attempt) <= nominal


def test_cli_listen_prints_frames(capsys):
    with StreamServer(port=0) as server:
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault(
            "rc", main(["listen", server.url, "--channel", "Speed", "--rate", "60", "--count", "2"])))
        thread.start()
        wait_until(lambda: subscribed(server, rate=60))
        for tick in (1, 2):
            server.publish_frame(tick, tick / 60, {"Speed": float(tick), "RPM": 1.0})
            # sent, or the client already left (after its second frame): one snapshot of the list
            wait_until(lambda tick=tick: all(c["sent"] >= tick for c in server.clients()))
        thread.join(60)
    assert not thread.is_alive()
    assert result["rc"] == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [m["values"] for m in lines if m["type"] == "frame"] == [{"Speed": 1.0}, {"Speed": 2.0}]
