"""The recorder's live stream: :class:`StreamServer`.

The recorder creates one, calls :meth:`~StreamServer.start`, then from its tick loop
:meth:`~StreamServer.publish_frame` (never blocks), and on events
:meth:`~StreamServer.publish_lap`, :meth:`~StreamServer.publish_session`,
:meth:`~StreamServer.publish_session_info`. Clients connect to ``ws://127.0.0.1:8765``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pitbox.live import protocol
from pitbox.live._inbox import FRAME, LAP, MESSAGE, SESSION, SESSION_INFO, Inbox, parse_session_info
from pitbox.live.feed import Feed, Frame, HistoryProvider, MemoryHistory, Subscriber
from pitbox.live.hub import SEND_BUFFER_BYTES, Hub
from pitbox.live.limits import Limits
from pitbox.live.protocol import ProtocolError

log = logging.getLogger(__name__)


class StreamServer(Inbox, Hub):
    """WebSocket server for one recorder's live data, on its own event loop thread.

    Parameters: ``host``/``port`` (default 127.0.0.1:8765; port 0 picks a free one, read
    ``.port`` after :meth:`start`); ``token_secret`` (else ``PITBOX_TOKEN_SECRET``; when set
    every client needs a ``subscriber`` token; required for a non-loopback host);
    ``certfile``/``keyfile`` (serve wss); ``origins`` (browser origins allowed; default
    loopback pages only, ``["*"]`` any); ``history_provider`` (``(channels, rate,
    since_tick) -> [(tick, session_time_s, values)]`` of the current session, called in a
    worker thread; default: an in-memory history of ``history_seconds`` at
    ``history_rate`` Hz); ``max_message_bytes`` (largest client message; bigger closes the
    connection with 1009); ``max_clients``; ``compression`` (permessage-deflate, off by
    default: it costs CPU per client); ``send_buffer_bytes`` (kernel send buffer per client,
    so a stalled client is noticed within a few frames; None: the OS default);
    ``voice_commands`` (this recorder runs a voice coach: its ``hello`` tells clients so, from
    the first connection, and their ``command`` messages go to :attr:`command_handler`).
    """

    server_name = "pitbox-stream"

    def __init__(self, host: str = "127.0.0.1", port: int = protocol.DEFAULT_PORT, token_secret: str | None = None,
                 certfile: str | Path | None = None, keyfile: str | Path | None = None,
                 origins: Sequence[str] | None = None, *, history_provider: HistoryProvider | None = None,
                 history_seconds: float = 600.0, history_rate: int = 10, max_message_bytes: int = 64 * 1024,
                 max_clients: int = 1000, compression: bool = False,
                 send_buffer_bytes: int | None = SEND_BUFFER_BYTES, voice_commands: bool = False,
                 commands_per_s: float = 1.0, limits: Limits | None = None):
        Inbox.__init__(self)
        if limits is None:  # else the given limits win over max_message_bytes, max_clients, commands_per_s
            limits = Limits(max_message_bytes=int(max_message_bytes), max_subscribers=int(max_clients),
                            commands_per_s=float(commands_per_s))
        Hub.__init__(self, host, port, token_secret=token_secret, certfile=certfile, keyfile=keyfile,
                     origins=origins, compression=compression, send_buffer_bytes=send_buffer_bytes, limits=limits)
        history = None if history_provider is not None else MemoryHistory(history_seconds, history_rate)
        self._feed = Feed(None, history, history_provider)
        self._info_seq = 0
        #: ``control_handler(msg)``: called (on the server's thread) with each checked
        #: ``set_reference`` message a client sends; the live coach sets it. None: refused.
        self.control_handler: Any = None
        self.voice_commands = bool(voice_commands)
        #: ``command_handler(command, arg)``: called (on the server's thread) with each checked
        #: ``command`` an authorised client sends; the voice coach's ``post_command`` (through
        #: the live coach service). None: ``no_voice`` (or, with ``voice_commands``, not yet).
        self.command_handler: Any = None

    def start(self) -> StreamServer:
        super().start()
        return self

    def _started(self) -> None:
        self._attach_loop(self._bg.loop)

    def stop(self, timeout: float = 5.0) -> None:
        """Send what was published before this call (up to ``flush_s``), then close."""
        if self.running:
            try:
                self._bg.run(self._flush(min(self.flush_s, timeout)), timeout)
            except protocol.LiveError:
                pass
        self._detach_loop()
        super().stop(timeout)

    #: at stop, how long clients get to receive what was published before [s]
    flush_s = 2.0

    async def _flush(self, timeout: float) -> None:
        self._drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(sub.queue for sub in self._subs) and loop.time() < deadline:
            await asyncio.sleep(0.01)

    def _feeds_for(self, drivers: tuple[str, ...] | None) -> list[Feed]:
        return [self._feed]

    def _hello(self, claims: dict[str, Any]) -> dict[str, Any]:
        msg = super()._hello(claims)
        msg.update(channels=self._feed.channels, session=self._feed.session,
                   commands=(self.voice_commands or self.command_handler is not None) and self._may_command(claims))
        return msg

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind is FRAME:
            # written at once to idle clients only when it is the newest frame (no backlog)
            self._feed.add_frame(Frame(item[1], float(item[2]), item[3], None, False, item[4]), not self._inbox)
        elif kind is LAP:
            self._feed.add_lap(item[1])
        elif kind is SESSION:
            self._feed.set_session(item[1])
        elif kind is SESSION_INFO:
            self._set_session_info(item[1])
        elif kind is MESSAGE:
            self._feed.add_message(item[1])

    async def _set_reference(self, sub: Subscriber, msg: dict[str, Any]) -> None:
        kind, lap = protocol.check_set_reference(msg)
        handler = self.control_handler
        if handler is None:
            raise ProtocolError("no_coach", "this stream runs no live coach (pitbox record --no-live-coach?)")
        handler({"type": "set_reference", "kind": kind, "lap": lap})

    async def _command(self, sub: Subscriber, msg: dict[str, Any]) -> None:
        name, arg = protocol.check_command(msg)
        rid = protocol.command_id(msg)
        handler = self.command_handler
        if handler is None:
            if self.voice_commands:
                raise ProtocolError("no_voice", "the voice coach is still starting; send the command again")
            raise ProtocolError("no_voice", "this recorder runs no voice coach (pitbox record --voice)")
        handler(name, arg, rid)
        log.info("voice command from %s: %s%s", sub.peer, name, f" {arg}" if arg is not None else "")
        sub.push("command_ok", protocol.dumps(protocol.envelope("command_ok", command=name, arg=arg,
                                                                **({} if rid is None else {"id": rid}))))

    def _set_session_info(self, info: Any) -> None:
        if isinstance(info, dict):
            self._feed.set_session_info(info)
            return
        self._info_seq += 1
        seq, session = self._info_seq, self._feed.session
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, parse_session_info, info)

        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled() or seq != self._info_seq or session is not self._feed.session:
                return  # a newer update or a new session came first
            if fut.exception() is not None:
                log.warning("session info not published: %s", fut.exception())
                return
            self._feed.set_session_info(fut.result())

        future.add_done_callback(done)
