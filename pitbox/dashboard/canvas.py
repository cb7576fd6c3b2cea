"""The live canvas: an anywidget that draws the live traces, the map, the delta bar and the
last braking zone (``mode="driver"``) or the team strip and map (``mode="team"``) from
float32 samples, fed by an :class:`~pitbox.dashboard.sync.AckPump`."""

from __future__ import annotations

from importlib import resources
from typing import Any

import anywidget
import traitlets

from pitbox.dashboard.sync import AckPump, Build


def _esm() -> str:
    return resources.files(__package__).joinpath("static/live.js").read_text(encoding="utf-8")


class LiveCanvas(anywidget.AnyWidget):
    """The canvas widget; ``attach(build)`` starts pushing ``build(full)`` updates to it."""

    _esm = _esm()
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
