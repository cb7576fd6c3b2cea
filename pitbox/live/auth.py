"""Tokens and request checks for the live stream and the relay.

A token is a JWT signed with HS256 (pyjwt) carrying a ``role`` claim: ``subscriber``
(reads a stream) or ``publisher`` (a recorder publishing to a relay), and usually ``exp``
and ``sub`` (on a publisher token, the driver id). A subscriber token may carry ``scope``
(space-separated, as OAuth's): ``command`` lets it send voice commands to a driver's voice
coach (``pitbox token create --role subscriber --scope command``); without it the token
only reads. The secret comes from the argument,
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

from pitbox.live.constants import ENV_SECRET, ROLES
from pitbox.live.protocol import LiveError

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
    """The argument, else ``PITBOX_TOKEN_SECRET``, else the first (current) secret of the
    file named by ``PITBOX_TOKEN_SECRET_FILE``, else None; too short a secret raises."""
    value = secret if secret else os.environ.get(ENV_SECRET) or None
    if value is None and os.environ.get(ENV_SECRET_FILE):
        found = read_secrets_file(os.environ[ENV_SECRET_FILE])
        return found[0] if found else None
    if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
        source = "token secret (--token-secret)" if secret else ENV_SECRET
        raise LiveError(f"{source}: expected a secret of at least {MIN_SECRET_BYTES} bytes for HS256, "
                        f"got {len(value.encode())}; make one with `pitbox token secret`")
    return value


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise LiveError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")


#: Token scopes: ``command`` (a subscriber may send voice commands to every driver's voice
#: coach) or ``command:<driver id>`` (only to that driver's; a token may carry several).
COMMAND_SCOPE = "command"
SCOPES = (COMMAND_SCOPE,)


def has_scope(claims: Mapping[str, Any], scope: str) -> bool:
    """Whether a token's claims grant ``scope`` (its ``scope`` claim: space-separated names)."""
    value = claims.get("scope")
    return isinstance(value, str) and scope in value.split()


def check_scope(name: str) -> str:
    """``name`` when it is a scope a token may carry (:data:`SCOPES`, or ``command:<driver
    id>``); raises :class:`LiveError` otherwise."""
    if name in SCOPES:
        return name
    prefix = COMMAND_SCOPE + ":"
    if isinstance(name, str) and name.startswith(prefix):
        from pitbox.live.protocol import ProtocolError, check_driver_id

        try:
            check_driver_id(name[len(prefix):])
            return name
        except ProtocolError:
            pass
    raise LiveError(f"scope: expected {' or '.join(SCOPES)} or command:<driver id> (letters, digits, _ . -; "
                    f"at most 64), got {name!r}")


def command_drivers(claims: Mapping[str, Any]) -> frozenset[str] | None:
    """The drivers a token may send voice commands to: None for every driver (``command``),
    else the set named by its ``command:<driver id>`` scopes (empty: none)."""
    value = claims.get("scope")
    names = value.split() if isinstance(value, str) else []
    if COMMAND_SCOPE in names:
        return None
    prefix = COMMAND_SCOPE + ":"
    return frozenset(n[len(prefix):] for n in names if n.startswith(prefix) and len(n) > len(prefix))


def create_token(secret: str | None, role: str, *, ttl_s: float | None = 86400.0, subject: str | None = None,
                 now: float | None = None, scope: Sequence[str] = ()) -> str:
    """A signed token for ``role``, valid ``ttl_s`` seconds (None: no expiry); ``scope``:
    what more it may do (:data:`SCOPES`, or ``command:<driver id>``: commands to one driver)."""
    _check_role(role)
    for name in scope:
        check_scope(name)
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
    if scope:
        claims["scope"] = " ".join(dict.fromkeys(scope))
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


