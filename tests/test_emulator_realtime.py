"""The emulator against the clock: tick rate at speed 1 and 10, a stall, a sim restart as a
polling reader sees them, no torn row under load (in a thread and in another process), and
a clean stop on SIGTERM. Every measurement is taken from the reader's side, through pyirsdk."""

from __future__ import annotations

import csv
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import irsdk
import numpy as np
import pytest
from test_emulator import pyirsdk_ibt, pyirsdk_map, tick_counts

from pitbox.emulator import Emulator

from conftest import REAL, need

LANGLEY = REAL / "skmodified_langley_iRacingTelemetry_2015-05-28_14-50-46.ibt"  # 5476 rows
STATIONARY = REAL / "skmodified_newsmyrna_iRacingTelemetry_stationary.ibt"
W13_IBT = REAL / "mercedesw13_spielberg-gp_teamjorge-ibt_valid.ibt"
ROOT = Path(__file__).resolve().parents[1]


def newest_tick(ir: irsdk.IRSDK) -> int:
    return max(tick_counts(ir))


@contextmanager
def pyirsdk_map_when_written(emu: Emulator) -> Iterator[irsdk.IRSDK]:
    """Open the emulator's map (written, status 0, no tick yet) through pyirsdk."""
    emu.open()
    with pyirsdk_map(emu.memmap_path) as ir:
        yield ir


def poll(ir: irsdk.IRSDK, until, timeout: float, every: float = 0.0005) -> list[tuple[float, int, int, int]]:
    """(time, status, newest tick, num_vars) samples until ``until(sample)`` or timeout."""
    out = []
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        s = (time.perf_counter(), ir._header.status, newest_tick(ir), ir._header.num_vars)
        out.append(s)
        if until(s):
            return out
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s; last sample {out[-1] if out else None}")


def next_edge(ir: irsdk.IRSDK) -> tuple[float, int]:
    """(time, tick) of the next change of the newest tick."""
    k = newest_tick(ir)
    t, _, tick, _ = poll(ir, lambda s: s[2] != k, timeout=2)[-1]
    return t, tick


@pytest.mark.parametrize("speed", [1.0, 10.0])
def test_ticks_are_never_published_before_they_are_due(tmp_path: Path, speed: float) -> None:
    """The paced schedule never runs faster than 60 Hz x speed, and no tick goes out before
    its time (``wall_s >= due_s``, both from the clock); a busy machine can only make ticks
    late, which the schedule absorbs without a burst. How late on an idle machine is
    measured by ``bench/record_bench.py`` (the emulator's own lateness), not asserted here.
    A reader through pyirsdk sees the tick count advance while this runs."""
    memmap = tmp_path / "map.bin"
    emu = Emulator([need(LANGLEY)], memmap, speed=speed).start()
    try:
        assert emu.wait_for(lambda: len(emu.ticks) >= 3, timeout=60)
        with pyirsdk_map(memmap) as ir:
            first = newest_tick(ir)
            n = 60 if speed == 1.0 else 300
            assert emu.wait_for(lambda: emu.published >= first + n, timeout=120)
            assert newest_tick(ir) >= first + n
    finally:
        emu.stop()
    ticks = [r for r in emu.ticks if r.layout_id == 0]
    period = 1 / (60 * speed)
    wall, due, count = (np.array([getattr(r, k) for r in ticks]) for k in ("wall_s", "due_s", "tick_count"))
    assert np.all(wall >= due), "a tick went out before it was due"
    # due_s are clock readings (seconds since boot: 16,935 s after 4.7 h here), so the difference
    # of two carries their rounding (~4e-12 s): an absolute tolerance, not a relative one
    assert np.all(np.diff(due) >= np.diff(count) * period - 1e-9), "the schedule ran faster than the rate"
    assert np.all(np.diff(count) == 1) and emu.dropped == 0


def test_stall_freezes_the_tick_count_while_connected(tmp_path: Path) -> None:
    """What a reader sees is sampled in the emulator's own thread at the stall and at the
    resume (``on_event``), so no reader is ever late for it."""
    memmap = tmp_path / "map.bin"
    seen: dict[str, tuple[int, int]] = {}
    emu = Emulator([need(LANGLEY)], memmap, speed=10.0, stall_at=120, stall_for=0.6)
    with pyirsdk_map_when_written(emu) as ir:
        emu.on_event = lambda ev: seen.setdefault(ev.kind, (ir._header.status, newest_tick(ir)))
        emu.start()
        try:
            assert emu.wait_for(lambda: emu.published >= 240, timeout=120)
            after = (ir._header.status, newest_tick(ir))
        finally:
            emu.stop()
    assert seen["stall"] == (1, 119) and seen["resume"] == (1, 119)  # frozen on the tick before stall_at
    assert after[0] == 1 and after[1] >= 240
    stall, resume = (next(e for e in emu.events if e.kind == k) for k in ("stall", "resume"))
    assert resume.wall_s - stall.wall_s >= 0.6, "stalled for stall_for wall seconds at least"
    ticks = [r.tick_count for r in emu.ticks]
    assert ticks[:240] == list(range(1, 241)), "nothing lost: the stalled tick comes next"
    t120 = emu.record_for(120)
    assert t120 is not None and t120.wall_s >= resume.wall_s


