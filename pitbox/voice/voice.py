"""``Voice``: one call that turns text into speech, whichever engine can make it now.

>>> v = Voice()                                  # ElevenLabs when a key is set, else offline
>>> sp = v.synthesize("T3: brake 20 m later, 0.575 s")
>>> sp.spoken, sp.engine, sp.duration_s, sp.cached
('Turn 3: brake 20 metres later, six tenths', 'local', 2.41, False)

Engines (``engine=``): ``"elevenlabs"`` (cloud), ``"local"`` (pyttsx3), ``"text"`` (no audio),
``"auto"`` (ElevenLabs when a key is given or in ``ELEVENLABS_API_KEY``, else local, else
text). It never raises for a voice that cannot speak: it falls back, with one log line.

**Fallback and recovery.** When the cloud fails (after its own retries within
``budget_s``), or answers slower than the budget, the phrase is made by the local voice and
the cloud is skipped for ``retry_after_s`` (doubling after each further failure, at most
5 min); the next call after that tries the cloud again, and once it answers, it is used
again. A rejected key (HTTP 401/403) switches the cloud off for the life of the ``Voice``.

**Cache.** Every phrase is stored as WAV under its key (spoken text, engine, voice, model,
format; :mod:`pitbox.voice.cache`); a cloud phrase in the cache is used even while the cloud
is down.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pitbox.voice.cache import PhraseCache, default_cache_dir, phrase_key
from pitbox.voice.engines import (
    DEFAULT_FORMAT,
    DEFAULT_LOCAL_RATE_WPM,
    CloudEngine,
    LocalEngine,
    estimate_duration_s,
)
from pitbox.voice.errors import CloudError, VoiceError
from pitbox.voice.text import ear_text
from pitbox.voice.wav import trim_silence, wav_info

log = logging.getLogger(__name__)

ENGINES = ("auto", "elevenlabs", "local", "text")
#: default time the cloud gets for one phrase, retries included [s]
DEFAULT_BUDGET_S = 3.0
#: default timeout of one cloud call [s]
DEFAULT_TIMEOUT_S = 2.0
#: how long the cloud is skipped after a failure [s] (doubles per further failure)
DEFAULT_RETRY_AFTER_S = 20.0
MAX_RETRY_AFTER_S = 300.0


@dataclass
class Speech:
    """One synthesized phrase. ``wav`` is a mono PCM16 RIFF WAV file (``b""`` for the text
    engine, whose ``duration_s`` is an estimate from the words)."""

    text: str  #: as given
    spoken: str  #: the text made for the ear: what was synthesized
    wav: bytes
    sample_rate: int  #: Hz (0 for the text engine)
    duration_s: float  #: length of the audio [s]
    engine: str  #: "elevenlabs", "local" or "text"
    cached: bool  #: came from the phrase cache
    latency_s: float  #: from the call to audio ready [s]
    voice: str = ""
    model: str = ""
    notes: list[str] = field(default_factory=list)  #: why a fallback happened, if one did

    def to_dict(self) -> dict[str, Any]:
        """Everything but the audio, JSON-safe."""
        return {"text": self.text, "spoken": self.spoken, "engine": self.engine, "voice": self.voice,
                "model": self.model, "cached": self.cached, "latency_s": round(self.latency_s, 4),
                "duration_s": round(self.duration_s, 3), "sample_rate": self.sample_rate, "bytes": len(self.wav),
                "notes": list(self.notes)}


class Voice:
    """Speech through ElevenLabs, the local voice or text, with fallback, recovery and a
    phrase cache (module docstring).

    ``voice``/``model`` name the cloud voice id and model (default ElevenLabs' "George" and
    ``eleven_flash_v2_5``) when the cloud is used, or the local voice (``local_voice`` names it
    separately when the cloud is primary). ``cache_dir=False`` turns the cache off.
    ``base_url`` (or ``ELEVENLABS_BASE_URL``) points the official client elsewhere.
    ``budget_s`` [s] is what one phrase may take from the cloud, retries included.
    """

    def __init__(self, engine: str = "auto", voice: str | None = None, model: str | None = None,
                 cache_dir: str | os.PathLike[str] | None | bool = None, api_key: str | None = None,
                 base_url: str | None = None, *, output_format: str = DEFAULT_FORMAT,
                 budget_s: float = DEFAULT_BUDGET_S, timeout_s: float = DEFAULT_TIMEOUT_S,
                 local_voice: str | None = None, rate_wpm: int = DEFAULT_LOCAL_RATE_WPM,
                 retry_after_s: float = DEFAULT_RETRY_AFTER_S, normalise: bool = True):
        if engine not in ENGINES:
            raise VoiceError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
        self.requested = engine
        self.budget_s = float(budget_s)
        self.normalise = normalise
        self.retry_after_s = float(retry_after_s)
        key = api_key if api_key is not None else os.environ.get("ELEVENLABS_API_KEY") or None
        base = base_url if base_url is not None else os.environ.get("ELEVENLABS_BASE_URL") or None
        self._lock = threading.Lock()
        self._cloud: CloudEngine | None = None
        self._cloud_off: str | None = None  # reason the cloud is off for good
        self._down_until = 0.0
        self._failures = 0
        self._local_failed: str | None = None
        self.events: list[tuple[float, str]] = []  #: (monotonic time, what happened): fallbacks and recoveries
        want_cloud = engine in ("auto", "elevenlabs")
        if want_cloud and key:
            self._cloud = CloudEngine(key, voice, model, base, output_format, timeout_s)
        elif engine == "elevenlabs":
            log.warning("voice: no ElevenLabs key (api_key or ELEVENLABS_API_KEY); using the local voice")
        elif engine == "auto":
            log.info("voice: no ElevenLabs key (api_key or ELEVENLABS_API_KEY); using the local voice")
        lv = local_voice if self._cloud is not None else (local_voice or voice)
        self._local = LocalEngine(lv, rate_wpm) if engine != "text" else None
        if cache_dir is False:
            self.cache: PhraseCache | None = None
        else:
            self.cache = PhraseCache(default_cache_dir() if cache_dir in (None, True) else Path(cache_dir))

    # -- state ------------------------------------------------------------------------

    @property
    def primary(self) -> str:
        """The engine this voice prefers: "elevenlabs", "local" or "text"."""
        if self._cloud is not None:
            return "elevenlabs"
        return "local" if self._local is not None else "text"

    def cloud_available(self) -> bool:
        """True when the next phrase may go to the cloud (not off, not in its wait after a failure)."""
        return self._cloud is not None and self._cloud_off is None and time.monotonic() >= self._down_until

    def _note(self, what: str) -> None:
        self.events.append((time.monotonic(), what))

    def _cloud_failed(self, exc: CloudError) -> None:
        with self._lock:
            if not exc.retry:
                if self._cloud_off is None:
                    log.error("voice: %s; using the local voice from now on", exc)
                    self._note(f"cloud off: {exc}")
                self._cloud_off = str(exc)
                return
            wait = min(self.retry_after_s * 2 ** self._failures, MAX_RETRY_AFTER_S)
            self._failures += 1
            self._down_until = time.monotonic() + wait
            log.warning("voice: %s; using the local voice, trying the cloud again in %.0f s", exc, wait)
            self._note(f"fallback: {exc}")

    def _cloud_ok(self) -> None:
        with self._lock:
            if self._failures:
                log.warning("voice: ElevenLabs answers again; using it")
                self._note("recovered")
            self._failures = 0
            self._down_until = 0.0

    # -- synthesis ----------------------------------------------------------------------

    def spoken_text(self, text: str) -> str:
        """What will be synthesized for ``text`` (:func:`ear_text` unless ``normalise`` is off)."""
        return ear_text(text) if self.normalise else text.strip()

    def cached(self, text: str) -> bool:
        """True when the phrase is in the cache for the engine that would say it now."""
        if self.cache is None:
            return False
        spoken = self.spoken_text(text)
        for eng in self._order():
            if eng == "text":
                return False
            meta = self._meta(eng)
            if self.cache.get(eng, phrase_key(spoken, eng, *meta)) is not None:
                return True
            if eng == "elevenlabs" and not self.cloud_available():
                continue
            return False
        return False

    def _meta(self, engine: str) -> tuple[str, str, str]:
        if engine == "elevenlabs" and self._cloud is not None:
            return self._cloud.voice, self._cloud.model, self._cloud.output_format
        if engine == "local" and self._local is not None:
            return self._local.voice, self._local.model, "wav"
        return "", "", ""

    def _order(self) -> list[str]:
        order = []
        if self._cloud is not None and self._cloud_off is None:
            order.append("elevenlabs")
        if self._local is not None and self._local_failed is None:
            order.append("local")
        order.append("text")
        return order

    def synthesize(self, text: str, budget_s: float | None = None) -> Speech:
        """Speech for ``text`` (normalised for the ear), from the cache when it is there.
        ``budget_s`` overrides the cloud's time budget for this phrase [s]. Never raises
        because an engine failed: the next one speaks (the text engine cannot fail)."""
        t0 = time.perf_counter()
        spoken = self.spoken_text(text)
        notes: list[str] = []
        if not spoken:
            return Speech(text, spoken, b"", 0, 0.0, "text", False, time.perf_counter() - t0)
        for eng in self._order():
            if eng == "text":
                return Speech(text, spoken, b"", 0, estimate_duration_s(spoken), "text", False,
                              time.perf_counter() - t0, notes=notes)
            voice, model, fmt = self._meta(eng)
            key = phrase_key(spoken, eng, voice, model, fmt)
            hit = self.cache.get(eng, key) if self.cache is not None else None
            if hit is not None:
                return self._speech(text, spoken, hit, eng, True, t0, voice, model, notes)
            if eng == "elevenlabs":
                if not self.cloud_available():
                    continue
                assert self._cloud is not None
                try:
                    wav = self._cloud.synthesize(spoken, self.budget_s if budget_s is None else budget_s)
                except CloudError as exc:
                    self._cloud_failed(exc)
                    notes.append(str(exc))
                    continue
                self._cloud_ok()
            else:
                assert self._local is not None
                try:
                    wav = self._local.synthesize(spoken)
                except VoiceError as exc:
                    if self._local_failed is None:
                        log.error("voice: %s; speaking as text only", exc)
                    self._local_failed = str(exc)
                    notes.append(str(exc))
                    continue
            wav = trim_silence(wav)
            if self.cache is not None:
                self.cache.put(eng, key, wav)
            return self._speech(text, spoken, wav, eng, False, t0, voice, model, notes)
        raise AssertionError("unreachable: the text engine always answers")  # pragma: no cover

    @staticmethod
    def _speech(text: str, spoken: str, wav: bytes, engine: str, cached: bool, t0: float, voice: str, model: str,
                notes: list[str]) -> Speech:
        rate, dur = wav_info(wav)
        return Speech(text, spoken, wav, rate, dur, engine, cached, time.perf_counter() - t0, voice, model, notes)

    def warm_up(self) -> None:
        """Import the cloud SDK and start the local engine now, not on the first phrase."""
        if self._cloud is not None:
            try:
                self._cloud.client()
            except CloudError as exc:
                self._cloud_failed(exc)
        if self._local is not None:
            try:
                with LocalEngine._lock:
                    self._local._init()
            except VoiceError as exc:
                self._local_failed = str(exc)
                log.error("voice: %s; speaking as text only", exc)
