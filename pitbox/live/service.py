"""The team relay as a long-running service, configured only by the environment.

``python -m pitbox.live.service`` (or ``pitbox relay --from-env``) is what the container
image and the systemd unit run. Settings (see ``docs/deploy.md``):

==========================================  =================================================
variable                                    meaning (default)
==========================================  =================================================
``PITBOX_HOST``, ``PITBOX_PORT``            address and port to bind (127.0.0.1, 8765)
``PITBOX_TOKEN_SECRET``                     HS256 secret, >= 32 bytes; required beyond loopback
``PITBOX_TOKEN_SECRET_PREVIOUS``            an older secret still accepted (a change-over)
``PITBOX_TOKEN_SECRET_FILE``                a file of secrets, one a line, current first;
                                            re-read when it changes and on SIGHUP
``PITBOX_CERTFILE``, ``PITBOX_KEYFILE``     PEM certificate and key: serve wss; re-read on SIGHUP
``PITBOX_ORIGINS``                          browser origins allowed, comma-separated (``*``: any)
``PITBOX_MAX_PUBLISHERS`` … (every field    :class:`~pitbox.live.limits.Limits`, named
of Limits, upper-cased)                     ``PITBOX_`` + the field in capitals
``PITBOX_MAX_DRIVERS``                      drivers remembered, connected or not (256)
``PITBOX_HISTORY_SECONDS``                  session so far kept per driver, at 10 Hz (600)
``PITBOX_LOG_LEVEL``, ``PITBOX_LOG_FORMAT`` ``INFO``; ``text`` or ``json`` (one object a line)
``PITBOX_STATUS_EVERY_S``                   a status line in the log this often (300; 0: never)
==========================================  =================================================

Signals: SIGTERM and SIGINT close every connection (1001 "going away") and exit 0 within
about a second; SIGHUP re-reads the secrets file and the certificate (a renewed one).
Bad settings exit 2 with one line naming the variable.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pitbox.live import auth, protocol
from pitbox.live.limits import Limits
from pitbox.live.protocol import LiveError

log = logging.getLogger("pitbox.live.service")  # the same name when run with -m

#: Seconds the shutdown may take before the process exits anyway (``podman stop`` waits 10).
STOP_TIMEOUT_S = 1.5

_LIMIT_VARS = {f"PITBOX_{f.name.upper()}": f for f in dataclasses.fields(Limits)}
_OTHER_VARS = ("PITBOX_HOST", "PITBOX_PORT", auth.ENV_SECRET, auth.ENV_SECRET_PREVIOUS, auth.ENV_SECRET_FILE,
               "PITBOX_CERTFILE", "PITBOX_KEYFILE", "PITBOX_ORIGINS", "PITBOX_MAX_DRIVERS",
               "PITBOX_HISTORY_SECONDS", "PITBOX_LOG_LEVEL", "PITBOX_LOG_FORMAT", "PITBOX_STATUS_EVERY_S")
#: Every variable the service reads.
SETTINGS = (*_OTHER_VARS, *_LIMIT_VARS)


@dataclass
class RelayConfig:
    """What the service runs; :meth:`from_env` reads it from the environment."""

    host: str = "127.0.0.1"
    port: int = protocol.DEFAULT_PORT
    keyring: auth.Keyring = field(default_factory=auth.Keyring)
    certfile: str | None = None
    keyfile: str | None = None
    origins: tuple[str, ...] | None = None
    limits: Limits = field(default_factory=Limits)
    max_drivers: int = 256
    history_seconds: float = 600.0
    log_level: str = "INFO"
    log_format: str = "text"
    status_every_s: float = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RelayConfig:
        """The settings in ``environ`` (default ``os.environ``); :class:`LiveError` names the
        variable and what was expected."""
        env = os.environ if environ is None else environ
        get = _Reader(env)
        limits = {}
        for name, f in _LIMIT_VARS.items():
            if env.get(name, "").strip():
                limits[f.name] = get.number(name, int if f.type in (int, "int") else float)
        try:
            lim = Limits(**limits)
        except LiveError as exc:
            raise LiveError(f"{_var_of(str(exc))}: {exc}") from None
        origins = get.text("PITBOX_ORIGINS")
        log_format = (get.text("PITBOX_LOG_FORMAT") or "text").lower()
        if log_format not in ("text", "json"):
            raise LiveError(f"PITBOX_LOG_FORMAT: expected text or json, got {log_format!r}")
        level = (get.text("PITBOX_LOG_LEVEL") or "INFO").upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise LiveError(f"PITBOX_LOG_LEVEL: expected DEBUG, INFO, WARNING or ERROR, got {level!r}")
        return cls(
            host=get.text("PITBOX_HOST") or "127.0.0.1",
            port=get.number("PITBOX_PORT", int, protocol.DEFAULT_PORT, top=65535),
            keyring=auth.Keyring.from_env(None, env),
            certfile=get.text("PITBOX_CERTFILE"), keyfile=get.text("PITBOX_KEYFILE"),
            origins=None if origins is None else tuple(o.strip() for o in origins.split(",") if o.strip()),
            limits=lim,
            max_drivers=get.number("PITBOX_MAX_DRIVERS", int, 256, bottom=1),
            history_seconds=get.number("PITBOX_HISTORY_SECONDS", float, 600.0),
            log_level=level, log_format=log_format,
            status_every_s=get.number("PITBOX_STATUS_EVERY_S", float, 300.0),
        )


def _var_of(limit_error: str) -> str:
    for name, f in _LIMIT_VARS.items():
        if f"limit {f.name}:" in limit_error:
            return name
    return "limits"  # pragma: no cover


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def number(self, name: str, kind: type, default: Any = None, *, bottom: float = 0, top: float | None = None) -> Any:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise LiveError(f"{name}: expected {what}, got {raw!r}") from None
        if value != value or value < bottom or (top is not None and value > top):
            limit = f" and at most {top}" if top is not None else ""
            raise LiveError(f"{name}: expected at least {bottom}{limit}, got {raw!r}")
        return value


def similar_unknown(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, the setting it probably meant) for ``PITBOX_`` variables that look like a
    misspelt setting."""
    out = []
    for name in environ:
        if name.startswith("PITBOX_") and name not in SETTINGS:
            close = difflib.get_close_matches(name, SETTINGS, n=1, cutoff=0.85)
            if close:
                out.append((name, close[0]))
    return out


