"""Commands ``pitbox relay``, ``pitbox token create|secret``, ``pitbox listen`` and
``pitbox command``; and
:func:`add_stream_options` / :func:`open_publishers`, which give ``pitbox record`` its
``--stream`` and ``--publish`` options in two lines."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from pitbox.live import constants

# websockets, jwt and numpy are imported inside the commands: see pitbox/cli.py.


def register(subparsers: Any) -> None:
    _register_relay(subparsers)
    _register_token(subparsers)
    _register_listen(subparsers)
    _register_command(subparsers)


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other address needs a token secret)")
    p.add_argument("--port", type=int, default=constants.DEFAULT_PORT, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token-secret", default=None,
                   help=f"HS256 secret, at least 32 bytes (default: ${constants.ENV_SECRET}); with it every client needs a token")
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
    p.add_argument("--from-env", action="store_true",
                   help="take every setting from PITBOX_* environment variables (the container's and systemd's "
                        "way; see docs/deploy.md); no other option then")
    p.set_defaults(func=_run_relay, parser=p)


def _run_relay(args: argparse.Namespace) -> int:
    from pitbox.live import auth, protocol, service

    if args.from_env:
        given = [f"--{k.replace('_', '-')}" for k in ("host", "port", "token_secret", "certfile", "keyfile", "origin",
                                                        "history_seconds") if getattr(args, k) != args.parser.get_default(k)]
        if given:
            raise protocol.LiveError(f"--from-env takes every setting from the environment; drop {', '.join(given)} "
                                     "(e.g. PITBOX_HOST, PITBOX_PORT; see docs/deploy.md)")
        return service.main([])
    config = service.RelayConfig(args.host, args.port, auth.Keyring.from_env(args.token_secret), args.certfile,
                                 args.keyfile, None if args.origin is None else tuple(args.origin),
                                 history_seconds=args.history_seconds)
    return service.serve(config)


def _register_token(subparsers: Any) -> None:
    p = subparsers.add_parser("token", help="make tokens (JWT) and secrets for the live stream and relay")
    sub = p.add_subparsers(dest="token_command", metavar="ACTION")
    c = sub.add_parser("create", help="print a signed token")
    c.add_argument("--role", required=True, choices=constants.ROLES, help="subscriber (read) or publisher (recorder)")
    c.add_argument("--ttl", type=float, default=86400.0, help="seconds the token is valid (default 86400; 0: no expiry)")
    c.add_argument("--subject", default=None, help="who it is for; for a publisher, the driver id the relay shows")
    c.add_argument("--scope", action="append", default=[], metavar="SCOPE",
                   help="what more a subscriber token may do: command (send voice commands to every driver's "
                        "voice coach) or command:DRIVER (only to that driver's); repeatable")
    c.add_argument("--token-secret", default=None, help=f"HS256 secret (default: ${constants.ENV_SECRET})")
    c.set_defaults(func=_create_token)
    s = sub.add_parser("secret", help="print a new random secret (for --token-secret)")
    s.set_defaults(func=_new_secret)
    p.set_defaults(func=lambda args: _token_help(p))


def _token_help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _create_token(args: argparse.Namespace) -> int:
    from pitbox.live import auth

    ttl = None if args.ttl == 0 else args.ttl
    print(auth.create_token(args.token_secret, args.role, ttl_s=ttl, subject=args.subject,
                            scope=args.scope))
    return 0


def _new_secret(args: argparse.Namespace) -> int:
    from pitbox.live import auth

    print(auth.new_secret())
    return 0


def add_stream_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--stream`` (serve this recorder's live stream) and ``--publish URL`` (send it to
    a relay) with their options, for ``pitbox record``."""
    g = parser.add_argument_group("live stream")
    g.add_argument("--stream", action="store_true", help="serve the live stream (WebSocket, default 127.0.0.1:8765)")
    g.add_argument("--stream-host", default="127.0.0.1", help="address of the stream (other than loopback needs a secret)")
    g.add_argument("--stream-port", type=int, default=constants.DEFAULT_PORT, help="port of the stream (default 8765)")
    g.add_argument("--token-secret", default=None, help=f"HS256 secret for stream tokens (default ${constants.ENV_SECRET})")
    g.add_argument("--certfile", default=None, help="PEM certificate: serve the stream as wss")
    g.add_argument("--keyfile", default=None, help="PEM private key of --certfile")
    g.add_argument("--origin", action="append", default=None, metavar="ORIGIN", help="browser origin allowed (repeat)")
    g.add_argument("--publish", action="append", default=None, metavar="URL",
                   help="also publish to a relay (ws://host:port or wss://); repeat to publish to several (replicas)")
    g.add_argument("--token", default=os.environ.get("PITBOX_TOKEN"), help="publisher token for --publish")
    g.add_argument("--driver-id", default=None, help="driver id on the relay (default: the token's subject)")
    g.add_argument("--publish-rate", type=int, default=60, choices=constants.RATES, help="frames per second sent upstream")
    g.add_argument("--publish-channel", action="append", default=None, help="channel sent upstream (repeat; default all)")
    g.add_argument("--relay-cafile", default=None, help="certificate to trust for a wss relay (a self-made one)")


