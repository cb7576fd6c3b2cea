"""Settings, with one documented precedence: argument, then environment, then default.

=================  =====================  =========================================
setting            environment            default
=================  =====================  =========================================
data folder        ``PITBOX_DATA``        ``data`` (relative to the working folder)
token secret       ``PITBOX_TOKEN_SECRET``  none (stream open on localhost only)
ElevenLabs key     ``ELEVENLABS_API_KEY``   none (offline voice)
ElevenLabs server  ``ELEVENLABS_BASE_URL``  the SDK's (api.elevenlabs.io)
phrase cache       ``PITBOX_VOICE_CACHE``   the user cache folder + ``pitbox/voice``
iRacing telemetry  ``PITBOX_TELEMETRY``   ``~/Documents/iRacing/telemetry``
corner files       ``PITBOX_TRACKS``      the shipped ones only (see :mod:`pitbox.tracks`)
=================  =====================  =========================================
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir(arg: str | os.PathLike[str] | None = None) -> Path:
    """The store folder: ``--data`` argument, else ``PITBOX_DATA``, else ``./data``."""
    if arg is not None:
        return Path(arg)
    env = os.environ.get("PITBOX_DATA")
    return Path(env) if env else Path("data")


def telemetry_dir(arg: str | os.PathLike[str] | None = None) -> Path:
    """iRacing's telemetry folder (where it writes ``.ibt`` files)."""
    if arg is not None:
        return Path(arg)
    env = os.environ.get("PITBOX_TELEMETRY")
    return Path(env) if env else Path.home() / "Documents" / "iRacing" / "telemetry"
