"""The live recorder end to end: iRacing emulator → unmodified pyirsdk → recorder → Parquet.

Ground truth comes from outside the recorder: the emulator's record of every tick it
published (tick count, source file and row), and the source ``.ibt`` read by pyirsdk's own
``IBT`` reader.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import irsdk
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pitbox.emulator import Emulator, LiveMapWriter, TickRecord, geometry
from pitbox.emulator.channels import COPY, WIDEN
from pitbox.emulator.livemap import NUM_BUF
from pitbox.ibt import open_telemetry, write_ibt
from pitbox.ibt.layout import pack_var_headers
from pitbox.recorder import IrsdkSource, Recorder, ReplaySource, yaml_history
from pitbox.store import Store, read_meta

from conftest import REAL, need

W13 = REAL / "mercedesw13_spielberg-gp_teamjorge-ibt_valid.ibt"  # 390 rows, 2024 build, Lat/Lon


# -- helpers -----------------------------------------------------------------------------

def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


class Running:
    """A recorder running in a thread, stopped (and its error re-raised) by :meth:`stop`."""

    def __init__(self, source, data: Path, **kw):
        kw.setdefault("flush_s", 0.2)
        kw.setdefault("fsync", False)
        self.source = source
        self.rec = Recorder(source, data, **kw)
        self.paths: list[Path] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.paths = self.rec.run()
        except BaseException as exc:  # re-raised in the test thread
            self.error = exc

    def stop(self) -> list[Path]:
        self.rec.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "recorder did not stop"
        if self.error is not None:
            raise self.error
        return self.paths


def trimmed_ibt(src: Path, dest: Path, start: int, stop: int) -> Path:
    """Rows ``start:stop`` of a real file as a new, genuine ``.ibt`` (same layout and YAML)."""
    with open_telemetry(src) as tf:
        ch = tf.read(None, start, stop)
        return write_ibt(dest, ch, tf.session_info_raw, variables=tf.variables, buf_len=tf.header.buf_len,
                         tick_rate=tf.tick_rate, start_date=tf.disk.session_start_date)


def stored_ticks(meta: dict) -> np.ndarray:
    """Header tick counts of a stored live session, from ``first_tick`` and ``tick_gaps``."""
    n = meta["samples"]
    inc = np.zeros(n, np.int64)
    for row, missing in meta["tick_gaps"]:
        inc[row] += missing
    return meta["first_tick"] + np.arange(n) + np.cumsum(inc)


def pyirsdk_columns(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Channels of an ``.ibt`` as pyirsdk's own IBT reader gives them."""
    ibt = irsdk.IBT()
    ibt.open(str(path))
    try:
        return {n: np.asarray(ibt.get_all(n)) for n in names}
    finally:
        ibt.close()


def column(table, name: str) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
    return col.to_numpy(zero_copy_only=False)


def backpressure(emu: Emulator, rec: Recorder, timeout: float = 30) -> None:
    """After each tick the paced emulator waits until the recorder has taken the oldest tick
    still in the sim's three buffers (the one the next tick overwrites). On an idle machine
    that is never a wait; on a busy one the emulator falls behind its schedule instead of
    the recorder losing ticks, so the test's outcome depends on no timing."""

    def on_tick(r: TickRecord) -> None:
        if len(emu.ticks) < NUM_BUF or emu.ticks[-NUM_BUF].layout_id != r.layout_id:
            return
        oldest = emu.ticks[-NUM_BUF].tick_count
        wait_until(lambda: (rec.stats.last_tick or 0) >= oldest, timeout, f"the recorder to take tick {oldest}")

    emu.on_tick = on_tick


def record_emulated(tmp_path: Path, emu: Emulator, timeout: float = 60, **kw) -> tuple[Recorder, list[Path]]:
    """Run the emulator (paced, in its thread, with :func:`backpressure`) into a recorder
    until it finishes; returns the sessions."""
    src = IrsdkSource(emu.memmap_path)
    run = Running(src, tmp_path / "data", **kw)
    assert src.mapped.wait(10), "pyirsdk never mapped the emulator's file"
    backpressure(emu, run.rec)
    emu.start()
    assert emu.wait_for(lambda: emu.finished, timeout), "emulator did not finish"
    wait_until(lambda: not run.rec.session_open and run.rec.stats.ticks > 0, 10, "the recorder to close the session")
    paths = run.stop()
    emu.close()
    return run.rec, paths


