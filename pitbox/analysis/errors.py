"""Errors of the analysis package (all :class:`~pitbox.errors.PitboxError`, so the CLI
prints them as one line). Messages name the session, lap or track and what was expected."""

from __future__ import annotations

from pitbox.errors import LapNotFound, PitboxError


class AnalysisError(PitboxError):
    """An analysis cannot be done with the data given."""


class BadReference(AnalysisError):
    """A reference lap that cannot be used (missing, incomplete, another track, bad spec)."""


class ReferenceLapNotFound(BadReference, LapNotFound):
    """The reference names a lap index the session does not have."""


class TrackMismatch(BadReference):
    """Two laps from different tracks (or configurations) cannot be compared."""


class NoValidLap(AnalysisError):
    """A session has no valid complete lap to serve as best lap or reference."""
