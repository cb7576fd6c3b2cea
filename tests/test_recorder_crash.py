"""Crash safety: ``kill -9`` mid-session, a full disk, a read-only folder.

The recorder runs as a real subprocess (``python -m pitbox.cli record --irsdk-file ...``)
fed by the emulator in this process at real time; what it leaves on disk is checked against
the emulator's ground truth and the source file as pyirsdk reads it. The recorder in another
process may drop a tick on a busy machine (never a torn or wrong row), so the checks allow
dropped ticks and count what was flushed to disk instead of timing anything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from test_recorder import W13, column, pyirsdk_columns, stored_ticks, wait_until

from pitbox.emulator import Emulator
from pitbox.store import Store, read_meta

from conftest import ROOT, need

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and resource limits")


def recorder_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pitbox.cli", *args]


def mapped_by(pid: int, path: Path) -> bool:
    """True once process ``pid`` has ``path`` memory-mapped (pyirsdk opened it)."""
    try:
        return str(path) in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def start_recorder(args: list[str], memmap: Path, preexec: Callable[[], None] | None = None,
                   env: dict[str, str] | None = None) -> subprocess.Popen:
    p = subprocess.Popen(recorder_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=preexec, env=env)
    if Path("/proc/self/maps").exists():
        wait_until(lambda: mapped_by(p.pid, memmap) or p.poll() is not None, 120, "the recorder to map the file")
    assert p.poll() is None, p.communicate()
    return p


def segment_rows(data: Path) -> int:
    """Rows in the closed segments a recording left in ``data/.recording``."""
    return sum(ipc.open_file(pa.memory_map(str(seg), "r")).read_all().num_rows
               for seg in (data / ".recording").glob("*/seg-*.arrow"))


def check_rows_equal_source(path: Path, emu: Emulator, src: Path) -> np.ndarray:
    """The stored rows are published ticks, in order, from the first, each equal to its source
    row; ticks missing in between are the session's dropped ticks."""
    meta = read_meta(path)
    ticks = stored_ticks(meta)
    by_tick = {r.tick_count: r for r in emu.ticks}
    assert ticks[0] == emu.ticks[0].tick_count and np.all(np.diff(ticks) > 0)
    assert all(int(t) in by_tick for t in ticks)
    assert meta["dropped_ticks"] == int(ticks[-1] - ticks[0] + 1 - len(ticks))
    rows = [by_tick[int(t)].source_row for t in ticks]
    played = np.array([r is not None for r in rows])  # a looping emulator adds ticks out of the car
    assert played.sum() > 0
    src_rows = np.array([r for r in rows if r is not None])
    truth = pyirsdk_columns(src, ["SessionTick", "SessionTime", "Speed", "RPM"])
    table = pq.read_table(path)
    for name, values in truth.items():
        np.testing.assert_array_equal(column(table, name)[played], values[src_rows].astype(column(table, name).dtype))
    return ticks


# -- kill -9 -----------------------------------------------------------------------------------