ENV_SECRET_PREVIOUS = "PITBOX_TOKEN_SECRET_PREVIOUS"
ENV_SECRET_FILE = "PITBOX_TOKEN_SECRET_FILE"


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a secret (for logs and ``/healthz``): the first 8
    hex digits of its SHA-256."""
    import hashlib

    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def _check_secret(value: str, source: str) -> str:
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise LiveError(f"{source}: expected a secret of at least {MIN_SECRET_BYTES} bytes for HS256, "
                        f"got {len(value.encode())}; make one with `pitbox token secret`")
    return value


def read_secrets_file(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The secrets in a secrets file: one per line, the current one first, then older ones
    still accepted during a change-over; blank lines and lines starting with ``#`` are
    skipped. Raises :class:`LiveError` naming the file and line."""
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LiveError(f"{p}: token secrets file not found ({ENV_SECRET_FILE})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LiveError(f"{p}: cannot read the token secrets file: {exc}") from None
    out: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(_check_secret(line, f"{p} line {number}"))
    return tuple(dict.fromkeys(out))


class Keyring:
    """The secrets a server accepts tokens signed with, for token rotation without a restart.

    ``secrets``: the current secret first, then older ones still accepted during a
    change-over (tokens are signed elsewhere, with the current one, by `pitbox token
    create`). With ``file``, its secrets (see :func:`read_secrets_file`) come first and
    :meth:`reload` / :meth:`reload_if_changed` re-read it: add the new secret as the
    first line, hand out new tokens, then delete the old line. A file that turns unreadable
    or invalid on a reload keeps the secrets already loaded (the error is raised for the
    caller to log); at construction it raises :class:`LiveError`.
    """

    def __init__(self, secrets: Sequence[str] = (), *, file: str | os.PathLike[str] | None = None):
        self._fixed = tuple(dict.fromkeys(_check_secret(s, "token secret") for s in secrets if s))
        self.file = None if file is None else os.fspath(file)
        self._stamp: tuple[int, int] | None = None
        self._from_file: tuple[str, ...] = ()
        if self.file is not None:
            self._stamp = self._file_stamp()
            self._from_file = read_secrets_file(self.file)
        self._update()

    @classmethod
    def from_env(cls, secret: str | None = None, environ: Mapping[str, str] | None = None) -> Keyring:
        """``secret`` (an argument) else ``PITBOX_TOKEN_SECRET``, plus
        ``PITBOX_TOKEN_SECRET_PREVIOUS`` and the file named by ``PITBOX_TOKEN_SECRET_FILE``."""
        env = os.environ if environ is None else environ
        current = secret or env.get(ENV_SECRET) or None
        if current is not None:
            _check_secret(current, "token secret (--token-secret)" if secret else ENV_SECRET)
        previous = env.get(ENV_SECRET_PREVIOUS) or None
        if previous is not None:
            _check_secret(previous, ENV_SECRET_PREVIOUS)
        return cls([s for s in (current, previous) if s], file=env.get(ENV_SECRET_FILE) or None)

    def _update(self) -> None:
        self.secrets: tuple[str, ...] = tuple(dict.fromkeys(self._from_file + self._fixed))
        self._keys = {fingerprint(s): s for s in self.secrets}

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __len__(self) -> int:
        return len(self.secrets)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """:func:`fingerprint` of each accepted secret, current first."""
        return tuple(self._keys)

    def _file_stamp(self) -> tuple[int, int] | None:
        assert self.file is not None
        try:
            st = os.stat(self.file)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload(self) -> bool:
        """Re-read the secrets file; True when the accepted secrets changed. Raises
        :class:`LiveError` (keeping the old secrets) when the file is missing or invalid."""
        if self.file is None:
            return False
        self._stamp = self._file_stamp()
        secrets = read_secrets_file(self.file)
        if not secrets and not self._fixed:
            raise LiveError(f"{self.file}: no secret left in the token secrets file; keeping the old ones")
        before = self.secrets
        self._from_file = secrets
        self._update()
        return self.secrets != before

    def reload_if_changed(self) -> bool:
        """:meth:`reload` when the file's modification time or size changed (one ``stat``)."""
        if self.file is None or self._file_stamp() == self._stamp:
            return False
        return self.reload()

    def verify(self, token: str | None, role: str) -> tuple[dict[str, Any], str]:
        """(claims, fingerprint of the secret that signed the token); raises
        :class:`AuthError` like :func:`verify_token`. A token signed with none of the
        secrets gets 401."""
        if not self.secrets:
            raise AuthError(401, "this server has no token secret")
        if token:
            for fp, secret in self._keys.items():
                try:  # the signature alone picks the secret; verify_token then checks the rest
                    jwt.decode(token, secret, algorithms=["HS256"], options=_SIGNATURE_ONLY)
                except jwt.InvalidSignatureError:
                    continue
                except jwt.PyJWTError:
                    break
                return verify_token(secret, token, role), fp
        verify_token(self.secrets[0], token, role)
        raise AuthError(401, "token signature does not match this server's secret")  # pragma: no cover


_SIGNATURE_ONLY = {"verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                   "verify_aud": False, "verify_iss": False}
