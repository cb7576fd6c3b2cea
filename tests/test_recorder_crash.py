"""Crash safety: ``kill -9`` mid-session, a full disk, a read-only folder.

The recorder runs as a real subprocess (``python -m pitbox.cli record --irsdk-file ...``)
fed by the emulator in this process; what it leaves on disk is checked against the
emulator's ground truth and the source file as pyirsdk reads it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
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
        wait_until(lambda: mapped_by(p.pid, memmap) or p.poll() is not None, 30, "the recorder to map the file")
    assert p.poll() is None, p.communicate()
    return p


def check_prefix_equals_source(path: Path, emu: Emulator, src: Path) -> np.ndarray:
    """The stored rows are the first published ticks, in order, each equal to its source row."""
    meta = read_meta(path)
    ticks = stored_ticks(meta)
    published = np.array([r.tick_count for r in emu.ticks])
    np.testing.assert_array_equal(ticks, published[: len(ticks)])
    rows = np.array([r.source_row for r in emu.ticks[: len(ticks)]])
    truth = pyirsdk_columns(src, ["SessionTick", "SessionTime", "Speed", "RPM"])
    table = pq.read_table(path)
    for name, values in truth.items():
        np.testing.assert_array_equal(column(table, name), values[rows].astype(column(table, name).dtype))
    return ticks


# -- kill -9 -----------------------------------------------------------------------------------

def test_kill_9_mid_session_loses_at_most_2_s_and_the_restart_recovers_a_proper_session(tmp_path: Path) -> None:
    src = need(W13)
    mm, data = tmp_path / "irsdk.bin", tmp_path / "data"
    emu = Emulator([src], mm, speed=1.0).open()
    p = start_recorder(["record", "--irsdk-file", str(mm), "--data", str(data)], mm)
    try:
        emu.start()
        assert emu.wait_for(lambda: emu.published >= 240, 30)  # 4 s into the session
        os.kill(p.pid, signal.SIGKILL)
        killed_at = emu.ticks[-1].tick_count
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
        emu.stop()
    assert any((data / ".recording").iterdir()), "the killed recorder left its recording"
    assert Store(data).sessions().empty
    # the next start recovers it (and then waits for a sim that is not there, for 0.5 s)
    out = subprocess.run(recorder_cmd("record", "--irsdk-file", str(tmp_path / "none.bin"), "--data", str(data),
                                      "--duration", "0.5"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "stored" in out.stdout
    sessions = Store(data).sessions()
    assert len(sessions) == 1
    meta = Store(data).meta(sessions.id[0])
    assert meta["recovered"] and meta["truncated"] and meta["track"] == "spielberg gp"
    ticks = check_prefix_equals_source(Path(sessions.path[0]), emu, src)
    assert ticks[-1] >= killed_at - 2 * 60, f"lost {killed_at - ticks[-1]} ticks (> 2 s)"
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
    emu = Emulator([src], mm, speed=4.0).open()
    # segments (~25 KB) fit under the limit; the session file (~300 KB) does not
    p = start_recorder(["record", "--irsdk-file", str(mm), "--data", str(data), "--until-gone"], mm,
                       preexec=_file_size_limit(150_000))
    try:
        emu.start()
        out, err = p.communicate(timeout=60)
    finally:
        emu.stop()
    assert p.returncode == 2, (out, err)
    assert "pitbox record: error:" in err and "cannot write the session file" in err
    assert "File too large" in err and "pitbox recover" in err
    assert Store(data).sessions().empty
    out2 = subprocess.run(recorder_cmd("recover", "--data", str(data)), cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert out2.returncode == 0, out2.stderr
    sessions = Store(data).sessions()
    assert len(sessions) == 1
    ticks = check_prefix_equals_source(Path(sessions.path[0]), emu, src)
    assert len(ticks) == len(emu.ticks) == 390  # nothing that was written is lost


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
    emu = Emulator([src], mm, speed=1.0).open()
    p = start_recorder(["record", "--irsdk-file", str(mm), "--data", str(data), "--until-gone", "--flush-s", "0.25"],
                       mm, preexec=preexec)
    try:
        emu.start()
        rec_root = data / ".recording"
        wait_until(lambda: rec_root.is_dir() and any(rec_root.glob("*/seg-000003.arrow")), 30, "4 segments")
        (folder,) = list(rec_root.iterdir())
        folder.chmod(0o555)  # the folder turns read-only under the recorder
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        emu.stop()
    assert p.returncode == 2, (out, err)
    assert "cannot write a recording segment" in err and "Permission denied" in err
    written = sorted(folder.glob("seg-*.arrow"))
    assert len(written) >= 4
    folder.chmod(0o755)
    assert subprocess.run(recorder_cmd("recover", "--data", str(data)), cwd=ROOT, capture_output=True,
                          timeout=60).returncode == 0
    sessions = Store(data).sessions()
    assert len(sessions) == 1
    ticks = check_prefix_equals_source(Path(sessions.path[0]), emu, src)
    assert len(ticks) >= 4 * 15  # every segment written before the error is in the session


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