def open_publishers(args: argparse.Namespace, *, history_provider: Any = None,
                    driver_info: dict[str, Any] | None = None) -> list[Any]:
    """Start what :func:`add_stream_options` asked for; returns started
    :class:`~pitbox.live.Publisher` objects (empty when neither option was given). Call
    their ``publish_*`` from the tick loop and ``stop()`` at exit. With ``--voice`` (a voice
    coach will run) they tell clients that it takes voice commands."""
    from pitbox.live.relay import RelayPublisher
    from pitbox.live.server import StreamServer

    out: list[Any] = []
    commands = getattr(args, "voice", None) is not None and not getattr(args, "no_live_coach", False)
    try:
        if args.stream:
            out.append(StreamServer(args.stream_host, args.stream_port, args.token_secret, args.certfile,
                                    args.keyfile, args.origin, history_provider=history_provider,
                                    voice_commands=commands).start())
        urls = [args.publish] if isinstance(args.publish, str) else list(args.publish or ())
        for url in urls:
            out.append(RelayPublisher(url, token=args.token, driver_id=args.driver_id, driver_info=driver_info,
                                      channels=args.publish_channel, rate=args.publish_rate,
                                      ssl=args.relay_cafile, voice_commands=commands).start())
    except BaseException:
        for p in out:
            p.stop()
        raise
    return out


def _register_listen(subparsers: Any) -> None:
    p = subparsers.add_parser("listen", help="print a live stream's messages as JSON lines")
    p.add_argument("url", nargs="?", default=f"ws://127.0.0.1:{constants.DEFAULT_PORT}", help="stream or relay URL")
    p.add_argument("--token", default=os.environ.get("PITBOX_TOKEN"), help="subscriber token (default $PITBOX_TOKEN)")
    p.add_argument("--channel", action="append", default=None, help="channel to receive (repeat; default all)")
    p.add_argument("--rate", type=int, default=1, choices=constants.RATES, help="frames per second (default 1)")
    p.add_argument("--driver", action="append", default=None, help="relay: driver id (repeat; default all)")
    p.add_argument("--count", type=int, default=0, help="stop after this many frames (default: never)")
    p.add_argument("--cafile", default=None, help="certificate to trust for wss (a self-made one)")
    p.add_argument("--history", action="store_true", help="first fetch the session so far")
    p.set_defaults(func=_listen)


def _listen(args: argparse.Namespace) -> int:
    import asyncio

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