def check_rows_equal_source(table, emu: Emulator, source_index: int, ticks_stored: np.ndarray,
                            rows_slice: slice = slice(None)) -> None:
    """Every COPY channel of the stored rows equals the source row pyirsdk reads (and every
    float[6] channel's last sub-sample the source scalar)."""
    truth = {(r.tick_count): r for r in emu.ticks if r.source_index == source_index}
    ticks = ticks_stored[rows_slice]
    src_rows = np.array([truth[int(t)].source_row for t in ticks])
    layout = emu.live_layout(source_index)
    names = [c.source for c in layout.channels if c.rule in (COPY, WIDEN)]
    src = pyirsdk_columns(emu.sources[source_index], names)
    checked = 0
    for c in layout.channels:
        if c.rule not in (COPY, WIDEN):
            continue
        stored = column(table, c.var.name)[rows_slice]
        expect = src[c.source][src_rows]
        if c.rule == WIDEN:
            stored = stored[:, -1]
        if stored.dtype.kind == "O" or expect.dtype.kind in "SUO":  # char channels
            continue
        np.testing.assert_array_equal(stored, expect.astype(stored.dtype), err_msg=c.var.name)
        checked += 1
    assert checked > 200


# -- 1: every tick once, equal to its source row ---------------------------------------------

def test_every_tick_at_1x_is_stored_once_equal_to_its_source_row(tmp_path: Path) -> None:
    emu = Emulator([need(W13)], tmp_path / "irsdk.bin", speed=1.0).open()
    rec, paths = record_emulated(tmp_path, emu)
    assert len(paths) == 1
    meta = read_meta(paths[0])
    published = np.array([r.tick_count for r in emu.ticks])
    assert len(published) == 390
    ticks = stored_ticks(meta)
    np.testing.assert_array_equal(ticks, published)  # each tick once, none missing, in order
    assert meta["dropped_ticks"] == 0 and meta["source_kind"] == "live"
    table = pq.read_table(paths[0])
    assert table.num_rows == 390
    # every channel of the live row kept, arrays too
    layout = emu.live_layout(0)
    assert table.column_names == layout.names
    assert column(table, "CarIdxLapDistPct").shape == (390, 64)
    check_rows_equal_source(table, emu, 0, ticks)
    # the store reads it like any session
    sessions = Store(tmp_path / "data").sessions()
    assert list(sessions.id) == [meta["id"]] and sessions.iloc[0].track == "spielberg gp"


# -- 2: dropped ticks counted from the tick count -----------------------------------------

def test_skipped_ticks_at_4x_are_counted_as_dropped(tmp_path: Path) -> None:
    emu = Emulator([need(W13)], tmp_path / "irsdk.bin", speed=4.0, skip_every=25, skip_count=2).open()
    _, paths = record_emulated(tmp_path, emu)
    meta = read_meta(paths[0])
    published = np.array([r.tick_count for r in emu.ticks])
    ticks = stored_ticks(meta)
    np.testing.assert_array_equal(ticks, published)
    expected_gaps = int(np.sum(np.diff(published) - 1))
    assert emu.dropped == expected_gaps > 0
    assert meta["dropped_ticks"] == expected_gaps
    check_rows_equal_source(pq.read_table(paths[0]), emu, 0, ticks)


# -- 3: session boundaries ------------------------------------------------------------------

def lockstep(emu: Emulator, rec: Recorder) -> None:
    """Publish every tick and wait for the recorder to take it before the next (deterministic
    at any speed); when the sim goes offline wait for the recorder to close the session."""
    while True:
        before = rec.stats.ticks
        r = emu.step()
        if r is None:
            return
        if isinstance(r, TickRecord):
            wait_until(lambda b=before: rec.stats.ticks > b, 10, f"tick {r.tick_count}")
        else:
            wait_until(lambda: not rec.session_open, 10, "the recorder to see the sim stop")


