"""The recorder publishing live: every tick handed to pitbox.live's StreamServer from the tick
loop, session and session-info messages from the writer thread; a client receives them."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from test_recorder import W13, Running, column, lockstep, stored_ticks, wait_until

from pitbox.emulator import Emulator
from pitbox.live import LiveFeed, StreamServer
from pitbox.recorder import IrsdkSource
from pitbox.store import read_meta

from conftest import need


def test_recorder_streams_every_tick_and_the_session_to_a_client(tmp_path: Path) -> None:
    server = StreamServer("127.0.0.1", 0).start()
    messages: list[dict] = []
    lock = threading.Lock()

    def on_message(msg: dict) -> None:
        with lock:
            messages.append(msg)

    feed = LiveFeed(server.url, channels=["SessionTick", "Speed", "CarIdxLapDistPct"], rate=60,
                    on_message=on_message).start()
    try:
        wait_until(lambda: feed.connected, 10, "the client to connect")
        emu = Emulator([need(W13)], tmp_path / "irsdk.bin", speed=math.inf).open()
        src = IrsdkSource(emu.memmap_path)
        run = Running(src, tmp_path / "data", publisher=server)
        assert src.mapped.wait(10)
        lockstep(emu, run.rec)
        emu.close()
        wait_until(lambda: not run.rec.session_open, 10, "the session to close")
        (path,) = run.stop()

        def frames() -> list[dict]:
            with lock:
                return [m for m in messages if m.get("type") == "frame"]

        wait_until(lambda: frames() and frames()[-1]["tick"] == 390, 10, "the last frame")
    finally:
        feed.stop()
        server.stop()
    meta = read_meta(path)
    got = frames()
    ticks = [m["tick"] for m in got]
    assert ticks == sorted(set(ticks)) and len(ticks) >= 300  # in order; a slow moment keeps the latest only
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
