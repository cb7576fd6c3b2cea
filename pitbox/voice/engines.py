"""The three speech engines behind :class:`pitbox.voice.Voice`.

* :class:`CloudEngine`: ElevenLabs through its official SDK (imported on first use: it
  takes about 2 s). The key is passed explicitly (the SDK reads ``ELEVENLABS_API_KEY`` only
  when it is imported). The SDK retries neither a 429 nor a timeout, so this engine retries
  them itself, with exponential backoff, inside a time budget, each call with its own
  timeout; a rejected key or a bad request is not retried.
* :class:`LocalEngine`: an offline voice through ``pyttsx3`` (espeak-ng on Linux, SAPI5 on
  Windows, NSSpeech on macOS), one synthesis at a time.
* :class:`TextEngine`: no audio; the duration is estimated from the words.

Each returns a mono PCM16 RIFF WAV file as bytes.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pitbox.voice.errors import CloudError, VoiceError
from pitbox.voice.wav import pcm_to_wav, read_wav

log = logging.getLogger(__name__)

#: ElevenLabs' "George" premade voice, available on every account.
DEFAULT_CLOUD_VOICE = "JBFqnCBsd6RMkjVDRZzb"
DEFAULT_MODEL = "eleven_flash_v2_5"
#: raw PCM16 at 22,050 Hz: offered on every ElevenLabs tier, wrapped into WAV here
DEFAULT_FORMAT = "pcm_22050"
DEFAULT_LOCAL_RATE_WPM = 180
#: speaking rate the text engine assumes for its durations [words/s]
TEXT_WORDS_PER_S = 2.9
_FORMAT = re.compile(r"(pcm|wav)_(8000|16000|22050|24000|32000|44100|48000)")


def parse_format(fmt: str) -> tuple[str, int]:
    """("pcm" | "wav", sample rate [Hz]) of an ElevenLabs output format this module plays
    without a decoder; anything else raises :class:`VoiceError`."""
    m = _FORMAT.fullmatch(fmt)
    if not m:
        raise VoiceError(f"output format {fmt!r}: expected pcm_<rate> or wav_<rate> (rate 8000 to 48000 Hz), "
                         "which play without a decoder")
    return m.group(1), int(m.group(2))


class CloudEngine:
    """ElevenLabs text to speech. ``synthesize(text, budget_s)`` returns WAV bytes or raises
    :class:`CloudError` once the budget is spent or the failure cannot be retried."""

    name = "elevenlabs"

    def __init__(self, api_key: str, voice: str | None = None, model: str | None = None,
                 base_url: str | None = None, output_format: str = DEFAULT_FORMAT, timeout_s: float = 2.0,
                 stream: bool = False):
        self.api_key = api_key
        self.voice = voice or DEFAULT_CLOUD_VOICE
        self.model = model or DEFAULT_MODEL
        self.base_url = base_url.rstrip("/") if base_url else None
        self.output_format = output_format
        self.kind, self.sample_rate = parse_format(output_format)
        self.timeout_s = float(timeout_s)
        self.stream = stream
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        """The SDK client, created on first use (imports ``elevenlabs``)."""
        with self._lock:
            if self._client is None:
                try:
                    from elevenlabs.client import ElevenLabs
                except ImportError as exc:
                    raise CloudError("the ElevenLabs SDK is not installed (pip install 'pitbox[voice]')",
                                     retry=False) from exc
                kwargs: dict[str, Any] = {"api_key": self.api_key, "timeout": self.timeout_s}
                if self.base_url:
                    kwargs["base_url"] = self.base_url
                self._client = ElevenLabs(**kwargs)
            return self._client

    def _call(self, text: str, timeout_s: float) -> bytes:
        client = self.client()
        tts = client.text_to_speech
        fn = tts.stream if self.stream else tts.convert
        chunks = fn(self.voice, text=text, model_id=self.model, output_format=self.output_format,
                    request_options={"timeout_in_seconds": max(timeout_s, 0.05), "max_retries": 0})
        return b"".join(chunks)  # the SDK sends nothing until its generator is iterated

    def synthesize(self, text: str, budget_s: float) -> bytes:
        """WAV bytes for ``text``, retrying 429, 408, 5xx, timeouts and dropped connections
        with backoff (0.2 s, 0.4 s, … or the server's ``Retry-After``) until ``budget_s`` [s]
        is spent; each call's timeout is the smaller of ``timeout_s`` and what is left."""
        import httpx
        from elevenlabs.core.api_error import ApiError

        deadline = time.monotonic() + budget_s
        attempt = 0
        last = "no attempt"
        status: int | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0.02:
                raise CloudError(f"ElevenLabs: no answer within the {budget_s:.1f} s budget ({attempt} attempts, "
                                 f"last: {last})", status=status, retry=True)
            attempt += 1
            wait: float | None = None
            try:
                audio = self._call(text, min(self.timeout_s, left))
                return self._to_wav(audio)
            except ApiError as exc:
                status = exc.status_code
                last = f"HTTP {status}"
                if status in (401, 403):
                    raise CloudError(f"ElevenLabs rejected the API key (HTTP {status}); check ELEVENLABS_API_KEY",
                                     status=status, retry=False) from None
                if status is None or not (status in (408, 409, 429) or status >= 500):
                    raise CloudError(f"ElevenLabs refused the request (HTTP {status}: {_detail(exc.body)})",
                                     status=status, retry=False) from None
                wait = _retry_after(exc.headers)
            except httpx.TimeoutException:
                status, last = None, "timeout"
            except httpx.TransportError as exc:  # refused, dropped, reset
                status, last = None, f"{type(exc).__name__}"
            backoff = wait if wait is not None else min(0.2 * 2 ** (attempt - 1), 2.0)
            left = deadline - time.monotonic()
            if backoff >= left:
                raise CloudError(f"ElevenLabs: no answer within the {budget_s:.1f} s budget ({attempt} attempts, "
                                 f"last: {last})", status=status, retry=True)
            log.debug("ElevenLabs attempt %d failed (%s); retrying in %.2f s", attempt, last, backoff)
            time.sleep(backoff)

    def _to_wav(self, audio: bytes) -> bytes:
        if self.kind == "pcm":
            if not audio:
                raise CloudError("ElevenLabs answered with no audio", retry=True)
            return pcm_to_wav(audio, self.sample_rate)
        x, rate = read_wav(audio, "ElevenLabs answer")
        return pcm_to_wav(x.astype("<i2").tobytes(), rate)


def _retry_after(headers: Any) -> float | None:
    try:
        value = (headers or {}).get("retry-after") or (headers or {}).get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        d = body.get("detail", body)
        if isinstance(d, dict):
            return str(d.get("message") or d.get("status") or d)
        return str(d)
    return str(body)[:200]


def _silence(*args: Any, **kwargs: Any) -> None:
    """Stands in for ``print`` inside pyttsx3's drivers, which print "Audio saved to …"."""
    log.debug("pyttsx3: %s", " ".join(str(a) for a in args))


class EngineUnavailable(VoiceError):
    """The engine cannot start at all here (missing library or system voice)."""


class LocalEngine:
    """An offline voice through pyttsx3. ``voice`` is the platform's voice name or id
    (espeak-ng: ``en-us``, ``en-gb``, ``en-us+f3`` …; SAPI5: a voice's id or name);
    ``rate_wpm`` the speaking rate [words per minute]."""

    name = "local"
    _lock = threading.Lock()  # one pyttsx3 engine per process, never used by two threads

    def __init__(self, voice: str | None = None, rate_wpm: int = DEFAULT_LOCAL_RATE_WPM):
        self.voice = voice or ""
        self.rate_wpm = int(rate_wpm)
        self._engine: Any = None

    @property
    def model(self) -> str:
        return f"pyttsx3-{self.rate_wpm}wpm"

    def _init(self) -> Any:
        if self._engine is None:
            try:
                import pyttsx3
            except ImportError as exc:
                raise EngineUnavailable("the offline voice needs pyttsx3 (pip install 'pitbox[voice]')") from exc
            try:
                engine = pyttsx3.init()
            except Exception as exc:  # a missing espeak-ng library, no SAPI5 …
                raise EngineUnavailable(f"the offline voice cannot start ({exc}); on Linux install espeak-ng") from exc
            for modname in ("pyttsx3.drivers.espeak", "pyttsx3.drivers.sapi5", "pyttsx3.drivers.nsss",
                            "pyttsx3.drivers._espeak"):
                mod = sys.modules.get(modname)
                if mod is not None:
                    mod.print = _silence  # type: ignore[attr-defined]
            self._engine = engine
            # pyttsx3 2.99's espeak driver loses the end of the first phrase a process says when
            # it is longer than its 1 s buffer (the file is written only by the next call): a
            # short first phrase, thrown away, avoids it.
            self._save(engine, "ok")
        return self._engine

    #: longest time one phrase may take to synthesize before the wait is given up [s]
    phrase_timeout_s = 30.0

    @staticmethod
    def _save(engine: Any, text: str) -> bytes:
        driver = _espeak_ready(engine)
        fd, tmp = tempfile.mkstemp(suffix=".wav", prefix="pitbox-voice-")
        os.close(fd)
        path = Path(tmp)
        # pyttsx3's loop has no timeout: it spins until the phrase's last callback. A phrase
        # that never calls back would hold the voice (and this lock) for ever; the watchdog
        # ends the loop instead, and the phrase is reported as not made.
        fired = threading.Event()

        def give_up() -> None:
            fired.set()
            driver.endLoop()

        watchdog = threading.Timer(LocalEngine.phrase_timeout_s, give_up) if driver is not None else None
        try:
            engine.save_to_file(text, str(path))
            if watchdog is not None:
                watchdog.daemon = True
                watchdog.start()
            engine.runAndWait()
            if fired.is_set():
                raise VoiceError(f"the offline voice did not finish {text!r} within "
                                 f"{LocalEngine.phrase_timeout_s:g} s")
            return path.read_bytes()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            path.unlink(missing_ok=True)

    def synthesize(self, text: str) -> bytes:
        """WAV bytes for ``text`` (mono PCM16, the engine's own rate: 22,050 Hz for espeak-ng)."""
        with LocalEngine._lock:
            engine = self._init()
            try:
                if self.voice:
                    engine.setProperty("voice", self.voice)
                engine.setProperty("rate", self.rate_wpm)
            except (ValueError, KeyError) as exc:
                raise VoiceError(f"local voice {self.voice!r}: not available here ({exc})") from None
            data = self._save(engine, text)
        if not data:
            raise VoiceError(f"the offline voice wrote no audio for {text!r}")
        if data[:4] != b"RIFF":
            data = _aiff_to_wav(data)
        x, rate = read_wav(data, "offline voice output")
        if len(x) == 0:
            raise VoiceError(f"the offline voice produced no audio for {text!r}")
        return pcm_to_wav(x.astype("<i2").tobytes(), rate)


#: longest wait for espeak-ng to finish the previous phrase's command [s]
ESPEAK_IDLE_TIMEOUT_S = 10.0


def _espeak_ready(engine: Any) -> Any:
    """Before a phrase on pyttsx3's espeak driver (Linux): wait until espeak-ng is idle
    (:func:`_wait_espeak_idle`). Returns the driver, or None for the other platforms' drivers."""
    mod = sys.modules.get("pyttsx3.drivers._espeak")
    driver = getattr(getattr(engine, "proxy", None), "_driver", None)
    if mod is None or driver is None or not hasattr(driver, "endLoop"):
        return None
    _wait_espeak_idle()
    return driver


def _wait_espeak_idle(timeout_s: float = ESPEAK_IDLE_TIMEOUT_S) -> None:
    """Wait until espeak-ng's synthesis thread has finished the previous phrase.

    pyttsx3 2.99's espeak driver returns from ``runAndWait`` as soon as the last callback of a
    phrase has run, while espeak-ng's own thread is still closing that phrase's command. The
    next ``runAndWait`` starts with ``stop()``, which sees espeak-ng "playing", marks the driver
    as stopping and so cancels the *next* phrase on its first loop: the file comes out empty or
    cut short. It happened only when the espeak thread lost the CPU for those few microseconds
    (a busy machine). Waiting here until espeak-ng is idle removes the race. Only the espeak
    driver has it; on other platforms the module is not loaded and this returns at once.
    """
    mod = sys.modules.get("pyttsx3.drivers._espeak")
    if mod is None:
        return
    deadline = time.monotonic() + timeout_s
    while mod.IsPlaying():
        if time.monotonic() > deadline:
            raise VoiceError(f"the offline voice (espeak-ng) is still busy with the previous phrase after "
                             f"{timeout_s:.0f} s")
        time.sleep(0.001)


def _aiff_to_wav(data: bytes) -> bytes:
    """macOS's NSSpeech writes AIFF; its own ``afconvert`` turns it into WAV."""
    exe = shutil.which("afconvert")
    if not exe:
        raise VoiceError("the offline voice wrote a file that is not WAV, and afconvert is not available")
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.aiff", Path(d) / "out.wav"
        src.write_bytes(data)
        subprocess.run([exe, "-f", "WAVE", "-d", "LEI16", str(src), str(dst)], check=True, capture_output=True)
        return dst.read_bytes()


def estimate_duration_s(text: str) -> float:
    """How long ``text`` takes to say [s] at :data:`TEXT_WORDS_PER_S`, plus 0.3 s."""
    words = len(re.findall(r"[\w']+", text))
    return 0.3 + words / TEXT_WORDS_PER_S if words else 0.0
