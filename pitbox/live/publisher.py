"""The :class:`Publisher` protocol: what the recorder calls on its stream and relay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


class Publisher(Protocol):
    """What the recorder calls each tick and on events; :class:`~pitbox.live.StreamServer`
    and :class:`~pitbox.live.RelayPublisher` both are one. None of these calls blocks."""

    def publish_frame(self, tick: int, session_time: float, values: Mapping[str, object] | np.void) -> None: ...

    def publish_lap(self, row: Mapping[str, object]) -> None: ...

    def publish_session(self, meta: Mapping[str, object]) -> None: ...

    def publish_session_info(self, info: Mapping[str, object] | str | bytes) -> None: ...
