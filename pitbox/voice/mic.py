"""The microphone, through ``sounddevice`` (PortAudio): push-to-talk recordings and, for the
wake phrase, utterances cut by pocketsphinx's voice activity endpointer."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from pitbox.voice.errors import VoiceError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  #: what the recogniser wants [Hz]


def input_device(device: Any = None) -> dict[str, Any]:
    """The input device's description; :class:`VoiceError` when PortAudio or the device is
    missing (the message says which)."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise VoiceError(f"no microphone: sounddevice cannot load PortAudio ({exc}); on Linux install "
                         "libportaudio2") from None
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        which = f"input device {device!r}" if device is not None else "no default input device"
        raise VoiceError(f"no microphone: {which} ({exc}); plug one in or pass --device") from None
    if not info or int(info.get("max_input_channels", 0)) < 1:
        raise VoiceError(f"no microphone: device {info.get('name') if info else device!r} has no input channel")
    return dict(info)


class Microphone:
    """A mono 16 kHz input (``device``: a sounddevice name or index)."""

    def __init__(self, device: Any = None, sample_rate: int = SAMPLE_RATE):
        self.info = input_device(device)
        self.device = device
        self.sample_rate = sample_rate

    def record_until(self, wait: Callable[[], Any], max_s: float = 6.0) -> np.ndarray:
        """Record from now until ``wait()`` returns (e.g. the second Enter) or ``max_s`` [s];
        int16 samples."""
        import sounddevice as sd

        chunks: list[np.ndarray] = []
        done = threading.Event()

        def waiter() -> None:
            try:
                wait()
            finally:
                done.set()

        def callback(indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
            chunks.append(indata[:, 0].copy())

        with sd.InputStream(samplerate=self.sample_rate, channels=1, dtype="int16", device=self.device,
                            callback=callback):
            threading.Thread(target=waiter, daemon=True, name="ptt-wait").start()
            done.wait(max_s)
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def utterances(self) -> Iterator[np.ndarray]:
        """Each stretch of speech, as int16 samples, until interrupted (pocketsphinx's
        ``Endpointer`` decides where speech starts and ends)."""
        import sounddevice as sd
        from pocketsphinx import Endpointer

        ep = Endpointer(sample_rate=self.sample_rate)
        n = ep.frame_bytes // 2
        q: queue.Queue[bytes] = queue.Queue()
        with sd.RawInputStream(samplerate=self.sample_rate, channels=1, dtype="int16", device=self.device,
                               blocksize=n, callback=lambda data, frames, t, st: q.put(bytes(data))):
            speech: list[bytes] = []
            while True:
                frame = q.get()
                if len(frame) < ep.frame_bytes:
                    continue
                out = ep.process(frame)
                if out is not None:
                    speech.append(out)
                if not ep.in_speech and speech:
                    yield np.frombuffer(b"".join(speech), np.int16)
                    speech = []
