"""The voice in the browser: an ipywidgets panel that plays the stream's ``voice`` messages.

>>> panel = VoicePanel()            # off until its toggle is pressed (browsers block autoplay)
>>> display(panel.widget)
>>> panel.on_voice(msg)             # each ``voice`` message (contract A), from any thread

The phrase is made by the same :class:`~pitbox.voice.Voice` (engines, fallback, cache) as
the driver's, from the message's ``spoken`` text, in a background thread, and handed to an
``ipywidgets.Audio`` element with ``autoplay``. Only the latest phrase plays: one that
arrives while the panel is off is skipped, not queued.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


class VoicePanel:
    """A toggle ("voice"), the audio element and the last phrase's text."""

    #: seconds without a phrase after which the worker thread leaves (the next one starts another)
    IDLE_S = 5.0

    def __init__(self, voice: Any = None, enabled: bool = False):
        import ipywidgets as w

        self._voice = voice
        self.toggle = w.ToggleButton(value=enabled, description="voice", icon="volume-up",
                                     tooltip="play the coach's voice in this browser")
        self.audio = w.Audio(value=b"", format="wav", autoplay=True, loop=False, controls=False)
        self.audio.add_class("pitbox-voice-audio")
        self.label = w.HTML(value="")
        self.widget = w.HBox([self.toggle, self.label, self.audio])
        self.widget.add_class("pitbox-voice")
        self.played: list[dict[str, Any]] = []  #: messages handed to the audio element
        self._lock = threading.Lock()
        self._latest: Mapping[str, Any] | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def voice(self) -> Any:
        if self._voice is None:
            from pitbox.voice.voice import Voice

            self._voice = Voice(normalise=False)
        return self._voice

    def on_voice(self, msg: Mapping[str, Any]) -> None:
        """Play a ``voice`` message (when the toggle is on)."""
        if not self.toggle.value or self._closed:
            return
        with self._lock:
            self._latest = msg
            if self._thread is None:  # the worker leaves only under the lock, so none is about to
                self._thread = threading.Thread(target=self._run, name="pitbox-voice-panel", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.IDLE_S)
            self._wake.clear()
            with self._lock:
                msg, self._latest = self._latest, None
                if msg is None:  # idle: leave, and say so under the lock (the next phrase starts a new worker)
                    self._thread = None
                    return
            try:
                sp = self.voice.synthesize(str(msg.get("spoken") or msg.get("text") or ""))
            except Exception:  # the page must keep going without the voice
                log.exception("voice panel: cannot synthesize %r", msg.get("text"))
                continue
            if sp.wav:
                self.audio.value = b""  # the same phrase twice must play twice
                self.audio.value = sp.wav
            self.label.value = f'<span class="pitbox-voice-text">{_esc(str(msg.get("text") or ""))}</span>'
            self.played.append({**msg, "engine": sp.engine, "duration_s": sp.duration_s})

    def stop(self) -> None:
        """Stop playing (the widgets stay on the page); waits for the phrase being made."""
        self._closed = True
        self._wake.set()
        t = self._thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join(10)

    def close(self) -> None:
        self.stop()
        self.widget.close()


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