def test_session_change_leaving_the_car_and_sim_restart_make_the_right_sessions(tmp_path: Path) -> None:
    parts = [trimmed_ibt(need(W13), tmp_path / f"part{i}.ibt", 100 * i, 100 * i + 90) for i in range(4)]
    emu = Emulator(parts, tmp_path / "irsdk.bin", speed=math.inf, transitions=["session", "exit", "restart"],
                   exit_gap_s=0.5).open()
    src = IrsdkSource(emu.memmap_path)
    run = Running(src, tmp_path / "data")
    assert src.mapped.wait(10)
    lockstep(emu, run.rec)
    emu.close()
    wait_until(lambda: not run.rec.session_open, 10, "the last session to close")
    paths = {read_meta(p)["id"]: p for p in run.stop()}
    metas = sorted((read_meta(p) for p in paths.values()), key=lambda m: m["start"])
    assert [m["end_reason"] for m in metas] == [
        "session changed", "the driver re-entered the car", "header status 0 (the sim stopped)",
        "header status 0 (the sim stopped)"]
    exit_ticks = [r for r in emu.ticks if r.kind == "out_of_car"]
    assert len(exit_ticks) == 30  # 0.5 s out of the car
    # part0: SessionNum 0; part1: SessionNum 1 (with the YAML of its time) + the ticks out of the car;
    # part2: re-entered, same SessionNum; part3: after the restart, tick counts from 1 again
    assert [m["session_num"] for m in metas] == [0, 1, 1, 0]
    assert [m["samples"] for m in metas] == [90, 90 + 30, 90, 90]
    assert metas[3]["first_tick"] == 1 and metas[2]["first_tick"] > 1
    assert "SessionNum: 1" in metas[1]["session_yaml"] and "SessionNum: 1" not in metas[0]["session_yaml"]
    for m in metas:
        assert m["dropped_ticks"] == 0 and m["yaml_updates"] == []
        assert (m["track"], m["car"], m["session_type"]) == ("spielberg gp", "mercedesw13", "Offline Testing")
    on_track = column(pq.read_table(paths[metas[1]["id"]]), "IsOnTrack")
    assert on_track[:90].all() and not on_track[90:].any()
    assert sum(m["samples"] for m in metas) == len(emu.ticks)
    # each session holds its own source's rows
    for i, m in enumerate(metas):
        table = pq.read_table(paths[m["id"]])
        n = 90
        truth = pyirsdk_columns(parts[i], ["SessionTick", "SessionTime"])
        np.testing.assert_array_equal(column(table, "SessionTick")[:n], truth["SessionTick"])
        np.testing.assert_array_equal(column(table, "SessionTime")[:n], truth["SessionTime"])


def test_yaml_updates_are_kept_with_the_tick_they_appeared_at(tmp_path: Path, real_dir: Path) -> None:
    dump = real_dir / "rt2000_longbeach_irsdkSharp_livedump.bin"
    with open_telemetry(dump) as tf:
        variables, buf_len, yaml0 = tf.variables, tf.header.buf_len, tf.session_info_raw
        row = bytearray(tf.read_rows().tobytes())
    yaml1 = yaml0.replace(b"Lap: ", b"Lap: 1", 1)
    assert yaml1 != yaml0
    mm = tmp_path / "irsdk.bin"
    w = LiveMapWriter(mm, geometry(buf_len))
    w.write_layout(pack_var_headers(variables), len(variables), buf_len, yaml0)
    src = IrsdkSource(mm)
    run = Running(src, tmp_path / "data")
    assert src.mapped.wait(10)
    update_tick = 40
    for tick in range(1, 81):
        if tick == update_tick:
            w.update_session_info(yaml1)
        before = run.rec.stats.ticks
        w.write_tick(tick % 3, tick, bytes(row))
        if tick == 1:
            w.set_status(1)
        wait_until(lambda b=before: run.rec.stats.ticks > b, 10, f"tick {tick}")
    w.set_status(0)
    wait_until(lambda: not run.rec.session_open, 10, "the session to close")
    w.close()
    (path,) = run.stop()
    meta = read_meta(path)
    assert meta["samples"] == 80 and meta["first_tick"] == 1
    hist = yaml_history(meta)
    assert [t for t, _ in hist] == [1, update_tick]
    assert hist[0][1].encode("cp1252") == yaml0 and hist[1][1].encode("cp1252") == yaml1
    assert meta["yaml_updates"][0]["row"] == update_tick - 1
    assert meta["track"] == "longbeach"


