"""Live stream, relay and clients (issue 6).

* :class:`StreamServer`: the recorder's own WebSocket stream (``pitbox record --stream``).
* :class:`Relay` and :class:`RelayPublisher`: a team relay and the recorder's side of it.
* :class:`LiveClient` (async iterator) and :class:`LiveFeed` (thread-backed, notebooks).
* :func:`create_token` / :func:`verify_token`: JWT (HS256) with a ``role`` claim.

See ``docs/live.md`` for the protocol and how the recorder wires these in. The names below
load on first use (``lazy_loader``), so that ``import pitbox.live.cli`` (the command line
building its parser) loads neither numpy, websockets nor jwt.
"""

from __future__ import annotations

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "auth": ["AuthError", "create_token", "new_secret", "verify_token"],
    "client": ["LiveClient", "LiveFeed"],
    "constants": ["DEFAULT_PORT", "RATES", "VERSION"],
    "feed": ["HistoryProvider", "MemoryHistory"],
    "protocol": ["LiveError", "ProtocolError"],
    "publisher": ["Publisher"],
    "relay": ["Relay", "RelayPublisher"],
    "server": ["StreamServer"],
})
