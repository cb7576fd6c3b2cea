"""Push-to-talk in the browser: a button (and an optional hotkey) that records the page's
microphone while held and has the kernel recognise the command.

>>> talk = TalkButton(on_command=lambda command, arg: answer_text)   # returns the answer
>>> display(talk)

The page records with ``getUserMedia`` and Web Audio while the button (or ``hotkey``, a
``KeyboardEvent.code`` such as ``"F8"``) is held, resamples to 16 kHz mono PCM16 and sends
the clip to the kernel as one binary buffer; the kernel runs
:class:`~pitbox.voice.commands.CommandRecognizer` (the same recogniser, rejection and
front end as ``pitbox voice hear``) on a worker thread, calls ``on_command(command, arg)``
for a recognised command and shows what it heard and the answer ``on_command`` returned.
A clip is cut after ``max_s`` seconds. ``results`` keeps every
:class:`~pitbox.voice.commands.Recognition`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np
import traitlets

from pitbox.hearing import Hearing, with_hearing

log = logging.getLogger(__name__)

OnCommand = Callable[[str, "int | None"], "str | None"]


def _esm() -> str:
    return resources.files(__package__).joinpath("static/talk.js").read_text(encoding="utf-8")


class TalkButton(Hearing):
    """The push-to-talk widget (module docstring). Its views check that they hear the
    kernel (:mod:`pitbox.hearing`): shown in a ``Slot``, a button the page reports
    deaf is replaced by a new one (``Dashboard`` does)."""

    _esm = with_hearing(_esm())
    heard = traitlets.Unicode("").tag(sync=True)  #: the command recognised, or "nothing recognised"
    answer = traitlets.Unicode("").tag(sync=True)  #: the answer to it
    status = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Unicode("idle").tag(sync=True)
    seq = traitlets.Int(0).tag(sync=True)  #: clips answered
    hotkey = traitlets.Unicode("").tag(sync=True)  #: KeyboardEvent.code held to talk ("" = none)
    max_s = traitlets.Float(8.0).tag(sync=True)  #: longest clip [s]
    #: who answered the last command: "recorder" (the driver's voice coach), "here" or ""
    via = traitlets.Unicode("").tag(sync=True)

    def __init__(self, on_command: OnCommand | None = None, recognizer: Any = None, hotkey: str = "",
                 max_s: float = 8.0, **kwargs: Any):
        super().__init__(hotkey=hotkey, max_s=max_s, **kwargs)
        self.on_command = on_command
        self._recognizer = recognizer
        self.results: list[Any] = []
        self._lock = threading.Lock()
        self.add_class("pitbox-talk-widget")
        self.on_msg(self._on_msg)

    @staticmethod
    def hand_over(old: TalkButton, new: TalkButton) -> None:
        """What ``new``, put in place of ``old`` by a ``Slot``, keeps: the recogniser, the
        results and what the button shows."""
        new._recognizer, new.results = old._recognizer, old.results
        for name in ("heard", "answer", "status", "state", "seq", "via"):
            setattr(new, name, getattr(old, name))

    @property
    def recognizer(self) -> Any:
        if self._recognizer is None:
            from pitbox.voice.commands import CommandRecognizer

            self._recognizer = CommandRecognizer()
        return self._recognizer

    def _on_msg(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        if not isinstance(content, dict) or content.get("type") != "clip" or not buffers:
            return
        rate = int(content.get("rate") or 16000)
        samples = np.frombuffer(bytes(buffers[0]), dtype="<i2").copy()
        self.status, self.state = "recognising…", "recognising"
        threading.Thread(target=self.hear, args=(samples, rate), name="pitbox-talk", daemon=True).start()

    def hear(self, samples: np.ndarray, rate: int) -> Any:
        """Recognise a clip (int16 samples at ``rate`` [Hz]), answer it and show both."""
        with self._lock:
            try:
                r = self.recognizer.recognise(samples, rate)
            except Exception as exc:  # the page must keep going
                log.exception("push-to-talk: cannot recognise the clip")
                self.status, self.state = f"error: {exc}", "error"
                self.seq += 1
                return None
            self.results.append(r)
            answer = ""
            if r.command is not None and self.on_command is not None:
                try:
                    answer = self.on_command(r.command, r.arg) or ""
                except Exception as exc:
                    log.exception("push-to-talk: command %s failed", r.command)
                    answer = f"error: {exc}"
            self.heard = r.phrase if r.command else "nothing recognised"
            self.answer = answer
            self.status = f"{len(samples) / rate:.1f} s"
            self.state = "idle"
            self.seq += 1
            return r
