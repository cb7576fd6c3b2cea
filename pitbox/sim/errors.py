"""The simulator's own error type (the shared ones live in :mod:`pitbox.errors`)."""

from __future__ import annotations

from pitbox.errors import PitboxError


class SimError(PitboxError):
    """Bad simulator input: an unknown track or corner, a malformed fault spec or track file.

    The message names the track, file or spec and says what was expected.
    """
