"""``GET /healthz`` of the stream server and the relay, and a probe for it.

The server answers without a token, before any WebSocket upgrade, with one JSON object::

    {"status": "ok", "server": "pitbox-relay", "version": "0.1.0", "uptime_s": 5234.1,
     "tls": true, "auth": true, "secrets": 1,
     "clients": {"publishers": 2, "subscribers": 14, "max_publishers": 64, "max_subscribers": 1000},
     "drivers": {"known": 3, "connected": 2},
     "counters": {"refused": 4, "rate_limited": 0, "too_big": 0, "timeouts": 1, "full": 0},
     "limits": {...}}

``status`` is ``ok`` (HTTP 200) or ``stopping`` (HTTP 503, once a shutdown began). No
driver names, tokens or secrets appear in it.

This module uses the standard library only, so the container's ``HEALTHCHECK`` runs it as
a plain script (``python health.py``) without importing the rest of PitBox:

    python -m pitbox.live.health [URL]     # exit 0 when healthy; prints the document

Without a URL it probes the server configured by the environment the relay service reads
(``PITBOX_HOST``, ``PITBOX_PORT``, ``PITBOX_CERTFILE``): https when a certificate is set,
without verifying it (the probe runs beside the server, often by an address the certificate
does not name).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

HEALTH_PATH = "/healthz"


def local_url(environ: Mapping[str, str] | None = None) -> str:
    """The ``/healthz`` URL of the relay service configured by ``environ``, seen from the
    same machine (``0.0.0.0`` and ``::`` become the loopback address)."""
    env = os.environ if environ is None else environ
    host = env.get("PITBOX_HOST", "127.0.0.1") or "127.0.0.1"
    if host in ("0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = env.get("PITBOX_PORT", "8765") or "8765"
    scheme = "https" if env.get("PITBOX_CERTFILE") else "http"
    return f"{scheme}://{host}:{port}{HEALTH_PATH}"


def probe(url: str, timeout_s: float = 5.0, *, verify: bool = False,
          cafile: str | os.PathLike[str] | None = None) -> tuple[int, dict[str, Any]]:
    """GET a health URL (``http(s)://host:port/healthz``; a ``ws(s)://`` URL is mapped to
    it); returns (HTTP status, document). With https the certificate is checked when
    ``verify`` (system CAs) or ``cafile`` (a PEM certificate to trust) is given. Raises
    ``OSError`` when nothing answers."""
    if url.startswith(("ws://", "wss://")):
        url = "http" + url[2:]
    if not url.rstrip("/").endswith(HEALTH_PATH):
        url = url.rstrip("/") + HEALTH_PATH
    ctx = None
    if url.startswith("https://"):
        ctx = ssl.create_default_context(cafile=None if cafile is None else os.fspath(cafile))
        if not verify and cafile is None:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
    try:
        with opener.open(url, timeout=timeout_s) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {"status": body.decode(errors="replace").strip()}
    return status, doc if isinstance(doc, dict) else {"status": repr(doc)}


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when the server says ``ok``, 1 when it answers otherwise or not at all."""
    args = list(sys.argv[1:] if argv is None else argv)
    url = args[0] if args else local_url()
    try:
        status, doc = probe(url)
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(doc, separators=(",", ":")))
    return 0 if status == 200 and doc.get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
