"""``pitbox record --voice``: the voice coach beside the live coach, end to end in one process.

The recorder's publisher chain is built as ``pitbox record`` builds it (its own parser, its
own ``start_voice`` and ``start_service``), with a real stream server and a real relay
publisher on 127.0.0.1; the frames of a simulated practice with one injected fault are
published one by one (as the recorder does), the after-lap analysis on the pump thread so
that the session time of each tip is the same on every run. Real WebSocket clients, on the
stream and on the relay, must receive a ``voice`` message naming the injected corner (the
simulator's ground truth), said on a later lap, before the car reached that corner (the
simulator's geometry) and off the brakes (the frames' ``Brake``)."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from pitbox import cli
from pitbox.ibt.reader import open_telemetry
from pitbox.live import Relay, StreamServer
from pitbox.live.relay import RelayPublisher
from pitbox.live.testing import FAST_REPLAY, open_log, run
from pitbox.livecoach.options import start_service
from pitbox.sim import load_track, read_truth, simulate_session
from pitbox.voice.options import start_voice

TRACK = "pitboxsim_demo"
FAULT = "2:T3:brake_early:25"


def record_args(*extra: str):
    return cli.build_parser().parse_args(["record", "replay", "x.ibt", *extra])


def test_voice_options_are_checked_before_anything_starts(capsys) -> None:
    assert cli.main(["record", "replay", "x.ibt", "--voice", "text", "--no-live-coach", "--stream"]) == 2
    assert "--no-live-coach" in capsys.readouterr().err
    assert cli.main(["record", "replay", "x.ibt", "--voice-commands", "ptt"]) == 2
    assert "needs --voice" in capsys.readouterr().err
    assert start_voice(record_args(), []) is None  # off unless asked for


@pytest.mark.slow
def test_record_voice_speaks_the_tip_on_the_stream_and_through_the_relay(tmp_path) -> None:
    sim = simulate_session(TRACK, 4, [FAULT], 31, in_lap=False, out=tmp_path / "practice.ibt")
    truth, _ = read_truth(sim.ibt_path)
    (fault,) = truth["faults"]
    with open_telemetry(sim.ibt_path) as tf:
        rows = tf.read_rows()
        ticks = tf.read(["SessionTick"])["SessionTick"]
        info = tf.session_info
    relay = Relay("127.0.0.1", 0, limits=FAST_REPLAY).start()
    server = StreamServer("127.0.0.1", 0).start()
    pub = RelayPublisher(relay.url, driver_id="alice").start()
    args = record_args("--voice", "text", "--voice-player", "null")
    voice = start_voice(args, [server, pub])
    service = start_service(args, [server, pub], tmp_path / "data", lossless=True, voice=voice, process=False)
    try:
        assert service.targets[-1] is voice  # after the publishers: the voice never holds up the stream

        async def main() -> tuple[list[dict], list[dict]]:
            local = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 1})
            team = await open_log(relay.url, subscribe={"channels": ["Speed"], "rate": 1, "drivers": ["alice"]})
            await local.wait_for(lambda log: log.of("subscribed"))
            await team.wait_for(lambda log: log.of("subscribed"))

            def feed() -> None:
                service.publish_session({"id": "voice-test", "track": TRACK})
                service.publish_session_info(info)
                for i in range(len(rows)):
                    service.publish_frame(int(ticks[i]), float(rows[i]["SessionTime"]), rows[i])

            await asyncio.to_thread(feed)

            def said(log) -> list[dict]:
                return [m for m in log.of("voice") if m["priority"] == "tip"]

            await local.wait_for(said, timeout=300)
            await team.wait_for(said, timeout=60)
            return said(local), said(team)

        local, team = run(main(), timeout=600)
    finally:
        service.stop()
        relay.stop()
    assert voice.errors == 0 and service.errors == 0
    first = local[0]
    assert set(first) >= {"v", "type", "text", "spoken", "priority", "t", "lap", "corner"}
    assert first["corner"] == fault["corner"] and first["lap"] > fault["lap"]
    assert first["spoken"].startswith(f"Turn {fault['corner'][1:]}:") and "worth" in first["spoken"]
    assert [(m["text"], m["t"]) for m in team] == [(m["text"], m["t"]) for m in local]
    assert all(m["driver"] == "alice" for m in team)
    # where the car was when it was said: off the brakes, before the corner on that lap
    t = rows["SessionTime"].astype(float)
    i = int(np.searchsorted(t, first["t"]))
    assert int(rows["Lap"][i]) == first["lap"]
    assert float(rows["Brake"][i]) <= 0.05
    track = load_track(TRACK)
    (corner,) = [c for c in track.corners if c.name == fault["corner"]]
    pct = float(rows["LapDistPct"][i])
    assert pct < corner.start_m / track.length_m or pct > 0.9, f"said at {pct:.3f} of the lap, in or after the corner"
    assert math.isfinite(first["t"])
