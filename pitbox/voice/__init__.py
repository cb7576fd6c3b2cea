"""Voiced coaching: speech engines, text for the ear, when to speak, voice commands.

>>> from pitbox.voice import Voice, tip_phrase
>>> v = Voice()                                   # ElevenLabs with a key, else the offline voice
>>> sp = v.synthesize(tip_phrase(tip))            # Speech: .wav (bytes), .duration_s, .engine, .cached

Submodules: :mod:`~pitbox.voice.text` (ear text), :mod:`~pitbox.voice.voice` (engines,
fallback, cache), :mod:`~pitbox.voice.scheduler` (I/O-free: when to speak),
:mod:`~pitbox.voice.player` (where the audio goes), :mod:`~pitbox.voice.commands` (spoken
commands), :mod:`~pitbox.voice.coach` (the live glue). See docs/voice.md.
"""

from __future__ import annotations

import lazy_loader as _lazy

# Names load on first use (lazy_loader), so that ``pitbox --help`` builds its parser
# without numpy, pocketsphinx or the ElevenLabs SDK.
__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "coach": ["VoiceCoach"],
    "commands": ["CommandRecognizer"],
    "errors": ["CloudError", "VoiceError"],
    "player": ["make_player"],
    "scheduler": ["Message", "QuietZones", "Scheduler", "voice_message"],
    "text": ["ear_text", "say_seconds", "tip_phrase"],
    "voice": ["ENGINES", "Speech", "Voice"],
})
