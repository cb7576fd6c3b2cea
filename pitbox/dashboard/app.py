"""The live dashboard and the team view (ipywidgets), one call in a notebook.

``Dashboard(url, token=None, reference=None)`` connects to a recorder's stream (or, with
``driver=``, to one driver on a relay) on a background thread and shows: driver, car,
track; lap, last/best/predicted lap and the coloured delta bar; the live traces by
distance over the reference lap with the last braking zone frozen; the track map with the
car and the other cars (all on the anywidget canvas, fed binary samples through the
latest-state pump); the per-corner delta, fuel, the tyre snapshot with its age, the lap
table with the tips as they arrive (HTML panels, at most once a second); the lap times
(a plotly figure that changes once per lap); the reference switcher (sends
``set_reference``); the connection state and the page's sample-to-paint lag.

``TeamDashboard(url, token=None, drivers=None)`` on a relay: the live drivers, pick
several; each one's lap, delta, fuel and tips side by side; all team cars on one map.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as W

from pitbox.dashboard import panels
from pitbox.dashboard.canvas import LiveCanvas, canvas_slot
from pitbox.dashboard.state import (
    SUBSCRIBE_CHANNELS,
    TEAM_CHANNELS,
    CanvasCursor,
    DriverState,
    TeamState,
)
from pitbox.errors import ConfigError
from pitbox.hearing import Slot
from pitbox.live._loop import BackgroundLoop
from pitbox.live.client import LiveClient, SslArg
from pitbox.live.protocol import LiveError

log = logging.getLogger(__name__)

ENV_URL = "PITBOX_LIVE_URL"
ENV_TOKEN = "PITBOX_TOKEN"
#: Reference kinds the live coach knows (contract A), as the switcher shows them.
REFERENCE_KINDS = [("session best", "session_best"), ("all-time best", "all_time_best"),
                   ("optimal (best sectors)", "optimal")]
SLOW_PERIOD_S = 1.0
#: Frames without the live coach's channels after which ``coach="auto"`` runs one here.
NO_COACH_FRAMES = 30
#: ``error`` codes that answer a voice ``command`` (the recorder did not take it)
COMMAND_ERRORS = ("forbidden", "no_voice", "bad_command", "bad_driver")
TEAM_COLORS = ["#ff2d55", "#0a84ff", "#34c759", "#ff9500", "#af52de", "#ffd60a", "#64d2ff", "#ff6482"]


def resolve_url(url: str | None, token: str | None) -> tuple[str, str | None]:
    """``url`` or ``$PITBOX_LIVE_URL``; ``token`` or ``$PITBOX_TOKEN`` (empty means none)."""
    url = url or os.environ.get(ENV_URL) or ""
    if not url:
        raise ConfigError(f"dashboard: no stream URL; pass url= or set {ENV_URL} (e.g. ws://127.0.0.1:8765)")
    if not url.startswith(("ws://", "wss://")):
        raise ConfigError(f"dashboard: url {url!r}: expected ws://host:port or wss://host:port")
    if token is None:
        token = os.environ.get(ENV_TOKEN) or None
    return url, token or None


class _Link:
    """A :class:`LiveClient` on a background event loop, handing every message to
    ``on_message`` (on that loop's thread) and able to send client messages."""

    def __init__(self, url: str, token: str | None, on_message: Callable[[dict[str, Any]], None], *,
                 channels: Sequence[str] | None, rate: int, drivers: Sequence[str] | None, history: bool,
                 ssl: SslArg = None, name: str = "pitbox-dashboard"):
        self.client = LiveClient(url, token=token, channels=channels, rate=rate, drivers=drivers, history=history,
                                 ssl=ssl, backoff_s=0.25, backoff_max_s=3.0)
        self.on_message = on_message
        self.error: str | None = None
        self.ended = False
        self._bg = BackgroundLoop(name)

    def start(self) -> None:
        self._bg.start()
        self._bg.submit(self._run())

    async def _run(self) -> None:
        try:
            async for msg in self.client:
                try:
                    self.on_message(msg)
                except Exception:
                    log.exception("dashboard: message %s not handled", msg.get("type"))
        except LiveError as exc:
            self.error = str(exc)
            log.error("%s", exc)
        except asyncio.CancelledError:
            raise
        finally:
            self.ended = True

    @property
    def connected(self) -> bool:
        return self.client.connected

    def set_reference(self, kind: str, lap: str | None, driver: str | None, timeout: float = 5.0) -> None:
        self._bg.run(self.client.set_reference(kind, lap, driver), timeout)

    def command(self, name: str, arg: int | None, driver: str | None, rid: str, timeout: float = 5.0) -> None:
        self._bg.run(self.client.command(name, arg, driver, id=rid), timeout)

    def stop(self) -> None:
        if self._bg.running:
            try:
                self._bg.run(self.client.aclose(), 3.0)
            except (LiveError, OSError):
                pass
        self._bg.stop(5.0)


class _Ticker:
    """Calls ``fn`` every ``period_s`` on a daemon thread until stopped."""

    def __init__(self, fn: Callable[[], None], period_s: float, name: str):
        self._stop = threading.Event()
        self._fn = fn
        self._period = period_s
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self._fn()
            except Exception:
                log.exception("dashboard panel update failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(2.0)


def _display_data(fig: Any) -> dict[str, Any]:
    """``fig`` as one display output for an ``Output`` widget: plotly's own JSON mimetype,
    drawn by the ``jupyterlab-plotly`` renderer that ships in plotly's wheel (JupyterLab and
    Voilà alike); a few kilobytes, where each ``FigureWidget`` sends its 5 MB plotly.js bundle."""
    import plotly.io as pio

    return {"output_type": "display_data", "metadata": {},
            "data": {**pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict()),
                     "text/plain": f"lap times: {len(fig.data[0].x or ())} laps"}}


def lap_figure(rows: Sequence[dict[str, Any]] = (), reference_s: float | None = None) -> Any:
    """The per-lap figure (plotly ``go.Figure``): lap times [s] of the completed laps (valid
    ones coloured) and the reference's time as a line. Built whole once per lap and shown as
    plotly's JSON in an ``Output`` widget (:func:`_display_data`), not as a ``FigureWidget``:
    each ``FigureWidget`` ships plotly.js (5 MB) to the page, and one restyled later loses
    its traces in Voilà, and in JupyterLab when restyled with empty arrays (plotly 7.1)."""
    import plotly.graph_objects as go

    x = [r.get("lap") for r in rows]
    y = [r.get("time_s") for r in rows]
    colors = ["#0a84ff" if r.get("valid") else "#c7c7cc" for r in rows]
    line_x: list[float] = []
    line_y: list[float] = []
    if reference_s is not None and math.isfinite(reference_s) and x:
        line_x, line_y = [min(x) - 0.5, max(x) + 0.5], [reference_s, reference_s]
    valid = [r["time_s"] for r in rows if r.get("valid") and r.get("time_s")]
    yaxis: dict[str, Any] = {"title": "s"}
    if valid:
        yaxis["range"] = [min(valid) - 1.0, max(valid) + 1.5]
    return go.Figure(
        data=[go.Bar(x=x, y=y, name="lap time", marker_color=colors, hovertemplate="lap %{x}: %{y:.3f} s"),
              go.Scatter(x=line_x, y=line_y, mode="lines", name="reference", line={"color": "#888", "dash": "dash"})],
        layout=go.Layout(height=220, width=520, margin={"l": 50, "r": 10, "t": 30, "b": 30},
                         title={"text": "lap times", "font": {"size": 12}}, showlegend=False,
                         yaxis=yaxis, xaxis={"title": "lap", "dtick": 1}),
    )


class _CanvasOwner:
    """A dashboard's live canvas, shown in a slot that replaces one the page cannot hear."""

    canvas_slot: Slot[LiveCanvas]

    @property
    def canvas(self) -> LiveCanvas:
        """The live canvas shown now (a new one when the page could not hear the last:
        :mod:`pitbox.hearing`)."""
        return self.canvas_slot.widget

    def close(self) -> None:
        self.stop()  # type: ignore[attr-defined]  # each dashboard's own
        self.canvas.close()
        self.canvas_slot.close()
        super().close()  # type: ignore[misc]


class Dashboard(_CanvasOwner, W.VBox):
    """One driver's live dashboard; display it (last expression of a cell) to see it.

    ``url``: the recorder's stream (``ws://127.0.0.1:8765``) or a relay with ``driver=``;
    default ``$PITBOX_LIVE_URL``. ``token``: a subscriber token (default ``$PITBOX_TOKEN``).
    ``reference``: ``session_best`` (the live coach's default), ``all_time_best``,
    ``optimal`` or ``SESSION:LAP``: sent to the live coach once connected. ``rate``: frames
    per second asked of the stream (60, 30, 10). ``lap_chart=False`` leaves out plotly.
    ``coach``: ``"auto"`` runs the live coach here (``pitbox.livecoach.notebook.attach``, its own
    connection at 60 Hz, the after-lap analysis in its own process, references and the map
    from the store ``data``) when the stream's frames carry none of its channels (a recorder
    with ``--no-live-coach``, an older one); ``"stream"`` never does; ``"local"`` always does.
    ``voice``: the voice coach's phrases (``voice`` messages, ``pitbox record --voice``) play
    in this browser once its "voice" toggle is on (:class:`pitbox.voice.widget.VoicePanel`;
    browsers play nothing before a click): ``True`` (default) makes them with
    :class:`pitbox.voice.Voice` here (ElevenLabs with a key, else the offline voice), a
    ``Voice`` makes them with it, ``False`` leaves the toggle out.
    ``talk``: a push-to-talk button (:class:`pitbox.voice.talk.TalkButton`): hold it (or the
    ``hotkey``, a ``KeyboardEvent.code`` such as ``"F8"``) and say a command; the page
    records its microphone, the kernel recognises the clip (as ``pitbox voice hear``) and a
    voice coach carries it out. When the stream's recorder runs a voice coach (``pitbox
    record --voice``; its ``hello``, or on a relay this driver's entry, says ``commands``)
    and this connection may command it (no token secret, or a token with the ``command``
    scope), the command goes to that voice coach (a ``command`` message), which answers in
    the driver's ears and on the stream; else a voice coach here
    (:class:`pitbox.voice.coach.VoiceCoach`, fed the stream's frames, ``coach`` and
    ``reference`` messages) answers it. The page shows what was heard and the answer, and
    the answer plays through the voice toggle when it is spoken. ``False`` leaves the
    button out.
    """

    def __init__(self, url: str | None = None, token: str | None = None, reference: str | None = None, *,
                 driver: str | None = None, rate: int = 30, history: bool = True, ssl: SslArg = None,
                 lap_chart: bool = True, coach: str = "auto", data: str | os.PathLike[str] | None = None,
                 voice: Any = True, talk: bool = True, hotkey: str = "", start: bool = True):
        if coach not in ("auto", "stream", "local"):
            raise ConfigError(f"dashboard: coach={coach!r}: expected 'auto', 'stream' or 'local'")
        self.coach_mode = coach
        self.data = data
        self.local_coach: Any = None
        self._coach_seen = False
        self._frames_without_coach = 0
        self.url, self.token = resolve_url(url, token)
        self.reference_spec = reference
        self.state = DriverState(driver=driver)
        self._cursor = CanvasCursor()
        self.canvas_slot = canvas_slot("driver", self._build)
        self.pump = self.canvas.pump
        self.title = W.HTML(panels.title_html(self.state))
        self.corners = W.HTML(panels.corners_html(self.state), layout=W.Layout(min_width="160px", margin="0 16px 8px 0"))
        self.fuel = W.HTML(panels.fuel_html(self.state), layout=W.Layout(min_width="220px", margin="0 16px 8px 0"))
        self.tyres = W.HTML(panels.tyres_html(self.state), layout=W.Layout(min_width="220px", max_width="360px", margin="0 16px 8px 0"))
        self.laps = W.HTML(panels.laps_html(self.state), layout=W.Layout(flex="1 1 480px", margin="0 16px 8px 0"))
        self.picker = W.Dropdown(options=list(REFERENCE_KINDS), value=None, description="reference",
                                 layout=W.Layout(width="340px"))
        self.picker_status = W.HTML("")
        self._picker_quiet = False
        self.picker.observe(self._on_pick, names="value")
        self.lap_chart = lap_figure() if lap_chart else None
        self.lap_chart_box = W.Output(layout=W.Layout(min_width="520px", min_height="220px"))
        if self.lap_chart is not None:
            self.lap_chart_box.outputs = (_display_data(self.lap_chart),)
        self._seen: dict[str, int] = {}
        self.voice_panel: Any = None
        if voice is not False:
            from pitbox.voice.widget import VoicePanel

            self.voice_panel = VoicePanel(None if voice is True else voice)
        self.talk_slot: Slot[Any] | None = None  #: shows :attr:`talk`
        self.talk_coach: Any = None
        self._may_command = False  #: the hello: this connection may send voice commands
        self._command_drivers: set[str] | None = None  #: the hello: only these drivers (a limited token)
        self._voice_driver: str | None = None  #: the recorder (relay: driver id) whose voice coach takes them
        self._has_voice = False
        self._answers = threading.Condition()
        self._answer_log: list[dict[str, Any]] = []  #: command_ok, command errors and spoken replies
        if talk:
            self._make_talk(hotkey)
        lower = [self.laps, self.lap_chart_box]
        top = [self.picker, self.picker_status] + ([self.voice_panel.widget] if self.voice_panel is not None else [])
        top += [self.talk_slot] if self.talk_slot is not None else []
        super().__init__([
            W.HTML(panels.CSS), self.title, W.HBox(top), self.canvas_slot,
            W.HBox([self.corners, self.fuel, self.tyres], layout=W.Layout(flex_flow="row wrap")),
            W.HBox(lower, layout=W.Layout(flex_flow="row wrap")),
        ])
        self.add_class("pitbox-dashboard")
        self._link = _Link(self.url, self.token, self._on_message, channels=SUBSCRIBE_CHANNELS, rate=rate,
                           drivers=None if driver is None else [driver], history=history, ssl=ssl)
        self._ticker = _Ticker(self._slow, SLOW_PERIOD_S, "pitbox-dashboard-panels")
        self._reference_sent = False
        self._started = False
        if start:
            self.start()

    def _make_talk(self, hotkey: str) -> None:
        from pitbox.voice.coach import VoiceCoach
        from pitbox.voice.player import NullPlayer
        from pitbox.voice.scheduler import Scheduler
        from pitbox.voice.talk import TalkButton
        from pitbox.voice.voice import Voice

        voice = self.voice_panel.voice if self.voice_panel is not None else Voice(engine="text")
        self.talk_coach = VoiceCoach(voice, NullPlayer(), Scheduler(latency_s=0.3), send=self._on_talk_voice)
        self.talk_slot = Slot(lambda: TalkButton(on_command=self.command, hotkey=hotkey), on_new=TalkButton.hand_over)

    @property
    def talk(self) -> Any:
        """The push-to-talk button shown now (:class:`pitbox.voice.talk.TalkButton`; a new one
        when the page could not hear the last), or None (``talk=False``)."""
        return None if self.talk_slot is None else self.talk_slot.widget

    def _on_talk_voice(self, msg: dict[str, Any]) -> None:
        """A spoken answer of the push-to-talk coach: played like the stream's voice. Only
        answers (``reply``): tips, fuel calls and lap times are the recorder's voice coach's,
        and come on the stream."""
        if msg.get("priority") == "reply" and self.voice_panel is not None:
            self.voice_panel.on_voice(msg)

    @property
    def remote_commands(self) -> bool:
        """Whether voice commands go to the recorder's voice coach (else the one here)."""
        return self._may_command and self._has_voice

    def command(self, name: str, arg: int | None = None, timeout: float = 10.0) -> str:
        """Carry out a voice command (one of :data:`pitbox.voice.commands.PHRASES`) as the
        push-to-talk button does: on the recorder's voice coach when it takes commands
        (:attr:`remote_commands`; the answer is what it says, waited for up to ``timeout``
        [s]), else on the voice coach here; returns the answer text (also spoken)."""
        if self.talk_coach is None:
            raise ConfigError("dashboard: built with talk=False, no voice coach here")
        if self.remote_commands:
            try:
                answer = self._remote_command(name, arg, timeout)
                self._answered_by("recorder")
                return answer
            except LiveError as exc:
                log.warning("dashboard: the recorder's voice coach did not take %r (%s); answering here", name, exc)
        self._answered_by("here")
        coach = self.talk_coach

        async def run() -> str:  # on the stream's thread, which feeds the coach its frames
            return coach.command(name, arg)

        return self._link._bg.run(run(), timeout)

    def _answered_by(self, who: str) -> None:
        if self.talk is not None:
            self.talk.via = who

    def _remote_command(self, name: str, arg: int | None, timeout: float) -> str:
        rid = f"dash-{secrets.token_hex(6)}"  # its answers carry it: another client's are not taken
        with self._answers:
            seen = len(self._answer_log)
        self._link.command(name, arg, self._voice_driver, rid)
        deadline = time.monotonic() + timeout
        taken = False
        with self._answers:
            while True:
                for msg in self._answer_log[seen:]:
                    kind = msg.get("type")
                    if msg.get("reply_to" if kind == "voice" else "id") != rid:
                        continue
                    if kind == "error" and not taken:
                        raise LiveError(f"{msg.get('code')}: {msg.get('message')}")
                    if kind == "command_ok":
                        taken = True
                    elif kind == "voice":
                        return str(msg.get("text") or "")
                seen = len(self._answer_log)
                left = deadline - time.monotonic()
                if left <= 0:
                    if not taken:
                        raise LiveError(f"no answer to the command within {timeout} s")
                    who = f"{self._voice_driver}'s" if self._voice_driver else "the driver's"
                    return f"sent to {who} voice coach"
                self._answers.wait(left)

    def _track_commands(self, msg: dict[str, Any]) -> None:
        """Whether the stream's recorder takes voice commands (``hello``/``drivers``), and
        the answers to the ones sent (``command_ok``, command errors, spoken replies)."""
        kind = msg.get("type")
        if kind in ("hello", "drivers"):
            if kind == "hello":
                self._may_command = bool(msg.get("commands"))
                limited = msg.get("command_drivers")  # a token that may command only these drivers
                self._command_drivers = None if limited is None else {str(d) for d in limited}
            drivers = msg.get("drivers")
            if drivers is None:  # a recorder's own stream: its hello says it
                self._voice_driver, self._has_voice = None, self._may_command
            else:  # a relay: this driver's entry (or the only driver's)
                mine = [d for d in drivers if isinstance(d, dict)
                        and (self.state.driver is None or d.get("id") == self.state.driver)]
                ok = len(mine) == 1 and bool(mine[0].get("commands")) and bool(mine[0].get("connected")) \
                    and self._may_command and (self._command_drivers is None or str(mine[0]["id"]) in self._command_drivers)
                self._voice_driver, self._has_voice = (str(mine[0]["id"]) if ok else None), ok
        elif kind == "command_ok" or (kind == "error" and msg.get("code") in COMMAND_ERRORS) or \
                (kind == "voice" and msg.get("priority") == "reply"):
            with self._answers:
                self._answer_log.append(msg)  # a few per command: kept
                self._answers.notify_all()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Dashboard:
        if not self._started:
            self._started = True
            self._link.start()
            self._ticker.start()
            if self.coach_mode == "local":
                self._start_local_coach()
        return self

    def stop(self) -> None:
        """Disconnect and stop the background threads (the widgets stay as they are)."""
        self._ticker.stop()
        self._link.stop()
        if self.local_coach is not None:
            self.local_coach.stop()
        if self.voice_panel is not None:
            self.voice_panel.stop()
        if self.talk_coach is not None:
            self.talk_coach.close()
        self.pump.stop()
        self.state.connection = "stopped"

    def _start_local_coach(self) -> None:
        """The live coach in this kernel, on a connection of its own (see ``coach=``)."""
        from pitbox.livecoach.notebook import attach

        if self.local_coach is not None:
            return
        spec = self.reference_spec or "session_best"
        kind, lap = (spec, None) if spec in {k for _, k in REFERENCE_KINDS} else ("lap", spec)
        log.info("dashboard: %s carries no live coach; running one here", self.url)
        self.local_coach = attach(self.url, kind, lap, data=self.data, on_message=self._on_local_coach,
                                  token=self.token, drivers=None if self.state.driver is None else [self.state.driver])

    def _start_local_coach_safely(self) -> None:
        try:
            self._start_local_coach()
        except Exception as exc:
            log.exception("dashboard: the live coach could not start here")
            self.state.error = f"no live coach: {exc}"

    def _on_local_coach(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "frame":
            self.state.take_derived(msg.get("values") or {})
        else:
            self.state.take(msg)
        self.pump.mark_dirty()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the stream ------------------------------------------------------------------------
    def _on_message(self, msg: dict[str, Any]) -> None:
        if msg.get("driver") is not None and self.state.driver is not None and msg["driver"] != self.state.driver:
            return
        kind = msg.get("type")
        if kind == "hello":
            self.state.connection = "connected"
        if self.talk_coach is not None and kind != "frame":
            self._track_commands(msg)
        if kind == "frame" and not self._coach_seen and self.local_coach is None:
            if "pitbox_delta_s" in (msg.get("values") or {}):
                self._coach_seen = True
            elif self.coach_mode == "auto":
                self._frames_without_coach += 1
                if self._frames_without_coach == NO_COACH_FRAMES:
                    threading.Thread(target=self._start_local_coach_safely, name="pitbox-dashboard-coach",
                                     daemon=True).start()
        self.state.take(msg)
        if kind == "voice" and self.voice_panel is not None:
            self.voice_panel.on_voice(msg)
        if self.talk_coach is not None:
            if kind in ("frame", "coach", "reference"):
                self.talk_coach.handle(msg)
            elif kind == "tip":  # for "where am i losing time"; the recorder's voice says tips
                self.talk_coach.tips.append(dict(msg))
        if kind == "subscribed" and self.reference_spec and not self._reference_sent:
            self._reference_sent = True
            threading.Thread(target=self.set_reference, args=(self.reference_spec,), daemon=True).start()
        self.pump.mark_dirty()

    def set_reference(self, spec: str) -> None:
        """Ask the live coach for another reference: ``session_best``, ``all_time_best``,
        ``optimal`` or ``SESSION:LAP`` (it answers with a ``reference`` message)."""
        kind, lap = (spec, None) if spec in {k for _, k in REFERENCE_KINDS} else ("lap", spec)
        try:
            if self.local_coach is not None:
                self.local_coach.set_reference(kind, lap, self.state.driver)
            else:
                self._link.set_reference(kind, lap, self.state.driver)
        except LiveError as exc:
            self.picker_status.value = f'<span style="color:#d70015">{panels.esc(exc)}</span>'
            return
        self.picker_status.value = f'<span class="muted">asked for {panels.esc(spec)}</span>'

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._picker_quiet or change.get("new") is None:
            return
        threading.Thread(target=self.set_reference, args=(change["new"],), daemon=True).start()

    def _build(self, full: bool) -> tuple[dict[str, Any], list[Any]]:
        return self.state.canvas_update(self._cursor, full)

    # -- slow panels ---------------------------------------------------------------------
    def _connection_state(self) -> None:
        st = self.state
        if self._link.error:
            st.connection, st.error = "error", self._link.error
        elif st.connection != "stopped":
            st.connection = "connected" if self._link.connected else (
                "reconnecting" if st.frames else "connecting")

    def _changed(self, key: str, version: int) -> bool:
        if self._seen.get(key) == version:
            return False
        self._seen[key] = version
        return True

    def _slow(self) -> None:
        """Once a second: connection state, and the panels whose data changed (built under
        the state's lock, sent to the page after it is released)."""
        self._connection_state()
        st = self.state
        now_ms = time.time() * 1000.0
        values: list[tuple[Any, str]] = []
        picker = chart = None
        with st.lock:
            if self._changed("slow", st.slow_version):
                values += [(self.title, panels.title_html(st)), (self.corners, panels.corners_html(st)),
                           (self.fuel, panels.fuel_html(st))]
                picker = self._picker_state()
            if self._changed("laps", st.laps_version):
                values.append((self.laps, panels.laps_html(st)))
                if self.lap_chart is not None:
                    chart = (sorted((dict(r) for r in st.laps.values() if r.get("complete") and r.get("time_s")),
                                    key=lambda r: r.get("lap_index", 0)),
                             None if st.reference is None else st.reference.time_s)
            values.append((self.tyres, panels.tyres_html(st, now_ms)))
        for widget, value in values:
            if widget.value != value:
                widget.value = value
        if picker is not None:
            self._sync_picker(*picker)
        if chart is not None and chart[0]:
            self._update_lap_chart(*chart)
        self.pump.mark_dirty()  # the canvas's connection line ages even without frames

    def _update_lap_chart(self, rows: list[dict[str, Any]], reference_s: float | None) -> None:
        """A new lap-times figure in place of the last one (once per lap)."""
        self.lap_chart = lap_figure(rows, reference_s)
        self.lap_chart_box.outputs = (_display_data(self.lap_chart),)

    def _picker_state(self) -> tuple[list[tuple[str, str]], str | None]:
        """The switcher's options (kinds, then this session's valid laps) and the current one."""
        sid = self.state.title()["session_id"]
        options = list(REFERENCE_KINDS)
        for key in sorted(self.state.laps):
            r = self.state.laps[key]
            if r.get("valid") and r.get("time_s") and sid:
                options.append((f"lap {r.get('lap')} ({panels.fmt_lap(r['time_s'])})", f"{sid}:{key}"))
        ref = self.state.reference
        current = None
        if ref is not None:
            current = ref.kind if ref.kind != "lap" else (f"{ref.session}:{ref.lap_index}" if ref.session else None)
        return options, current

    def _sync_picker(self, options: list[tuple[str, str]], current: str | None) -> None:
        self._picker_quiet = True
        try:
            if [v for _, v in options] != [v for _, v in self.picker.options]:
                self.picker.options = options
            values = {v for _, v in options}
            self.picker.value = current if current in values else self.picker.value if self.picker.value in values else None
        finally:
            self._picker_quiet = False

    def render_stats(self) -> dict[str, Any]:
        """Updates sent to the page and acknowledged, and the sample-to-paint lag the page
        measured (``lag_p50_ms``, ``lag_p99_ms``)."""
        return self.pump.stats()


class TeamDashboard(_CanvasOwner, W.VBox):
    """The team view on a relay: pick drivers; each one's lap, delta, fuel and tips side by
    side; all of them on one map. ``drivers`` None shows every live driver (up to 6)."""

    def __init__(self, url: str | None = None, token: str | None = None, drivers: Sequence[str] | None = None, *,
                 rate: int = 10, ssl: SslArg = None, start: bool = True):
        self.url, self.token = resolve_url(url, token)
        self.team = TeamState()
        self._fixed = list(drivers) if drivers is not None else None
        self.picker = W.SelectMultiple(options=[], value=(), description="drivers", rows=4,
                                       layout=W.Layout(width="360px"))
        self._picked_by_user = False
        self.picker.observe(self._on_pick, names="value")
        self._map_key: Any = None
        self._last_sample_ms: float | None = None
        self.canvas_slot = canvas_slot("team", self._build)
        self.pump = self.canvas.pump
        self.columns = W.HBox([], layout=W.Layout(flex_flow="row wrap"))
        self._column_html: dict[str, W.HTML] = {}
        self.status = W.HTML("")
        super().__init__([W.HTML(panels.CSS), W.HBox([self.picker, self.status]), self.canvas_slot, self.columns])
        self.add_class("pitbox-team-dashboard")
        self._link = _Link(self.url, self.token, self._on_message, channels=TEAM_CHANNELS, rate=rate, drivers=None,
                           history=False, ssl=ssl, name="pitbox-team-dashboard")
        self._ticker = _Ticker(self._slow, SLOW_PERIOD_S, "pitbox-team-panels")
        self._started = False
        if start:
            self.start()

    def start(self) -> TeamDashboard:
        if not self._started:
            self._started = True
            self._link.start()
            self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()
        self._link.stop()
        self.pump.stop()

    @property
    def selected(self) -> list[str]:
        return list(self.picker.value)

    def _on_message(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "hello":
            self.team.connection = "connected"
        self.team.take(msg)
        self.pump.mark_dirty()

    def _on_pick(self, change: dict[str, Any]) -> None:
        if not getattr(self, "_quiet", False):
            self._picked_by_user = True
        self._map_key = None
        self.pump.request_full()

    def _build(self, full: bool) -> tuple[dict[str, Any], list[Any]]:
        content, buffers = self.team.canvas_update(self.selected, full=True)
        key = (content.get("map_driver"), (content.get("reference") or {}).get("label"),
               (content.get("reference") or {}).get("n"))
        if not full and key == self._map_key:  # the map goes out only when it changes
            content.pop("reference", None)
            buffers.clear()
        self._map_key = key
        newest = content.get("t_sample_ms")
        if newest is not None and self._last_sample_ms is not None and newest <= self._last_sample_ms:
            content["t_sample_ms"] = None  # nothing new since the last update: no lag to measure
        else:
            self._last_sample_ms = newest
        return content, buffers

    def _slow(self) -> None:
        if self._link.error:
            self.team.connection = "error"
            self.status.value = f'<span style="color:#d70015">{panels.esc(self._link.error)}</span>'
        else:
            self.team.connection = "connected" if self._link.connected else "reconnecting"
        roster = self.team.live_drivers()
        options = [(f"{d.get('name') or d.get('id')}{'' if d.get('connected', True) else ' (gone)'}", str(d.get("id")))
                   for d in roster]
        self._quiet = True
        try:
            if options != list(self.picker.options):
                keep = tuple(v for v in self.picker.value if v in {o[1] for o in options})
                self.picker.options = options
                self.picker.value = keep
            if not self._picked_by_user:
                ids = [o[1] for o in options]
                want = tuple(d for d in (self._fixed or ids) if d in ids)[:6]
                if want != tuple(self.picker.value):
                    self.picker.value = want
        finally:
            self._quiet = False
        children = []
        for i, did in enumerate(self.selected):
            st = self.team.driver(did)
            name = next((str(d.get("name") or did) for d in roster if str(d.get("id")) == did), did)
            box = self._column_html.get(did)
            if box is None:
                box = self._column_html[did] = W.HTML(layout=W.Layout(min_width="240px", max_width="420px", margin="0 18px 8px 0"))
            with st.lock:
                value = panels.team_column_html(st, st.title()["driver"] or name, TEAM_COLORS[i % len(TEAM_COLORS)])
            if box.value != value:
                box.value = value
            children.append(box)
        if [id(c) for c in children] != [id(c) for c in self.columns.children]:
            self.columns.children = children
        self.pump.mark_dirty()

    def render_stats(self) -> dict[str, Any]:
        return self.pump.stats()
