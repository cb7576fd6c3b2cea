"""Errors of the video package (:class:`~pitbox.errors.PitboxError`, so the CLI prints them
as one line). Messages name the file or option and what was expected."""

from __future__ import annotations

from pitbox.errors import PitboxError


class VideoError(PitboxError):
    """A video cannot be made: bad size, frame rate or sync, an unreadable source video,
    ffmpeg failing, or the video extra not installed."""
