"""Limits a public relay needs, applied to every connection and every message type.

* :class:`Limits`: how many publishers and subscribers, how big and how frequent a client's
  messages may be, and how long a connection may stay silent. One frozen, validated object;
  ``pitbox.live.service`` builds it from the environment.
* :class:`ClientGuard`: one connection's side of it: a token bucket for the message rate,
  the hello and idle timers, and the counters ``/healthz`` reports. It looks at a message's
  size and arrival only, never at its type, so new message types are limited like the old.
  One type has a limit of its own on top: voice commands (``commands_per_s``), which the
  driver hears.
* :class:`ThrottledLog`: one log line per (peer, reason) per minute, for refusals that a
  misconfigured client repeats every few seconds.

What a client sees when it passes a limit (``code`` of the ``error`` message, then the close):

=====================  ====================================================  ==================
limit                  error code                                            then
=====================  ====================================================  ==================
max_publishers         ``too_many_publishers``                               close 1013
max_subscribers        ``too_many_subscribers``                              close 1013
message size           ``too_big`` (up to the frame limit); larger frames    stays open; 1009
message rate           ``rate_limited`` (once per burst; the excess dropped)  stays open
voice command rate     ``rate_limited`` (each command over it, with its id)  stays open
hello_timeout_s        ``hello_timeout``                                     close 1008
idle_timeout_s         ``idle_timeout`` (publishers)                         close 1008
dead peer              (no pong within ping_interval_s)                      close 1011
=====================  ====================================================  ==================
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from pitbox.live.protocol import LiveError

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
#: The message rate is measured over this many seconds: a client may send ``rate * burst_s``
#: messages at once (a publisher re-sending its laps after a reconnect) if it then slows down.
BURST_S = 2.0

ADMIT, DROP_AND_TELL, DROP = 0, 1, 2
#: Voice commands a subscriber may send at once (then :attr:`Limits.commands_per_s`).
COMMAND_BURST = 3


@dataclass(frozen=True)
class Limits:
    """Per-server limits (0 turns a timeout or rate limit off).

    Counts: ``max_publishers`` (drivers publishing at once), ``max_subscribers``. Sizes in
    bytes of one message from a subscriber (``max_message_bytes``) and from a publisher
    (``max_publisher_message_bytes``). Rates in messages per second per connection,
    averaged over :data:`BURST_S`. Timeouts in seconds: ``hello_timeout_s`` (a new
    connection's first message: a publisher's ``hello``, a subscriber's ``subscribe``),
    ``idle_timeout_s`` (a publisher silent that long is closed; the recorder sends a
    ``keepalive`` when it has nothing else to say), ``ping_interval_s`` (WebSocket pings;
    a peer that does not answer within as long again is dropped)."""

    max_publishers: int = 64
    max_subscribers: int = 1000
    max_message_bytes: int = 64 * 1024
    max_publisher_message_bytes: int = 4 << 20
    subscriber_messages_per_s: float = 10.0
    publisher_messages_per_s: float = 240.0
    #: voice commands a subscriber may send per second (bursts of :data:`COMMAND_BURST`): each
    #: is answered in the driver's ears, so a script or a stuck button must not talk over him
    commands_per_s: float = 1.0
    hello_timeout_s: float = 10.0
    idle_timeout_s: float = 120.0
    ping_interval_s: float = 20.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
                raise LiveError(f"limit {f.name}: expected a number >= 0, got {value!r}")
        for name in ("max_message_bytes", "max_publisher_message_bytes"):
            if getattr(self, name) < 1024:
                raise LiveError(f"limit {name}: expected at least 1024 bytes, got {getattr(self, name)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rate(self, role: str) -> float:
        return self.publisher_messages_per_s if role == "publisher" else self.subscriber_messages_per_s

    def max_bytes(self, role: str) -> int:
        return self.max_publisher_message_bytes if role == "publisher" else self.max_message_bytes


class TokenBucket:
    """``rate`` tokens per second, at most ``burst``; :meth:`take` spends one."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class ClientGuard:
    """The limits of one connection (``role`` ``publisher`` or ``subscriber``).

    Call :meth:`admit` for every message received, before decoding it; call
    :meth:`start` once the connection is open (arms the hello/idle timer, which calls
    ``on_timeout(code, message)`` on the event loop) and :meth:`stop` when it ends."""

    def __init__(self, limits: Limits, role: str, peer: str, key: str | None = None):
        self.limits = limits
        self.role = role
        self.peer = peer
        self.key = key  #: fingerprint of the secret that signed the token (None without auth)
        self.name = peer  #: shown in logs; a publisher's becomes its driver id
        rate = limits.rate(role)
        self.now = time.monotonic
        self._bucket = TokenBucket(rate, rate * BURST_S, self.now()) if rate > 0 else None
        self.last_rx = self.now()
        self.received = 0
        self.dropped = 0
        self._in_excess = False
        self._timer: asyncio.TimerHandle | None = None
        self._on_timeout: Callable[[str, str], None] | None = None

    # -- rate ------------------------------------------------------------------------
    def admit(self) -> int:
        """:data:`ADMIT` a message, or drop it: :data:`DROP_AND_TELL` for the first one
        over the rate (send the client :meth:`rate_error` and log it once per connection),
        :data:`DROP` for the rest of that excess."""
        now = self.now()
        self.last_rx = now
        if self._bucket is None or self._bucket.take(now):
            self.received += 1
            self._in_excess = False
            if self.received == 1 and self._timer is not None:  # from the hello timeout to the idle one
                self._timer.cancel()
                self._timer = None
                self._arm(self._timeout_s())
            return ADMIT
        self.dropped += 1
        if self._in_excess:
            return DROP
        self._in_excess = True
        if self.dropped == 1:
            log.warning("%s %s: over the message rate limit (%g/s); the excess is dropped", self.role, self.name,
                        self._bucket.rate)
        return DROP_AND_TELL

    def rate_error(self) -> tuple[str, str]:
        assert self._bucket is not None
        return ("rate_limited", f"more than {self._bucket.rate:g} messages per second (bursts of "
                f"{self._bucket.burst:g}); {self.dropped} message(s) dropped so far")

    # -- timeouts --------------------------------------------------------------------
    def start(self, on_timeout: Callable[[str, str], None]) -> None:
        self._on_timeout = on_timeout
        self.last_rx = self.now()
        self._arm(self.limits.hello_timeout_s)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.dropped:
            log.info("%s %s: %d message(s) dropped over the rate limit in total", self.role, self.name,
                     self.dropped)

    def _arm(self, delay_s: float) -> None:
        if delay_s > 0:
            self._timer = asyncio.get_running_loop().call_later(delay_s, self._check)

    def _timeout_s(self) -> float:
        if self.received == 0:
            return self.limits.hello_timeout_s
        return self.limits.idle_timeout_s if self.role == "publisher" else 0.0

    def _check(self) -> None:
        self._timer = None
        timeout = self._timeout_s()
        if timeout <= 0:
            return
        quiet = self.now() - self.last_rx
        if quiet < timeout:
            self._arm(timeout - quiet)
            return
        if self.received == 0:
            what = "a publisher's hello" if self.role == "publisher" else "a subscribe message"
            code, message = "hello_timeout", f"expected {what} within {self.limits.hello_timeout_s:g} s"
        else:
            code, message = "idle_timeout", f"no message for {timeout:g} s (send keepalive messages)"
        log.info("%s %s: closed: %s", self.role, self.name, message)
        if self._on_timeout is not None:
            self._on_timeout(code, message)

    @property
    def keepalive_s(self) -> float | None:
        """How often a publisher should send something when idle (a third of the idle
        timeout), or None when there is no idle timeout."""
        t = self.limits.idle_timeout_s
        return t / 3 if t > 0 else None


class ThrottledLog:
    """Logs a (key, message) at most once per ``window_s``; repeats are counted and
    mentioned with the next line for that key."""

    def __init__(self, logger: logging.Logger, window_s: float = 60.0, max_keys: int = 4096):
        self.logger = logger
        self.window_s = window_s
        self.max_keys = max_keys
        self._seen: dict[Any, list[float]] = {}

    def __call__(self, level: int, key: Any, msg: str, *args: Any) -> None:
        now = time.monotonic()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self.window_s:
            entry[1] += 1
            return
        repeats = 0 if entry is None else int(entry[1])
        if len(self._seen) >= self.max_keys:
            self._seen.clear()
        self._seen[key] = [now, 0]
        if repeats:
            msg += " (%d more like it in the last %.0f s)"
            args = (*args, repeats, now - entry[0])  # type: ignore[index]
        self.logger.log(level, msg, *args)