def test_restart_shows_status_0_then_a_new_header(tmp_path: Path) -> None:
    """The reader's view is sampled in the emulator's thread as the sim goes offline and as
    the new sim connects."""
    memmap = tmp_path / "map.bin"
    seen: dict[str, tuple[int, int, int]] = {}
    emu = Emulator([need(STATIONARY), need(W13_IBT)], memmap, speed=10.0, restart_gap_s=3.0)
    with pyirsdk_map_when_written(emu) as ir:
        old_vars = ir._header.num_vars

        def on_event(ev) -> None:
            if ev.kind in ("offline", "connected"):
                seen[f"{ev.kind}{ev.detail.get('layout_id', '')}"] = (
                    ir._header.status, newest_tick(ir), ir._header.num_vars)

        emu.on_event = on_event
        emu.start()
        try:
            assert emu.wait_for(lambda: "connected1" in seen, timeout=120)
        finally:
            emu.stop()
    assert seen["connected0"][0] == 1
    assert seen["offline"] == (0, 201, old_vars)  # status 0 after the last tick of the first sim
    status, tick, num_vars = seen["connected1"]
    assert status == 1 and num_vars == 323 != old_vars and tick == 1  # new variables, ticks counted from 1
    offline, back = (next(e for e in emu.events if e.kind == k and (k == "offline" or e.detail["layout_id"] == 1))
                     for k in ("offline", "connected"))
    assert back.wall_s - offline.wall_s >= 0.3  # 3 emulated seconds at 10x, never shorter


# -- torn rows ------------------------------------------------------------------------------


class Observed:
    """What a reader following iRacing's protocol accepted: re-check the tick after copying."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.discarded = 0

    def read(self, ir: irsdk.IRSDK, me: int) -> None:
        before = newest_tick(ir)
        ir.freeze_var_buffer_latest()
        after = ir._var_buffer_latest.tick_count  # the frozen buffer's tick, read again from the map
        if after != before or after == 0:
            self.discarded += 1
            return
        self.rows.append((after, ir["SessionTime"], ir["LapDistPct"], ir["CarIdxLapDistPct"][me],
                          ir["LFshockVel_ST"][-1], ir["Speed"], ir["IsOnTrack"], ir["ReplayFrameNum"]))


def check_rows(observed: Observed, truth: dict[int, tuple[str, int | None]]) -> int:
    """Every accepted row is the source row of its tick, field by field; returns rows checked."""
    with pyirsdk_ibt(LANGLEY) as ibt:
        src = {n: np.array(ibt.get_all(n)) for n in ("SessionTime", "LapDistPct", "LFshockVel", "Speed")}
    torn = []
    for tick, st, pct, car_pct, shock, speed, on, frame in observed.rows:
        kind, row = truth[tick]
        if kind == "row":
            want = (src["SessionTime"][row], np.float32(src["LapDistPct"][row]), np.float32(src["LapDistPct"][row]),
                    np.float32(src["LFshockVel"][row]), np.float32(src["Speed"][row]), True, tick)
        else:
            want = (st, pct, -1.0, shock, speed, False, tick)
        got = (st, np.float32(pct), np.float32(car_pct), np.float32(shock), np.float32(speed), on, frame)
        if got != want:
            torn.append((tick, kind, row, got, want))
    assert not torn, torn[:3]
    return len(observed.rows)


def test_no_torn_row_with_the_emulator_in_a_thread(tmp_path: Path) -> None:
    memmap = tmp_path / "map.bin"
    emu = Emulator([need(LANGLEY)], memmap, speed=float("inf"), loop=True, exit_gap_s=0.5).start()
    seen = Observed()
    try:
        with pyirsdk_map(memmap) as ir:
            me = ir["DriverInfo"]["DriverCarIdx"]
            deadline = time.monotonic() + 300  # a safety net only
            # read until the loop has gone through the out-of-car gap and 300 rows were accepted
            while emu.published < 5476 + 60 or len(seen.rows) < 300:
                assert time.monotonic() < deadline, (emu.published, len(seen.rows))
                seen.read(ir, me)
    finally:
        emu.stop()
    truth = {r.tick_count: (r.kind, r.source_row) for r in emu.ticks}
    assert check_rows(seen, truth) > 300
    assert {k for k, _ in truth.values()} == {"row", "out_of_car"}  # the loop went through a gap


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to a child is a hard kill on Windows")
def test_no_torn_row_with_the_emulator_in_another_process_and_sigterm_stops_it(tmp_path: Path) -> None:
    memmap, truth_csv = tmp_path / "map.bin", tmp_path / "truth.csv"
    cmd = [sys.executable, "-m", "pitbox.cli", "emulate", str(need(LANGLEY)), "--memmap", str(memmap),
           "--speed", "100", "--loop", "--exit-gap", "0.5", "--ground-truth", str(truth_csv)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = Observed()
    try:
        deadline = time.monotonic() + 120  # safety nets only
        while not (memmap.exists() and memmap.stat().st_size > 8 and
                   struct.unpack("<i", memmap.read_bytes()[4:8])[0] == 1):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the emulator never connected"
            time.sleep(0.01)
        with pyirsdk_map(memmap) as ir:
            me = ir["DriverInfo"]["DriverCarIdx"]
            while len(seen.rows) < 1000:  # reads racing a writer at 6000 ticks/s
                assert proc.poll() is None and time.monotonic() < deadline, len(seen.rows)
                seen.read(ir, me)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert ir._header.status == 0  # a clean stop says so in the header
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "ticks published" in out
    with open(truth_csv, newline="") as f:
        truth = {int(r["tick_count"]): (r["kind"], int(r["source_row"]) if r["source_row"] else None)
                 for r in csv.DictReader(f)}
    assert check_rows(seen, truth) >= 1000
