"""Tokens and request checks for the live stream and the relay.

A token is a JWT signed with HS256 (pyjwt) carrying a ``role`` claim: ``subscriber``
(reads a stream) or ``publisher`` (a recorder publishing to a relay), and usually ``exp``
and ``sub`` (on a publisher token, the driver id). The secret comes from the argument,
else the environment variable ``PITBOX_TOKEN_SECRET``; it must be at least 32 bytes (the
HS256 key length RFC 7518 asks for). ``pitbox token secret`` makes one.

Where a token may travel: ``Authorization: Bearer <token>`` (programs), the ``token``
query parameter or the subprotocol ``bearer.<token>`` (browsers, which cannot set headers
on a WebSocket).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from pitbox.live.protocol import LiveError

ROLES = ("subscriber", "publisher")
ENV_SECRET = "PITBOX_TOKEN_SECRET"
MIN_SECRET_BYTES = 32
ISSUER = "pitbox"
#: The subprotocol a browser offers next to ``bearer.<token>``; the server answers with it.
SUBPROTOCOL = "pitbox.v1"
BEARER_PREFIX = "bearer."


class AuthError(LiveError):
    """A request refused before the WebSocket upgrade; ``status`` is the HTTP status."""

    def __init__(self, status: int, reason: str):
        self.status = status
        self.reason = reason
        super().__init__(f"HTTP {status}: {reason}")


def new_secret() -> str:
    """A fresh random secret (64 hex digits, 256 bits)."""
    return secrets.token_hex(32)


def resolve_secret(secret: str | None) -> str | None:
    """The argument, else ``PITBOX_TOKEN_SECRET``, else None; too short a secret raises."""
    value = secret if secret else os.environ.get(ENV_SECRET) or None
    if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
        source = "token secret (--token-secret)" if secret else ENV_SECRET
        raise LiveError(f"{source}: expected a secret of at least {MIN_SECRET_BYTES} bytes for HS256, "
                        f"got {len(value.encode())}; make one with `pitbox token secret`")
    return value


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise LiveError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")


def create_token(secret: str | None, role: str, *, ttl_s: float | None = 86400.0, subject: str | None = None,
                 now: float | None = None) -> str:
    """A signed token for ``role``, valid ``ttl_s`` seconds (None: no expiry)."""
    _check_role(role)
    key = resolve_secret(secret)
    if key is None:
        raise LiveError(f"token secret: none given; pass --token-secret or set {ENV_SECRET}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"role": role, "iat": issued, "iss": ISSUER}
    if ttl_s is not None:
        if ttl_s <= 0:
            raise LiveError(f"ttl: expected a positive number of seconds, got {ttl_s}")
        claims["exp"] = issued + int(ttl_s)
    if subject is not None:
        claims["sub"] = subject
    return jwt.encode(claims, key, algorithm="HS256")


def verify_token(secret: str, token: str | None, role: str) -> dict[str, Any]:
    """The token's claims when it is signed with ``secret``, unexpired and for ``role``.

    Raises :class:`AuthError` 401 (missing, malformed, forged, expired) or 403 (wrong role).
    """
    if not token:
        raise AuthError(401, "a token is required (Authorization: Bearer, ?token= or subprotocol bearer.<token>)")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=ISSUER,
                            options={"require": ["role", "iat"]})
    except jwt.ExpiredSignatureError:
        raise AuthError(401, "token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError(401, "token signature does not match this server's secret") from None
    except jwt.PyJWTError as exc:
        raise AuthError(401, f"invalid token: {exc}") from None
    if claims.get("role") != role:
        raise AuthError(403, f"token role {claims.get('role')!r} may not do this; expected role {role!r}")
    return claims


def token_from_request(path: str, headers: Mapping[str, str], subprotocols: Sequence[str]) -> str | None:
    """The token a client sent: Authorization header, ``token`` query parameter or
    ``bearer.<token>`` subprotocol (first found)."""
    auth = headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    query = parse_qs(urlsplit(path).query)
    if query.get("token"):
        return query["token"][0]
    for proto in subprotocols:
        if proto.startswith(BEARER_PREFIX) and len(proto) > len(BEARER_PREFIX):
            return proto[len(BEARER_PREFIX):]
    return None


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); False for
    None, empty (all interfaces) and anything else."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class OriginPolicy:
    """Which browser origins may connect. ``allowed`` None: loopback pages only
    (``http(s)://localhost|127.0.0.1|[::1][:port]``); ``"*"`` in it: any origin. A request
    without an ``Origin`` header (a program, not a browser) always passes this check."""

    allowed: tuple[str, ...] | None = None

    def permits(self, origin: str | None) -> bool:
        if origin is None:
            return True
        if self.allowed is None:
            parts = urlsplit(origin)
            return parts.scheme in ("http", "https") and is_loopback(parts.hostname)
        return "*" in self.allowed or origin.rstrip("/") in self.allowed


def origin_policy(origins: Sequence[str] | None) -> OriginPolicy:
    if origins is None:
        return OriginPolicy(None)
    if isinstance(origins, str):
        origins = [origins]
    return OriginPolicy(tuple(o.rstrip("/") for o in origins))