def test_a_stall_longer_than_the_timeout_resumes_without_duplicate_rows(tmp_path: Path) -> None:
    emu = Emulator([need(W13)], tmp_path / "irsdk.bin", speed=4.0, stall_at=150, stall_for=2.6).open()
    rec, paths = record_emulated(tmp_path, emu, timeout=60)
    assert any(e.kind == "stall" for e in emu.events)
    assert len(paths) == 1, "a paused sim that comes back continues its session"
    meta = read_meta(paths[0])
    ticks = stored_ticks(meta)
    assert len(np.unique(ticks)) == len(ticks) == 390
    np.testing.assert_array_equal(ticks, [r.tick_count for r in emu.ticks])
    session_tick = column(pq.read_table(paths[0]), "SessionTick")
    assert np.all(np.diff(session_tick) == 1)
    assert rec.stats.connects == 2  # gone after 2 s without a tick, then back


# -- 4: replay ------------------------------------------------------------------------------

def test_replay_of_an_ibt_and_of_a_stored_session_gives_the_same_rows(tmp_path: Path) -> None:
    src = need(W13)
    r1 = Recorder(ReplaySource(src, speed=0), tmp_path / "a", fsync=False).run()
    m1 = read_meta(r1[0])
    assert m1["source_kind"] == "replay" and m1["samples"] == 390 and m1["dropped_ticks"] == 0
    t1 = pq.read_table(r1[0])
    truth = pyirsdk_columns(src, ["SessionTime", "Speed", "Lat", "LapDistPct"])
    for k, v in truth.items():
        np.testing.assert_array_equal(column(t1, k), v.astype(column(t1, k).dtype))
    # the stored session replayed again through the same interface
    r2 = Recorder(ReplaySource(r1[0], speed=0), tmp_path / "b", fsync=False).run()
    t2 = pq.read_table(r2[0])
    assert t2.column_names == t1.column_names
    for name in t1.column_names:
        assert t2.column(name).equals(t1.column(name)), name


def test_replay_via_the_emulator_goes_through_pyirsdk_and_keeps_every_tick(tmp_path: Path, capsys) -> None:
    from pitbox.cli import main

    assert main(["record", "replay", str(need(W13)), "--via-emulator", "--speed", "0", "--data",
                 str(tmp_path / "d"), "--no-fsync"]) == 0
    assert "1 session(s) stored, 390 ticks recorded, 0 dropped" in capsys.readouterr().out
    (path,) = Store(tmp_path / "d").sessions().path
    meta = read_meta(path)
    assert meta["source_kind"] == "live" and meta["source_name"] == f"{W13.name} (emulated)"
    np.testing.assert_array_equal(stored_ticks(meta), np.arange(1, 391))
    table = pq.read_table(path)
    assert column(table, "CarIdxLapDistPct").shape == (390, 64)  # the live layout, as pyirsdk read it
    truth = pyirsdk_columns(W13, ["SessionTick"])
    np.testing.assert_array_equal(column(table, "SessionTick"), truth["SessionTick"])


# -- 5: the sim's first tick ------------------------------------------------------------------

