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
def test_ticks_advance_at_the_set_rate(tmp_path: Path, speed: float) -> None:
    memmap = tmp_path / "map.bin"
    emu = Emulator([need(LANGLEY)], memmap, speed=speed).start()
    try:
        assert emu.wait_for(lambda: len(emu.ticks) >= 3, timeout=5)
        with pyirsdk_map(memmap) as ir:
            # time the edges where the newest tick changes, about 1 s apart (no quantisation error)
            t0, k0 = next_edge(ir)
            time.sleep(1.0)
            t1, k1 = next_edge(ir)
        rate = (k1 - k0) / (t1 - t0)
        assert rate == pytest.approx(60 * speed, rel=0.02), rate
    finally:
        emu.stop()
    assert emu.dropped == 0


def test_stall_freezes_the_tick_count_while_connected(tmp_path: Path) -> None:
    memmap = tmp_path / "map.bin"
    emu = Emulator([need(LANGLEY)], memmap, speed=10.0, stall_at=120, stall_for=0.6).start()
    try:
        assert emu.wait_for(lambda: emu.published >= 1, timeout=5)  # connected
        with pyirsdk_map(memmap) as ir:
            samples = poll(ir, lambda s: s[2] >= 240, timeout=5)
    finally:
        emu.stop()
    t = np.array([s[0] for s in samples])
    tick = np.array([s[2] for s in samples])
    status = np.array([s[1] for s in samples])
    changes = np.flatnonzero(np.diff(tick)) + 1
    gaps = np.diff(t[changes])
    longest = int(np.argmax(gaps))
    assert 0.55 <= gaps[longest] <= 1.0, gaps[longest]
    assert tick[changes[longest]] == 119  # frozen on the tick before stall_at
    assert tick[changes[longest + 1]] == 120  # nothing lost: the stalled tick comes next
    assert np.all(status == 1)  # a stall is not a disconnect
    assert [e.kind for e in emu.events if e.kind in ("stall", "resume")] == ["stall", "resume"]


def test_restart_shows_status_0_then_a_new_header(tmp_path: Path) -> None:
    memmap = tmp_path / "map.bin"
    emu = Emulator([need(STATIONARY), need(W13_IBT)], memmap, speed=10.0, restart_gap_s=3.0).start()
    try:
        assert emu.wait_for(lambda: emu.published >= 1, timeout=5)  # connected
        with pyirsdk_map(memmap) as ir:
            old_vars = ir._header.num_vars
            before = poll(ir, lambda s: s[1] == 0, timeout=5)
            assert before[-1][2] == 201  # the last tick of the first sim
            offline = poll(ir, lambda s: s[1] == 1, timeout=5)
            back = offline[-1]
        duration = back[0] - before[-1][0]
        assert 0.25 <= duration <= 0.8, duration  # 3 emulated seconds at 10x
        assert back[3] == 323 != old_vars and back[2] <= 3  # new variables, ticks counted from 1
    finally:
        emu.stop()


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
            start = time.perf_counter()
            # read for 1.2 s at least, and until the loop has gone through the out-of-car gap
            while time.perf_counter() < start + 1.2 or emu.published < 5476 + 60:
                assert time.perf_counter() < start + 30, emu.published
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
        deadline = time.perf_counter() + 20
        while not (memmap.exists() and memmap.stat().st_size > 8 and
                   struct.unpack("<i", memmap.read_bytes()[4:8])[0] == 1):
            assert proc.poll() is None, proc.communicate()
            assert time.perf_counter() < deadline, "the emulator never connected"
            time.sleep(0.01)
        with pyirsdk_map(memmap) as ir:
            me = ir["DriverInfo"]["DriverCarIdx"]
            end = time.perf_counter() + 1.2
            while time.perf_counter() < end:
                seen.read(ir, me)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)
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
    assert check_rows(seen, truth) > 300
    assert seen.discarded < len(seen.rows)
