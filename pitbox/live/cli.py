"""Commands ``pitbox relay``, ``pitbox token create|secret`` and ``pitbox listen``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from pitbox.live import auth, protocol


def register(subparsers: Any) -> None:
    _register_relay(subparsers)
    _register_token(subparsers)
    _register_listen(subparsers)


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other address needs a token secret)")
    p.add_argument("--port", type=int, default=protocol.DEFAULT_PORT, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token-secret", default=None,
                   help=f"HS256 secret, at least 32 bytes (default: ${auth.ENV_SECRET}); with it every client needs a token")
    p.add_argument("--certfile", default=None, help="PEM certificate: serve wss")
    p.add_argument("--keyfile", default=None, help="PEM private key of --certfile")
    p.add_argument("--origin", action="append", default=None, metavar="ORIGIN",
                   help="browser origin allowed to connect (repeat; '*' for any; default loopback pages only)")


def _register_relay(subparsers: Any) -> None:
    p = subparsers.add_parser("relay", help="run the team relay: recorders publish, dashboards subscribe",
                              description="Serve /publish (publisher tokens) and / (subscriber tokens).")
    _add_server_options(p)
    p.add_argument("--history-seconds", type=float, default=600.0,
                   help="session so far kept per driver, in seconds (default 600, at 10 Hz)")
    p.set_defaults(func=_run_relay)


def _run_relay(args: argparse.Namespace) -> int:
    from pitbox.live.relay import Relay

    relay = Relay(args.host, args.port, args.token_secret, args.certfile, args.keyfile, args.origin,
                  history_seconds=args.history_seconds).start()
    auth_note = "tokens required" if relay.auth_required else "no token secret: open to this computer only"
    print(f"pitbox relay: listening on {relay.url} (publish at {relay.url}/publish; {auth_note})", flush=True)
    relay.run_forever()
    return 0


def _register_token(subparsers: Any) -> None:
    p = subparsers.add_parser("token", help="make tokens (JWT) and secrets for the live stream and relay")
    sub = p.add_subparsers(dest="token_command", metavar="ACTION")
    c = sub.add_parser("create", help="print a signed token")
    c.add_argument("--role", required=True, choices=auth.ROLES, help="subscriber (read) or publisher (recorder)")
    c.add_argument("--ttl", type=float, default=86400.0, help="seconds the token is valid (default 86400; 0: no expiry)")
    c.add_argument("--subject", default=None, help="who it is for; for a publisher, the driver id the relay shows")
    c.add_argument("--token-secret", default=None, help=f"HS256 secret (default: ${auth.ENV_SECRET})")
    c.set_defaults(func=_create_token)
    s = sub.add_parser("secret", help="print a new random secret (for --token-secret)")
    s.set_defaults(func=_new_secret)
    p.set_defaults(func=lambda args: _token_help(p))


def _token_help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _create_token(args: argparse.Namespace) -> int:
    ttl = None if args.ttl == 0 else args.ttl
    print(auth.create_token(args.token_secret, args.role, ttl_s=ttl, subject=args.subject))
    return 0


def _new_secret(args: argparse.Namespace) -> int:
    print(auth.new_secret())
    return 0


def _register_listen(subparsers: Any) -> None:
    p = subparsers.add_parser("listen", help="print a live stream's messages as JSON lines")
    p.add_argument("url", nargs="?", default=f"ws://127.0.0.1:{protocol.DEFAULT_PORT}", help="stream or relay URL")
    p.add_argument("--token", default=os.environ.get("PITBOX_TOKEN"), help="subscriber token (default $PITBOX_TOKEN)")
    p.add_argument("--channel", action="append", default=None, help="channel to receive (repeat; default all)")
    p.add_argument("--rate", type=int, default=1, choices=protocol.RATES, help="frames per second (default 1)")
    p.add_argument("--driver", action="append", default=None, help="relay: driver id (repeat; default all)")
    p.add_argument("--count", type=int, default=0, help="stop after this many frames (default: never)")
    p.add_argument("--cafile", default=None, help="certificate to trust for wss (a self-made one)")
    p.add_argument("--history", action="store_true", help="first fetch the session so far")
    p.set_defaults(func=_listen)


def _listen(args: argparse.Namespace) -> int:
    from pitbox.live.client import LiveClient

    async def run() -> None:
        frames = 0
        async with LiveClient(args.url, token=args.token, channels=args.channel, rate=args.rate,
                              drivers=args.driver, history=args.history, ssl=args.cafile) as client:
            async for msg in client:
                print(json.dumps(msg), flush=True)
                frames += msg.get("type") == "frame"
                if args.count and frames >= args.count:
                    return

    try:
        asyncio.run(run())
    except BrokenPipeError:  # pragma: no cover - `| head`
        sys.stderr.close()
    return 0
