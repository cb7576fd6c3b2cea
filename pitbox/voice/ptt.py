"""Push-to-talk from the wheel: iRacing's own radio button.

Drivers already bind iRacing's radio push-to-talk ("transmit") to a wheel button. While the
player transmits, the sim's live telemetry says so: ``RadioTransmitCarIdx`` (an int: the car
index of whoever is speaking on the radio, -1 when nobody is; the same in all four real
memory dumps) equals ``PlayerCarIdx`` (the player's car index; from the session YAML's
``DriverInfo.DriverCarIdx`` when the build has no such channel). :class:`RadioPushToTalk`
watches the recorder's frames for that: on the press it starts a microphone clip, on the
release it ends it, and the clip is decoded like the terminal's push-to-talk
(:class:`~pitbox.voice.options.CommandListener`).

It reads two integers per frame and never blocks the frame's thread; the microphone records
on the listener's thread.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

TRANSMIT = "RadioTransmitCarIdx"
PLAYER = "PlayerCarIdx"
_DRIVER_CAR_IDX = re.compile(r"^\s*DriverCarIdx:\s*(-?\d+)", re.M)


def _value(values: Any, name: str) -> int | None:
    """An integer channel of a frame's values (a dict, a numpy structured row, or either with
    the live coach's derived channels), or None when the frame has no such channel."""
    row = values.row if hasattr(values, "row") and hasattr(values, "extra") else values
    names = getattr(getattr(row, "dtype", None), "names", None)
    if names is not None:
        if name not in names:
            return None
        v = row[name]
    else:
        v = row.get(name) if isinstance(row, Mapping) else None
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


class RadioPushToTalk:
    """Clips of ``mic`` (a :class:`~pitbox.voice.mic.Microphone`, or anything with
    ``record_until(wait, max_s)`` and ``sample_rate``) recorded while the player's car
    transmits on iRacing's radio. Feed it the recorder's frames (:meth:`frame`, cheap) and the
    session info (:meth:`session_info`); iterate :meth:`clips` on another thread (the
    listener). A clip is cut after ``max_s`` [s] even if the button is still held."""

    def __init__(self, mic: Any, max_s: float = 6.0):
        self.mic = mic
        self.sample_rate = int(mic.sample_rate)
        self.max_s = float(max_s)
        self.talking = False  #: the player transmits now
        self.presses = 0  #: presses seen
        self.player_idx: int | None = None  #: from the session info (when frames lack PlayerCarIdx)
        self._presses: queue.Queue[bool | None] = queue.Queue()
        self._released = threading.Event()

    def session_info(self, info: Any) -> None:
        """The session YAML (parsed, or its text): the player's car index, for builds whose
        frames have no ``PlayerCarIdx``."""
        idx: Any = None
        if isinstance(info, Mapping):
            idx = (info.get("DriverInfo") or {}).get("DriverCarIdx")
        elif isinstance(info, (str, bytes, bytearray)):
            text = info.decode("latin-1") if isinstance(info, (bytes, bytearray)) else info
            m = _DRIVER_CAR_IDX.search(text)
            idx = m.group(1) if m else None
        try:
            self.player_idx = int(idx) if idx is not None else self.player_idx
        except (TypeError, ValueError):
            pass

    def frame(self, values: Any) -> bool:
        """One frame's values; returns whether the player transmits. A press queues a clip,
        a release ends it."""
        tx = _value(values, TRANSMIT)
        me = _value(values, PLAYER)
        if me is None:
            me = self.player_idx
        talking = tx is not None and me is not None and tx >= 0 and tx == me
        if talking and not self.talking:
            self.presses += 1
            self._released.clear()
            self._presses.put(True)
            log.debug("radio push-to-talk: pressed (car %s)", me)
        elif self.talking and not talking:
            self._released.set()
            log.debug("radio push-to-talk: released")
        self.talking = talking
        return talking

    def clips(self) -> Iterator[Any]:
        """Each clip (int16 samples at :attr:`sample_rate`), from a press to its release;
        ends after :meth:`close`."""
        while True:
            if self._presses.get() is None:
                return
            yield self.mic.record_until(self._released.wait, max_s=self.max_s)

    def close(self) -> None:
        """End :meth:`clips` (after the clip being recorded, which the release ends)."""
        self._released.set()
        self._presses.put(None)
