"""Shared fixtures. The real iRacing files live beside the project in ../shared/data/real
and are never copied into it; tests that need them skip with the reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
REAL_REASON = f"real iRacing files not found at {REAL} (see shared/data/real/SOURCES.md)"


def real_files(pattern: str) -> list[Path]:
    return sorted(p for p in REAL.glob(pattern) if not p.name.startswith("invalid")) if REAL.is_dir() else []


REAL_IBT = real_files("*.ibt")
REAL_DUMPS = real_files("*_livedump.bin")
INVALID_IBT = REAL / "invalid-truncated_teamjorge-ibt.ibt"
#: The best file for lap splitting: 2 full laps, a reset to the pits, a repeated lap number.
LANGLEY = REAL / "skmodified_langley_iRacingTelemetry_2015-05-28_14-50-46.ibt"
#: A driven 2024 file (partial out-lap, 267 channels).
AMG = REAL / "mercedesamggt4_spielberg-gp_itelem.ibt"


def _param(paths: list[Path]) -> list:
    if not paths:
        return [pytest.param(None, marks=pytest.mark.skip(reason=REAL_REASON), id="no-real-data")]
    return [pytest.param(p, id=p.stem[:40]) for p in paths]


@pytest.fixture(params=_param(REAL_IBT))
def real_ibt(request: pytest.FixtureRequest) -> Path:
    return request.param


@pytest.fixture(params=_param(REAL_DUMPS))
def real_dump(request: pytest.FixtureRequest) -> Path:
    return request.param


@pytest.fixture
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip(REAL_REASON)
    return REAL


def need(path: Path) -> Path:
    """Skip the calling test unless this real file is present."""
    if not path.is_file():
        pytest.skip(REAL_REASON)
    return path


DEPLOY_REASON = ("container test (builds the relay image and runs it with podman): run `make test-deploy`, "
                 "or set PITBOX_DEPLOY=1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``deploy`` run only under ``make test-deploy`` (PITBOX_DEPLOY=1)."""
    if os.environ.get("PITBOX_DEPLOY") == "1":
        return
    skip = pytest.mark.skip(reason=DEPLOY_REASON)
    for item in items:
        if "deploy" in item.keywords:
            item.add_marker(skip)
