"""Voiced coaching: speech engines, text for the ear, when to speak, voice commands.

>>> from pitbox.voice import Voice, tip_phrase
>>> v = Voice()                                   # ElevenLabs with a key, else the offline voice
>>> sp = v.synthesize(tip_phrase(tip))            # Speech: .wav (bytes), .duration_s, .engine, .cached

Submodules: :mod:`~pitbox.voice.text` (ear text), :mod:`~pitbox.voice.voice` (engines,
fallback, cache), :mod:`~pitbox.voice.scheduler` (I/O-free: when to speak),
:mod:`~pitbox.voice.player` (where the audio goes), :mod:`~pitbox.voice.commands` (spoken
commands), :mod:`~pitbox.voice.coach` (the live glue). See docs/voice.md.

Names are imported on first use so that ``pitbox --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Voice": "pitbox.voice.voice",
    "Speech": "pitbox.voice.voice",
    "ENGINES": "pitbox.voice.voice",
    "tip_phrase": "pitbox.voice.text",
    "ear_text": "pitbox.voice.text",
    "say_seconds": "pitbox.voice.text",
    "VoiceError": "pitbox.voice.errors",
    "CloudError": "pitbox.voice.errors",
    "Scheduler": "pitbox.voice.scheduler",
    "QuietZones": "pitbox.voice.scheduler",
    "Message": "pitbox.voice.scheduler",
    "voice_message": "pitbox.voice.scheduler",
    "CommandRecognizer": "pitbox.voice.commands",
    "VoiceCoach": "pitbox.voice.coach",
    "make_player": "pitbox.voice.player",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pitbox.voice' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
