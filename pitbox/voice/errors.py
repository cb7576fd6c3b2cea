"""Voice errors (see :mod:`pitbox.errors` for the policy)."""

from __future__ import annotations

from pitbox.errors import PitboxError


class VoiceError(PitboxError):
    """Speech cannot be made, played or recognised: a bad setting, an unreadable clip, no
    microphone. The message names the setting, file or device and what was expected."""


class CloudError(VoiceError):
    """The ElevenLabs API failed for this call (after retries within the time budget).
    ``status`` is the HTTP status (None for a timeout or a dropped connection); ``retry``
    says whether a later call may succeed (not for a rejected key)."""

    def __init__(self, message: str, status: int | None = None, retry: bool = True):
        self.status = status
        self.retry = retry
        super().__init__(message)
