"""The recorder publishing live: every tick handed to pitbox.live's StreamServer from the tick
loop, session and session-info messages from the writer thread; a client receives them."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from test_recorder import W13, Running, column, stored_ticks, wait_until

from pitbox.emulator import Emulator, TickRecord
from pitbox.live import LiveFeed, StreamServer
from pitbox.recorder import IrsdkSource
from pitbox.store import read_meta

from conftest import need


def test_recorder_streams_every_tick_and_the_session_to_a_client(tmp_path: Path) -> None:
    """Lock step: each tick is published once the recorder took the one before and the
    client received its frame, so every tick reaches the client whatever the load (a slow
    client would get only the latest frame: tested in test_live_server)."""
    server = StreamServer("127.0.0.1", 0).start()
    messages: list[dict] = []
    changed = threading.Condition()

    def on_message(msg: dict) -> None:
        with changed:
            messages.append(msg)
            changed.notify_all()

    def frames() -> list[dict]:
        with changed:
            return [m for m in messages if m.get("type") == "frame"]

    def wait_for(predicate, what: str) -> None:
        with changed:
            assert changed.wait_for(lambda: predicate([m for m in messages]), 60), f"timed out waiting for {what}"

    feed = LiveFeed(server.url, channels=["SessionTick", "Speed", "CarIdxLapDistPct"], rate=60,
                    on_message=on_message).start()
    try:
        wait_for(lambda ms: any(m.get("type") == "subscribed" for m in ms), "the client to subscribe")
        emu = Emulator([need(W13)], tmp_path / "irsdk.bin", speed=math.inf).open()
        src = IrsdkSource(emu.memmap_path)
        run = Running(src, tmp_path / "data", publisher=server)
        assert src.mapped.wait(10)
        while (r := emu.step()) is not None:
            if isinstance(r, TickRecord):
                wait_for(lambda ms, t=r.tick_count: any(m.get("tick") == t for m in reversed(ms)), f"tick {r.tick_count}")
        emu.close()
        wait_until(lambda: not run.rec.session_open, 10, "the session to close")
        (path,) = run.stop()
    finally:
        feed.stop()
        server.stop()
    meta = read_meta(path)
    got = frames()
    assert [m["tick"] for m in got] == [r.tick_count for r in emu.ticks] == list(range(1, 391))
    table = pq.read_table(path)
    stored = dict(zip(stored_ticks(meta).tolist(), range(meta["samples"]), strict=True))
    speed, ticks_col, car = column(table, "Speed"), column(table, "SessionTick"), column(table, "CarIdxLapDistPct")
    for m in got:
        i = stored[m["tick"]]
        assert set(m["values"]) == {"SessionTick", "Speed", "CarIdxLapDistPct"}
        assert m["values"]["SessionTick"] == ticks_col[i]
        assert np.float32(m["values"]["Speed"]) == speed[i]
        assert np.allclose(np.asarray(m["values"]["CarIdxLapDistPct"], dtype=np.float32), car[i])
    sessions = [m for m in messages if m.get("type") == "session"]
    assert sessions and sessions[-1]["meta"]["track"] == "spielberg gp" and sessions[-1]["meta"]["id"] == meta["id"]
    assert any(m.get("type") == "session_info" for m in messages)


def test_record_cli_replays_a_file_with_the_stream_on(tmp_path: Path, capsys) -> None:
    from pitbox.cli import main

    assert main(["record", "replay", str(need(W13)), "--speed", "0", "--data", str(tmp_path / "d"),
                 "--stream", "--stream-port", "0", "--no-fsync"]) == 0
    out = capsys.readouterr().out
    assert "streaming on ws://127.0.0.1:" in out
    assert "1 session(s) stored, 390 ticks recorded, 0 dropped" in out


class Collector:
    """The publisher interface (duck-typed, as pitbox.live's StreamServer has it), recording calls."""

    def __init__(self) -> None:
        self.frames, self.laps, self.sessions, self.infos = 0, [], [], []

    def publish_frame(self, tick, session_time, values) -> None:
        self.frames += 1

    def publish_lap(self, row) -> None:
        self.laps.append(dict(row))

    def publish_session(self, meta) -> None:
        self.sessions.append(dict(meta))

    def publish_session_info(self, info) -> None:
        self.infos.append(info)


def test_completed_laps_are_published_with_iracings_lap_time(tmp_path: Path) -> None:
    from pitbox.recorder import Recorder, ReplaySource

    from conftest import LANGLEY

    pub = Collector()
    (path,) = Recorder(ReplaySource(need(LANGLEY), speed=0), tmp_path / "d", fsync=False, publisher=pub).run()
    assert pub.frames == read_meta(path)["samples"] == 5476
    assert [s["track"] for s in pub.sessions] == ["langley"] and len(pub.infos) == 1
    assert [lap["lap"] for lap in pub.laps] == [184, 185]  # the file's two full laps, as it numbers them
    for lap in pub.laps:  # each within 2 ms of iRacing's own LapLastLapTime
        assert lap["complete"] and abs(lap["time_s"] - lap["iracing_time_s"]) < 0.002
