"""Errors of the team archive (see the policy in :mod:`pitbox.errors`)."""

from __future__ import annotations

from pitbox.errors import PitboxError


class TeamError(PitboxError):
    """A team question that cannot be answered as asked (unknown engine, driver, filter)."""


class LapFileError(PitboxError):
    """A lap file from another tool (CSV, MoTeC CSV, JSON) that cannot be imported.

    The message names the file and, where it applies, the column and what was expected.
    """