def test_a_recorder_started_before_the_sim_records_from_its_first_tick(tmp_path: Path) -> None:
    """The recorder waits for a memory map that does not exist yet; the sim starts (its map
    appears) and publishes three ticks before the recorder looks again: all three are still
    in the buffers and recorded, then every later tick."""
    memmap = tmp_path / "irsdk.bin"
    src = IrsdkSource(memmap)
    run = Running(src, tmp_path / "data")
    assert not memmap.exists() and not src.mapped.is_set()
    emu = Emulator([need(W13)], memmap, speed=math.inf).open()  # the sim starts: map written, status 0
    assert src.mapped.wait(10), "the recorder never found the map"
    backpressure(emu, run.rec)  # from the third tick on: the fourth overwrites the first
    for _ in range(NUM_BUF):  # the recorder may look between these, or only after all three
        assert isinstance(emu.step(), TickRecord)
    while emu.step() is not None:
        pass
    wait_until(lambda: not run.rec.session_open, 10, "the session to close")
    (path,) = run.stop()
    emu.close()
    meta = read_meta(path)
    published = [r.tick_count for r in emu.ticks]
    assert published[0] == 1 and len(published) == 390
    np.testing.assert_array_equal(stored_ticks(meta), published)  # from the sim's first tick, none lost
    assert meta["first_tick"] == 1 and meta["joined_at_tick"] is None and meta["dropped_ticks"] == 0
    assert run.rec.stats.first_tick == 1 and run.rec.stats.joined_at_tick is None
    check_rows_equal_source(pq.read_table(path), emu, 0, stored_ticks(meta), slice(0, 10))


def test_joining_a_running_sim_catches_up_on_its_three_buffers_and_says_so(tmp_path: Path) -> None:
    """Started after the sim published 5 ticks, the recorder records the three still in the
    buffers (3, 4, 5), oldest first, then on; the session says it joined at tick 5."""
    emu = Emulator([need(W13)], tmp_path / "irsdk.bin", speed=math.inf).open()
    for _ in range(5):
        emu.step()
    src = IrsdkSource(emu.memmap_path)
    run = Running(src, tmp_path / "data")
    wait_until(lambda: run.rec.stats.ticks >= NUM_BUF, 10, "the catch-up")
    backpressure(emu, run.rec)
    while emu.step() is not None:
        pass
    wait_until(lambda: not run.rec.session_open, 10, "the session to close")
    (path,) = run.stop()
    emu.close()
    meta = read_meta(path)
    published = [r.tick_count for r in emu.ticks]
    np.testing.assert_array_equal(stored_ticks(meta), published[2:])
    assert meta["first_tick"] == 3 and meta["joined_at_tick"] == 5 and meta["dropped_ticks"] == 0
    check_rows_equal_source(pq.read_table(path), emu, 0, stored_ticks(meta), slice(0, 10))


def test_record_summary_says_from_which_tick_it_recorded_when_it_joined_a_running_sim(tmp_path: Path,
                                                                                     capsys) -> None:
    from pitbox.cli import main

    emu = Emulator([need(W13)], tmp_path / "irsdk.bin", speed=math.inf).open()
    for _ in range(5):
        emu.step()
    data = tmp_path / "d"
    codes: list[int] = []
    t = threading.Thread(target=lambda: codes.append(main(["record", "--irsdk-file", str(emu.memmap_path), "--data",
                                                           str(data), "--until-gone", "--no-fsync"])))
    t.start()
    # the session began (its folder is written) once the catch-up returned ticks 3, 4 and 5
    wait_until(lambda: any(data.glob(".recording/*/meta.json")), 30, "the recording to begin")
    emu.close()  # status 0: the sim stops; the recorder keeps the ticks it already copied
    t.join(60)
    assert codes == [0]
    out = capsys.readouterr().out
    assert ": 3 ticks from tick 3 (joined the running sim at its tick 5), 0 dropped" in out
    assert "1 session(s) stored, 3 ticks recorded, 0 dropped, from tick 3 (joined the running sim at its tick 5)" in out
    meta = read_meta(next(data.glob("track=*/car=*/*.parquet")))
    assert (meta["first_tick"], meta["joined_at_tick"], meta["samples"]) == (3, 5, 3)
    truth = pyirsdk_columns(W13, ["SessionTick"])["SessionTick"]
    np.testing.assert_array_equal(column(pq.read_table(next(data.glob("track=*/car=*/*.parquet"))), "SessionTick"),
                                  truth[[r.source_row for r in emu.ticks[2:5]]])
