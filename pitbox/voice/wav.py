"""WAV bytes in and out (mono PCM16), with the standard library's :mod:`wave`.

Every engine hands back a RIFF WAV file in memory so any player (``winsound``, ``aplay``,
a browser's ``<audio>``) plays it without a decoder.
"""

from __future__ import annotations

import io
import wave

import numpy as np

from pitbox.voice.errors import VoiceError


def pcm_to_wav(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """Raw little-endian PCM16 samples as a RIFF WAV file."""
    if len(pcm) % (2 * channels):
        pcm = pcm[: len(pcm) - len(pcm) % (2 * channels)]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm)
    return buf.getvalue()


def samples_to_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """Float samples in [-1, 1] (or int16) as a mono PCM16 WAV file."""
    x = np.asarray(samples)
    if x.dtype.kind == "f":
        x = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    return pcm_to_wav(x.astype("<i2").tobytes(), sample_rate)


def read_wav(data: bytes, name: str = "<audio>") -> tuple[np.ndarray, int]:
    """A WAV file's samples as mono int16 (channels averaged) and its sample rate [Hz].
    Raises :class:`VoiceError` naming ``name`` when it is not 8- or 16-bit PCM WAV."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            width, ch, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise VoiceError(f"{name}: expected a PCM WAV file ({exc})") from None
    if width == 2:
        x = np.frombuffer(raw, "<i2")
    elif width == 1:
        x = ((np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    else:
        raise VoiceError(f"{name}: expected 8- or 16-bit PCM WAV, found {8 * width}-bit samples")
    if ch > 1:
        x = x[: len(x) - len(x) % ch].reshape(-1, ch).mean(axis=1).astype(np.int16)
    return x, rate


def wav_duration(data: bytes) -> float:
    """Length of a WAV file [s] (0 for empty bytes)."""
    if not data:
        return 0.0
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.getnframes() / float(w.getframerate())


def wav_info(data: bytes) -> tuple[int, float]:
    """(sample rate [Hz], duration [s]) of a WAV file."""
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.getframerate(), w.getnframes() / float(w.getframerate())


def resample(x: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    """Resample int16 or float samples from ``rate`` to ``to_rate`` [Hz] (polyphase filter)."""
    if rate == to_rate:
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(rate), int(to_rate))
    y = resample_poly(x.astype(np.float64), to_rate // g, rate // g)
    if x.dtype == np.int16:
        return np.clip(np.round(y), -32768, 32767).astype(np.int16)
    return y


def trim_silence(wav: bytes, threshold: float = 0.01, keep_s: float = 0.04) -> bytes:
    """The WAV file without the silence before and after the speech (samples under
    ``threshold`` of full scale), keeping ``keep_s`` [s] on each side, so its duration is
    the time the speech really takes."""
    x, rate = read_wav(wav)
    loud = np.nonzero(np.abs(x.astype(np.int32)) > threshold * 32767)[0]
    if len(loud) == 0:
        return wav
    keep = int(keep_s * rate)
    a, b = max(int(loud[0]) - keep, 0), min(int(loud[-1]) + keep + 1, len(x))
    if a == 0 and b == len(x):
        return wav
    return pcm_to_wav(x[a:b].astype("<i2").tobytes(), rate)
