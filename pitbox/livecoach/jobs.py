"""What the core asks of the after-lap analysis and what comes back: plain picklable data.

Every job and result carries the core's ``session`` key (a counter); results for a session
the core has left are ignored. The analyst handles jobs in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pitbox.livecoach.reference import ReferenceLap


@dataclass
class NewSession:
    """A session starts: rows restart at 0. ``meta``/``info`` may come later (SessionInfo)."""

    session: int
    meta: dict[str, Any] | None = None
    info: dict[str, Any] | None = None
    tick_rate: float = 60.0


@dataclass
class SessionInfo:
    """The session's metadata (``id``, ``track``, ``car`` …) and/or parsed YAML arrived."""

    session: int
    meta: dict[str, Any] | None = None
    info: dict[str, Any] | None = None


@dataclass
class Rows:
    """More rows of the session (a structured array of the channels the coach keeps)."""

    session: int
    first_row: int
    rows: np.ndarray


@dataclass
class LapDone:
    """A lap ended at the line: ``crossing_row`` is the first row of the next lap."""

    session: int
    crossing_row: int
    lap: int
    reference_kind: str
    reference_lap: str | None


@dataclass
class Coach:
    """Coach the lap that ended at ``crossing_row`` on the session cut after ``cut_row``
    (inclusive), the tick ``cut_tick``."""

    session: int
    crossing_row: int
    cut_row: int
    cut_tick: int
    reference_kind: str
    reference_lap: str | None


@dataclass
class SetReference:
    """Switch the reference (``kind`` with ``lap`` = SESSION:LAP for kind ``lap``)."""

    session: int
    kind: str
    lap: str | None
    seq: int


@dataclass
class LapResult:
    session: int
    crossing_row: int
    row: dict[str, Any] | None  #: the completed lap's lap-table row
    best_lap_s: float | None
    reference: ReferenceLap | None = None  #: a new reference (session best / optimal improved)


@dataclass
class CoachResult:
    session: int
    crossing_row: int
    cut_tick: int
    lap_index: int | None
    lap: int | None
    tips: list[dict[str, Any]] = field(default_factory=list)
    corner_row: list[dict[str, Any]] = field(default_factory=list)  #: the lap's per-corner table rows
    reference_label: str | None = None
    overrun_m: float | None = None  #: how far past the line the last corner's segment runs
    elapsed_s: float = 0.0
    error: str | None = None
    reference: ReferenceLap | None = None


@dataclass
class ReferenceResult:
    session: int
    seq: int
    kind: str
    lap: str | None
    reference: ReferenceLap | None
    error: str | None = None


@dataclass
class Done:
    """The analyst finished a batch of ``jobs`` jobs (sent after their results)."""

    jobs: int
