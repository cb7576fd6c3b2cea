"""The live canvas: an anywidget that draws the live traces, the map, the delta bar and the
last braking zone (``mode="driver"``) or the team strip and map (``mode="team"``) from
float32 samples, fed by an :class:`~pitbox.dashboard.sync.AckPump`. Its views check that they
hear the kernel (:mod:`pitbox.hearing`): shown in a :func:`canvas_slot`, a canvas the
page reports deaf is replaced by a new one on the same pump."""

from __future__ import annotations

from importlib import resources
from typing import Any

import traitlets

from pitbox.dashboard.sync import AckPump, Build
from pitbox.hearing import Hearing, Slot, with_hearing


def _esm() -> str:
    return resources.files(__package__).joinpath("static/live.js").read_text(encoding="utf-8")


class LiveCanvas(Hearing):
    """The canvas widget; ``attach(build)`` starts pushing ``build(full)`` updates to it."""

    _esm = with_hearing(_esm())
    mode = traitlets.Unicode("driver").tag(sync=True)

    def __init__(self, mode: str = "driver", **kwargs: Any):
        super().__init__(mode=mode, **kwargs)
        self.pump: AckPump | None = None

    def attach(self, build: Build, **pump_options: Any) -> AckPump:
        """Start the latest-state pump (see :mod:`pitbox.dashboard.sync`)."""
        if self.pump is not None:
            self.pump.stop()
        self.pump = AckPump(self, build, **pump_options)
        return self.pump

    def close(self) -> None:
        if self.pump is not None:
            self.pump.stop()
            self.pump = None
        super().close()


def canvas_slot(mode: str, build: Build, **pump_options: Any) -> Slot[LiveCanvas]:
    """A :class:`~pitbox.hearing.Slot` showing a ``LiveCanvas(mode)`` fed by
    ``build`` (``slot.widget.pump``); a canvas the page reports deaf is replaced by a new one,
    which the same pump feeds from a full snapshot."""

    def hand_over(old: LiveCanvas, new: LiveCanvas) -> None:
        pump, old.pump = old.pump, None
        if pump is not None:
            pump.rebind(new)
            new.pump = pump

    slot: Slot[LiveCanvas] = Slot(lambda: LiveCanvas(mode), on_new=hand_over)
    slot.widget.attach(build, **pump_options)
    return slot
