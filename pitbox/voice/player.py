"""Where the voice goes on the driver's PC: a local audio player.

``make_player("auto")`` picks, in order: ``winsound`` on Windows (WAV, no extra library),
``sounddevice`` when PortAudio finds an output device, ``aplay`` when it is on the PATH, and
otherwise a null player that plays nothing (logged once: the voice then reaches the driver
only through the stream, e.g. the dashboard's audio widget). Every player's ``play`` returns
at once (audio plays in the background) and ``stop`` cuts it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from pitbox.voice.errors import VoiceError
from pitbox.voice.wav import read_wav

log = logging.getLogger(__name__)

PLAYERS = ("auto", "winsound", "sounddevice", "aplay", "null")
#: output latency [s] assumed for each player (from the start call to the first sound)
LATENCY_S = {"winsound": 0.10, "sounddevice": 0.10, "aplay": 0.15, "null": 0.0}


class Player:
    """Plays WAV bytes in the background."""

    name = "null"

    @property
    def latency_s(self) -> float:
        return LATENCY_S.get(self.name, 0.15)

    def play(self, wav: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def close(self) -> None:
        self.stop()


class NullPlayer(Player):
    """Plays nothing; counts what it was given (``played``)."""

    name = "null"

    def __init__(self, reason: str = ""):
        self.reason = reason
        self.played = 0

    def play(self, wav: bytes) -> None:
        self.played += 1


class WinsoundPlayer(Player):
    """Windows' ``winsound`` (WAV files only; asynchronous play needs a file, not memory)."""

    name = "winsound"

    def __init__(self) -> None:
        import winsound  # noqa: F401  (fails off Windows)

        self._dir = Path(tempfile.mkdtemp(prefix="pitbox-voice-"))
        self._n = 0

    def play(self, wav: bytes) -> None:
        import winsound

        self._n += 1
        path = self._dir / f"say-{self._n % 4}.wav"
        winsound.PlaySound(None, 0)
        path.write_bytes(wav)
        winsound.PlaySound(str(path), winsound.SND_FILENAME | winsound.SND_ASYNC | winsound.SND_NODEFAULT)

    def stop(self) -> None:
        import winsound

        winsound.PlaySound(None, 0)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class SounddevicePlayer(Player):
    """PortAudio through ``sounddevice`` (``device``: its name or index, default output)."""

    name = "sounddevice"

    def __init__(self, device: Any = None):
        try:
            import sounddevice as sd
        except (ImportError, OSError) as exc:
            raise VoiceError(f"sounddevice cannot load PortAudio ({exc}); on Linux install libportaudio2") from None
        try:
            sd.query_devices(device, kind="output")
        except (ValueError, sd.PortAudioError) as exc:
            raise VoiceError(f"no audio output device{f' {device!r}' if device is not None else ''} "
                             f"({exc})") from None
        self._sd = sd
        self.device = device

    def play(self, wav: bytes) -> None:
        x, rate = read_wav(wav)
        self._sd.play(x, rate, device=self.device)

    def stop(self) -> None:
        self._sd.stop()


class AplayPlayer(Player):
    """ALSA's ``aplay`` reading the WAV from its standard input (``device``: ``-D`` name)."""

    name = "aplay"

    def __init__(self, device: str | None = None):
        exe = shutil.which("aplay")
        if not exe:
            raise VoiceError("aplay is not on the PATH (Debian: apt-get install alsa-utils)")
        self._cmd = [exe, "-q"] + (["-D", str(device)] if device else []) + ["-"]
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def play(self, wav: bytes) -> None:
        with self._lock:
            self._kill()
            proc = subprocess.Popen(self._cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            self._proc = proc
        threading.Thread(target=_feed, args=(proc, wav), daemon=True, name="aplay-feed").start()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None

    def stop(self) -> None:
        with self._lock:
            self._kill()


def _feed(proc: subprocess.Popen[bytes], wav: bytes) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.write(wav)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass


_WARNED: set[str] = set()


def make_player(kind: str = "auto", device: Any = None) -> Player:
    """A player (module docstring). A named player that cannot work here raises
    :class:`VoiceError`; ``auto`` falls back down the list to the null player, with one log
    line saying why."""
    if kind not in PLAYERS:
        raise VoiceError(f"player {kind!r}: expected one of {', '.join(PLAYERS)}")
    if kind == "null":
        return NullPlayer("asked for")
    if kind == "winsound":
        if sys.platform != "win32":
            raise VoiceError("the winsound player exists on Windows only")
        return WinsoundPlayer()
    if kind == "sounddevice":
        return SounddevicePlayer(device)
    if kind == "aplay":
        return AplayPlayer(device)
    reasons = []
    order = (["winsound"] if sys.platform == "win32" else []) + ["sounddevice", "aplay"]
    for k in order:
        try:
            return make_player(k, device)
        except (VoiceError, ImportError) as exc:
            reasons.append(f"{k}: {exc}")
    reason = "; ".join(reasons)
    if reason not in _WARNED:
        _WARNED.add(reason)
        log.warning("voice: no local audio output (%s); the voice goes to the stream only", reason)
    return NullPlayer(reason)
