"""Live stream, relay and clients (issue 6).

* :class:`StreamServer`: the recorder's own WebSocket stream (``pitbox record --stream``).
* :class:`Relay` and :class:`RelayPublisher`: a team relay and the recorder's side of it.
* :class:`LiveClient` (async iterator) and :class:`LiveFeed` (thread-backed, notebooks).
* :func:`create_token` / :func:`verify_token`: JWT (HS256) with a ``role`` claim.

See ``docs/live.md`` for the protocol and how the recorder wires these in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from pitbox.live.auth import AuthError, create_token, new_secret, verify_token
from pitbox.live.client import LiveClient, LiveFeed
from pitbox.live.feed import HistoryProvider, MemoryHistory
from pitbox.live.protocol import DEFAULT_PORT, RATES, VERSION, LiveError, ProtocolError
from pitbox.live.relay import Relay, RelayPublisher
from pitbox.live.server import StreamServer


class Publisher(Protocol):
    """What the recorder calls each tick and on events; :class:`StreamServer` and
    :class:`RelayPublisher` both are one. None of these calls blocks."""

    def publish_frame(self, tick: int, session_time: float, values: Mapping[str, object] | np.void) -> None: ...

    def publish_lap(self, row: Mapping[str, object]) -> None: ...

    def publish_session(self, meta: Mapping[str, object]) -> None: ...

    def publish_session_info(self, info: Mapping[str, object] | str | bytes) -> None: ...


__all__ = [
    "DEFAULT_PORT", "RATES", "VERSION", "AuthError", "HistoryProvider", "LiveClient", "LiveError", "LiveFeed",
    "MemoryHistory", "ProtocolError", "Publisher", "Relay", "RelayPublisher", "StreamServer", "create_token",
    "new_secret", "verify_token",
]
