"""Shared fixtures. The real iRacing files live beside the project in ../shared/data/real
and are never copied into it; tests that need them skip with the reason when it is absent.

``PITBOX_REQUIRE_REAL=1`` (set by ``.ci/run``): when that folder is present, a missing
real file fails the tests that need it instead of skipping them, and every file its
``SOURCES.md`` lists must be there (``tests/test_real_data_policy.py``). ``PITBOX_REAL_DATA``
points the tests at another copy of the folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("PITBOX_REAL_DATA") or ROOT.parent / "shared" / "data" / "real")
REQUIRE_REAL = os.environ.get("PITBOX_REQUIRE_REAL") == "1"
REAL_REASON = f"real iRacing files not found at {REAL} (see shared/data/real/SOURCES.md)"


def browser_marks() -> list[pytest.MarkDecorator]:
    """A browser test module's marks: slow, and skipped with the reason when Chromium or
    playwright is missing (an error instead with ``PITBOX_REQUIRE_BROWSER=1``)."""
    from pitbox.dashboard.testing import chromium_missing_reason

    reason = chromium_missing_reason()
    if reason and os.environ.get("PITBOX_REQUIRE_BROWSER") == "1":
        raise RuntimeError(reason)
    return [pytest.mark.slow] + ([pytest.mark.skip(reason=reason)] if reason else [])


def missing_real(what: object = None) -> NoReturn:
    """Skip the calling test for want of a real file, or fail it when ``PITBOX_REQUIRE_REAL=1``
    and the real-data folder is there (so a file is missing from it)."""
    reason = REAL_REASON if what is None else f"real iRacing file {what} not found (see {REAL / 'SOURCES.md'})"
    if REQUIRE_REAL and REAL.is_dir():
        pytest.fail(f"PITBOX_REQUIRE_REAL=1 and {REAL} is present, but: {reason}", pytrace=False)
    pytest.skip(reason)


def listed_real_files() -> list[tuple[str, str | None]]:
    """``(name, sha256)`` of every file ``SOURCES.md`` describes (its ``## N. `name``` headings)."""
    text = (REAL / "SOURCES.md").read_text(encoding="utf-8")
    out = []
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        name = re.match(r"\d+\.\s+`([^`]+)`", block)
        if name:
            digest = re.search(r"sha256 `([0-9a-f]{64})`", block)
            out.append((name.group(1), digest.group(1) if digest else None))
    return out


def real_files(pattern: str) -> list[Path]:
    return sorted(p for p in REAL.glob(pattern) if not p.name.startswith("invalid")) if REAL.is_dir() else []


REAL_IBT = real_files("*.ibt")
REAL_DUMPS = real_files("*_livedump.bin")
INVALID_IBT = REAL / "invalid-truncated_teamjorge-ibt.ibt"
#: The best file for lap splitting: 2 full laps, a reset to the pits, a repeated lap number.
LANGLEY = REAL / "skmodified_langley_iRacingTelemetry_2015-05-28_14-50-46.ibt"
#: A driven 2024 file (partial out-lap, 267 channels).
AMG = REAL / "mercedesamggt4_spielberg-gp_itelem.ibt"


def _param(paths: list[Path], pattern: str) -> list:
    if not paths:
        return [pytest.param(pattern, id="no-real-data")]
    return [pytest.param(p, id=p.stem[:40]) for p in paths]


@pytest.fixture(params=_param(REAL_IBT, "*.ibt"))
def real_ibt(request: pytest.FixtureRequest) -> Path:
    if not isinstance(request.param, Path):
        missing_real(request.param)
    return request.param


@pytest.fixture(params=_param(REAL_DUMPS, "*_livedump.bin"))
def real_dump(request: pytest.FixtureRequest) -> Path:
    if not isinstance(request.param, Path):
        missing_real(request.param)
    return request.param


@pytest.fixture
def real_dir() -> Path:
    if not REAL.is_dir():
        missing_real()
    return REAL


def need(path: Path) -> Path:
    """Skip the calling test unless this real file is present (fail under ``PITBOX_REQUIRE_REAL=1``
    when the folder is there but the file is not)."""
    if not path.is_file():
        missing_real(path.name)
    return path


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``real`` skip when the real-data folder is absent."""
    if item.get_closest_marker("real") is not None and not REAL.is_dir():
        missing_real()


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
