"""The live stream's constants, in a module that imports nothing (the CLI builds its
parser from them without loading numpy, websockets or jwt); :mod:`pitbox.live.protocol`
and :mod:`pitbox.live.auth` re-export them."""

from __future__ import annotations

VERSION = 1  #: protocol version, the ``"v"`` of every message
#: Frame rates a client may ask for [Hz]; the recorder ticks at 60 Hz.
RATES = (60, 30, 10, 1)
TICK_RATE_HZ = 60  #: iRacing's tick rate [Hz]
DEFAULT_PORT = 8765  #: the stream's and the relay's TCP port
ROLES = ("subscriber", "publisher")  #: token roles: read a stream / publish to a relay
ENV_SECRET = "PITBOX_TOKEN_SECRET"  #: environment variable holding the HS256 token secret