def _register_command(subparsers: Any) -> None:
    p = subparsers.add_parser("command", help="give a driver's voice coach a spoken command (pitbox record --voice) "
                                              "and print its answer")
    p.add_argument("text", help="the command: repeat, mute, unmute, 'quiet in the corners', 'talk anywhere', "
                                "'last lap', delta, fuel, 'best lap', 'where am i losing time', 'focus on turn N' "
                                "(N a number; without it: focus off)")
    p.add_argument("--url", default=f"ws://127.0.0.1:{constants.DEFAULT_PORT}", help="the recorder's stream or a relay")
    p.add_argument("--driver", default=None, help="relay: whose voice coach (default: the only one that takes commands)")
    p.add_argument("--token", default=os.environ.get("PITBOX_TOKEN"),
                   help="subscriber token with the command scope (default $PITBOX_TOKEN)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the spoken answer (default 15)")
    p.add_argument("--cafile", default=None, help="certificate to trust for wss (a self-made one)")
    p.add_argument("--json", action="store_true", help="print a JSON object (command, driver, taken, answer)")
    p.set_defaults(func=_command)


def command_words(text: str) -> tuple[str, int | None]:
    """``(command, arg)`` of a command typed as words ("fuel", "focus on turn 3" or "focus on
    turn three"); raises :class:`~pitbox.live.protocol.ProtocolError` (``bad_command``)."""
    from pitbox.live import protocol
    from pitbox.voice.commands import NUMBERS

    words = " ".join(str(text).lower().split())
    arg: Any = None
    if words.startswith("focus on turn"):
        rest = words[len("focus on turn"):].strip()
        if rest:
            arg = int(rest) if rest.isdigit() else (NUMBERS.index(rest) + 1 if rest in NUMBERS else rest)
        words = "focus on turn"
    return protocol.check_command({"command": words, "arg": arg})


def _command(args: argparse.Namespace) -> int:
    import asyncio
    import secrets

    from pitbox.live.client import LiveClient
    from pitbox.live.protocol import LiveError

    name, arg = command_words(args.text)
    rid = f"cli-{secrets.token_hex(6)}"
    result: dict[str, Any] = {"command": name, "arg": arg, "driver": args.driver, "taken": False, "answer": None}

    async def run() -> None:
        async with LiveClient(args.url, token=args.token, rate=1, ssl=args.cafile) as client:
            async for msg in client:
                kind = msg.get("type")
                if kind == "hello":
                    if not msg.get("commands"):
                        raise LiveError(f"{args.url}: this connection may not send voice commands (a token needs the "
                                        "command scope: pitbox token create --role subscriber --scope command), or "
                                        "the recorder runs no voice coach (pitbox record --voice)")
                    result["driver"] = driver = _command_driver(args.url, msg, args.driver)
                    await client.command(name, arg, driver, id=rid)
                elif kind == "error" and msg.get("id") == rid:
                    raise LiveError(f"{args.url}: the command was refused ({msg.get('code')}: {msg.get('message')})")
                elif kind == "command_ok" and msg.get("id") == rid:
                    result["taken"] = True
                elif kind == "voice" and msg.get("reply_to") == rid:
                    result["answer"] = msg.get("text")
                    return

    try:
        asyncio.run(asyncio.wait_for(run(), args.timeout))
    except (asyncio.TimeoutError, TimeoutError):
        if not result["taken"]:
            raise LiveError(f"{args.url}: no answer to the command within {args.timeout:g} s") from None
    if args.json:
        print(json.dumps(result))
    elif result["answer"] is not None:
        print(result["answer"])
    else:  # taken, but the coach has not spoken yet (no frames: the sim is paused or gone)
        print(f"taken by the voice coach; no spoken answer within {args.timeout:g} s", file=sys.stderr)
    return 0


def _command_driver(url: str, hello: dict[str, Any], driver: str | None) -> str | None:
    """On a relay, the driver to command: the one named, else the only one that takes commands."""
    from pitbox.live.protocol import LiveError

    drivers = hello.get("drivers")
    if drivers is None:  # a recorder's own stream
        return None
    if driver is not None:
        return driver
    able = [str(d.get("id")) for d in drivers if isinstance(d, dict) and d.get("commands") and d.get("connected")]
    if len(able) != 1:
        raise LiveError(f"{url}: a relay; name the driver with --driver (drivers with a voice coach: "
                        f"{', '.join(able) or 'none'})")
    return able[0]
