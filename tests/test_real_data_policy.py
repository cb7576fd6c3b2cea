"""Real-data tests skip when ../shared/data/real is absent, and with ``PITBOX_REQUIRE_REAL=1``
(CI) fail when the folder is present but a file is missing. Checked by running pytest on the
probes below in a child process, against a copy of the folder's ``SOURCES.md`` with no file
beside it (``PITBOX_REAL_DATA``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LANGLEY, REAL, REQUIRE_REAL, listed_real_files, need

HERE = Path(__file__).resolve()


# -- probes: ordinary real-data tests, run here as well as in the child processes ----------------

def test_probe_need(tmp_path: Path) -> None:
    assert need(LANGLEY).stat().st_size > 0


def test_probe_fixture(real_ibt: Path) -> None:
    assert real_ibt.suffix == ".ibt"


@pytest.mark.real
def test_probe_marker() -> None:
    assert REAL.is_dir()


def test_every_listed_real_file_is_present_and_intact() -> None:
    """What SOURCES.md lists is in the folder, byte for byte (its sha256): a file missing
    would otherwise only thin out the tests that glob for files."""
    if not (REAL / "SOURCES.md").is_file():
        pytest.skip(f"real iRacing files not found at {REAL}")
    listed = listed_real_files()
    assert len(listed) >= 12
    missing = [name for name, _ in listed if not (REAL / name).is_file()]
    if missing and not REQUIRE_REAL:
        pytest.skip(f"real files missing from {REAL}: {missing}")
    assert not missing, f"PITBOX_REQUIRE_REAL=1 and {REAL} is present, but these files are missing: {missing}"
    for name, digest in listed:
        if digest is not None:
            assert hashlib.sha256((REAL / name).read_bytes()).hexdigest() == digest, name


# -- the policy, in child processes ---------------------------------------------------------------

def run_probes(real: Path, require: bool) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PITBOX_REQUIRE_REAL", "PYTEST_ADDOPTS")}
    env["PITBOX_REAL_DATA"] = str(real)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # nbmake alone takes seconds to load; the probes need none
    if require:
        env["PITBOX_REQUIRE_REAL"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(HERE), "-q", "-rsf", "-p", "no:cacheprovider", "-p", "pytest_timeout",
                           "-k", "probe or listed"], cwd=HERE.parents[1], env=env, capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def folder_without_files(tmp_path: Path) -> Path:
    if not (REAL / "SOURCES.md").is_file():
        pytest.skip(f"real iRacing files not found at {REAL}")
    real = tmp_path / "real"
    real.mkdir()
    shutil.copy(REAL / "SOURCES.md", real / "SOURCES.md")  # the list, none of the files
    return real


@pytest.mark.slow
def test_missing_real_files_fail_under_require_real(folder_without_files: Path) -> None:
    code, out = run_probes(folder_without_files, require=True)
    assert code == 1, out
    # need() and the file list fail, the fixture errors; the marker's test runs: the folder is there
    assert "2 failed, 1 passed, 3 deselected, 1 error" in out, out
    assert "PITBOX_REQUIRE_REAL=1" in out and LANGLEY.name in out


@pytest.mark.slow
def test_missing_real_files_skip_without_require_real(folder_without_files: Path) -> None:
    code, out = run_probes(folder_without_files, require=False)
    assert code == 0, out
    assert "1 passed, 3 skipped" in out and "failed" not in out, out


@pytest.mark.slow
def test_an_absent_real_folder_skips_even_under_require_real(tmp_path: Path) -> None:
    code, out = run_probes(tmp_path / "nowhere", require=True)
    assert code == 0, out
    assert "4 skipped" in out and "failed" not in out, out