def test_kill_9_mid_session_keeps_every_flushed_row_and_the_restart_recovers_a_proper_session(tmp_path: Path) -> None:
    """Killed once four segments (4 flushes of 0.5 s) are on disk: the restart recovers every
    row they hold. (The recorder flushes every 0.5 s, so a kill loses the rows of the last
    flush interval and one write, well under 2 s; that bound is not timed here.)"""
    src = need(W13)
    mm, data = tmp_path / "irsdk.bin", tmp_path / "data"
    emu = Emulator([src], mm, speed=1.0, loop=True).open()
    p = start_recorder(["record", "--irsdk-file", str(mm), "--data", str(data)], mm)
    try:
        emu.start()
        wait_until(lambda: any(data.glob(".recording/*/seg-000003.arrow")), 120, "4 segments")
        os.kill(p.pid, signal.SIGKILL)
        p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
        emu.stop()
    assert any((data / ".recording").iterdir()), "the killed recorder left its recording"
    assert Store(data).sessions().empty
    flushed = segment_rows(data)
    assert flushed > 0
    # the next start recovers it (and then waits for a sim that is not there, for 0.5 s)
    out = subprocess.run(recorder_cmd("record", "--irsdk-file", str(tmp_path / "none.bin"), "--data", str(data),
                                      "--duration", "0.5"), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "stored" in out.stdout
    sessions = Store(data).sessions()
    assert len(sessions) == 1
    meta = Store(data).meta(sessions.id[0])
    assert meta["recovered"] and meta["truncated"] and meta["track"] == "spielberg gp"
    ticks = check_rows_equal_source(Path(sessions.path[0]), emu, src)
    assert len(ticks) == flushed, "every row flushed before the kill is in the recovered session"
    assert not any((data / ".recording").iterdir())


# -- full disk (a file-size limit on the recorder process) ----------------------------------

def _file_size_limit(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_full_disk_gives_a_clear_error_and_recover_finishes_the_recording(tmp_path: Path) -> None:
    src = need(W13)
    mm, data = tmp_path / "irsdk.bin", tmp_path / "data"
    emu = Emulator([src], mm, speed=1.0).open()
    # segments (~25 KB each, 0.5 s of live rows) fit under the limit; the session file (~300 KB) does not
    p = start_recorder(["record", "--irsdk-file", str(mm), "--data", str(data), "--until-gone"], mm,
                       preexec=_file_size_limit(150_000))
    try:
        emu.start()
        out, err = p.communicate(timeout=300)
    finally:
        emu.stop()
    assert p.returncode == 2, (out, err)
    assert "pitbox record: error:" in err and "cannot write the session file" in err
    assert "File too large" in err and "pitbox recover" in err
    assert Store(data).sessions().empty
    written = segment_rows(data)
    out2 = subprocess.run(recorder_cmd("recover", "--data", str(data)), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert out2.returncode == 0, out2.stderr
    sessions = Store(data).sessions()
    assert len(sessions) == 1
    ticks = check_rows_equal_source(Path(sessions.path[0]), emu, src)
    assert len(ticks) == written and ticks[-1] == 390  # nothing that was written is lost


# -- read-only folder ------------------------------------------------------------------------

def _without_root_override() -> None:
    """preexec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so that a
    root recorder obeys permission bits like the driver's own account does."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def unprivileged(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None] | None]]:
    """A folder, and a preexec that makes a root recorder subject to permission bits."""
    base = tmp_path / "ro"
    base.mkdir()
    yield base, (_without_root_override if os.geteuid() == 0 else None)
    for d in [base, *base.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)


def test_read_only_folder_mid_recording_stops_with_a_clear_error_and_keeps_what_was_written(
        unprivileged: tuple[Path, Callable[[], None] | None]) -> None:
    base, preexec = unprivileged
    src = need(W13)
    mm, data = base / "irsdk.bin", base / "data"
    emu = Emulator([src], mm, speed=1.0, loop=True).open()
    p = start_recorder(["record", "--irsdk-file", str(mm), "--data", str(data), "--until-gone", "--flush-s", "0.25"],
                       mm, preexec=preexec)
    try:
        emu.start()
        rec_root = data / ".recording"
        wait_until(lambda: rec_root.is_dir() and any(rec_root.glob("*/seg-000003.arrow")), 120, "4 segments")
        (folder,) = list(rec_root.iterdir())
        folder.chmod(0o555)  # the folder turns read-only under the recorder
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
        emu.stop()
    assert p.returncode == 2, (out, err)
    assert "cannot write a recording segment" in err and "Permission denied" in err
    written = sorted(folder.glob("seg-*.arrow"))
    assert len(written) >= 4
    rows_written = segment_rows(data)
    folder.chmod(0o755)
    assert subprocess.run(recorder_cmd("recover", "--data", str(data)), cwd=ROOT, capture_output=True,
                          timeout=120).returncode == 0
    sessions = Store(data).sessions()
    assert len(sessions) == 1
    ticks = check_rows_equal_source(Path(sessions.path[0]), emu, src)
    assert len(ticks) == rows_written  # every segment written before the error is in the session


def test_read_only_data_folder_is_refused_at_start_and_left_as_it_was(
        unprivileged: tuple[Path, Callable[[], None] | None]) -> None:
    base, preexec = unprivileged
    data = base / "data"
    data.mkdir()
    (data / "keep.txt").write_text("mine")
    data.chmod(0o555)
    out = subprocess.run(recorder_cmd("record", "--irsdk-file", str(base / "none.bin"), "--data", str(data),
                                      "--duration", "0.2"), cwd=ROOT, capture_output=True, text=True, timeout=60,
                         preexec_fn=preexec)
    assert out.returncode == 2
    assert out.stderr.strip() == f"pitbox record: error: {data}: the data folder is read-only: expected a folder " \
                                 "the recorder can write"
    assert sorted(p.name for p in data.iterdir()) == ["keep.txt"] and (data / "keep.txt").read_text() == "mine"