class RelayService:
    """A :class:`~pitbox.live.relay.Relay` run until :meth:`request_stop`: it re-reads the
    secrets file when it changes (checked every second) or when :meth:`request_reload` is
    called (SIGHUP), and logs a status line every ``status_every_s``."""

    def __init__(self, config: RelayConfig):
        from pitbox.live.relay import Relay

        self.config = config
        self.relay = Relay(config.host, config.port, None, config.certfile, config.keyfile,
                           list(config.origins) if config.origins is not None else None,
                           history_seconds=config.history_seconds, max_drivers=config.max_drivers,
                           limits=config.limits, keyring=config.keyring)
        self._wake = threading.Event()
        self._stopping = False
        self._reloading = False

    def start(self) -> RelayService:
        self.relay.start()
        return self

    def request_stop(self) -> None:
        """Stop soon (safe from a signal handler or another thread)."""
        self._stopping = True
        self._wake.set()

    def request_reload(self) -> None:
        """Re-read the secrets file and the certificate soon (SIGHUP)."""
        self._reloading = True
        self._wake.set()

    def run(self) -> None:
        """Serve until :meth:`request_stop`; then close everything."""
        if not self.relay.running:
            self.start()
        last_status = time.monotonic()
        try:
            while not self._stopping:
                self._wake.wait(1.0)
                self._wake.clear()
                if self._stopping:
                    break
                reload, self._reloading = self._reloading, False
                self._reload_now(force=reload)
                every = self.config.status_every_s
                if every and time.monotonic() - last_status >= every:
                    last_status = time.monotonic()
                    self._status()
        finally:
            self.stop()

    def stop(self) -> None:
        t0 = time.monotonic()
        self.relay.stop(STOP_TIMEOUT_S)
        log.info("pitbox-relay stopped in %.2f s", time.monotonic() - t0)

    def _reload_now(self, force: bool) -> None:
        try:
            self.relay.reload_secrets(force=force)
        except LiveError as exc:
            log.error("token secrets not reloaded: %s", exc)
        if force:
            try:
                self.relay.reload_certificate()
            except LiveError as exc:
                log.error("certificate not reloaded: %s", exc)

    def _status(self) -> None:
        h = self.relay.health()
        c, d, n = h["clients"], h.get("drivers", {}), h["counters"]
        log.info("status: %d publishers, %d subscribers, %d drivers known; refused %d, rate-limited %d, "
                 "too big %d, timed out %d, full %d; up %.0f s", c["publishers"], c["subscribers"],
                 d.get("known", 0), n["refused"], n["rate_limited"], n["too_big"], n["timeouts"], n["full"],
                 h["uptime_s"])


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"t": round(record.created, 3), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Log lines to stderr: ``2025-01-01 12:00:00,000 INFO pitbox.live.relay: …`` or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("websockets").setLevel(max(logging.getLevelName(level), logging.WARNING))


def serve(config: RelayConfig, *, install_signals: bool = True) -> int:
    """Run the relay of ``config`` in this (main) thread until SIGTERM/SIGINT; exit code."""
    service = RelayService(config)
    if install_signals:
        _install_signals(service)
    service.start()
    relay = service.relay
    note = "tokens required" if relay.auth_required else "no token secret: open to this computer only"
    print(f"pitbox relay: listening on {relay.url} (publish at {relay.url}/publish; {note})", flush=True)
    service.run()
    return 0


def _install_signals(service: RelayService) -> None:
    def stop(signum: int, frame: Any) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        service.request_stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if hasattr(signal, "SIGHUP"):  # not on Windows
        signal.signal(signal.SIGHUP, lambda signum, frame: service.request_reload())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pitbox.live.service``: read the environment, serve; 2 on bad settings."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if args:
        print(f"pitbox relay: error: takes no arguments (got {' '.join(args)}); every setting comes from the "
              "environment, see docs/deploy.md", file=sys.stderr)
        return 2
    try:
        config = RelayConfig.from_env()
        configure_logging(config.log_level, config.log_format)
        for name, meant in similar_unknown(os.environ):
            log.warning("%s is not a setting; did you mean %s?", name, meant)
        return serve(config)
    except LiveError as exc:
        print(f"pitbox relay: error: {exc}", file=sys.stderr)
        return 2


def _exit_now(code: int) -> None:
    """Leave without the interpreter's teardown: every connection is closed and the relay
    keeps nothing on disk, and unloading numpy, pandas and pyarrow takes about a second on
    a busy machine, which ``podman stop`` (and systemd) would otherwise wait for."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main())
