"""The voiced coach: live stream messages in, speech out at the right moment.

:class:`VoiceCoach` takes what the live coach puts on the stream (contract A: ``reference``,
``tip``, ``coach`` and ``frame`` messages) and

* learns the quiet zones from each ``reference``;
* turns each ``tip`` into a phrase (:func:`~pitbox.voice.tip_phrase`) and synthesizes it at
  once, in a background thread (the tip is known a lap before it is spoken, so the cloud's
  latency never delays speech);
* on every ``frame`` runs the :class:`~pitbox.voice.scheduler.Scheduler`, plays what it
  starts on the local player, stops what it cuts, and sends a ``voice`` message (contract A)
  for everything spoken, so a remote coach hears the same;
* answers voice commands (:meth:`command`) through the same scheduler, from the latest
  ``coach`` message and frame values;
* says, as a critical message, when the fuel will not last the lap (from the ``coach``
  message's fuel estimate), and, at verbosity ``verbose``, each completed lap's time against
  the best as information.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pitbox.voice.player import Player, make_player
from pitbox.voice.scheduler import COACHING, Action, Message, QuietZones, Scheduler, voice_message
from pitbox.voice.text import corner_words, say_seconds, tip_phrase
from pitbox.voice.voice import Voice

log = logging.getLogger(__name__)

#: the commands :meth:`VoiceCoach.command` answers (the recogniser's grammar says the same)
COMMANDS = ("repeat", "mute", "unmute", "quiet in the corners", "talk anywhere", "last lap", "delta", "fuel",
            "best lap", "where am i losing time", "focus on turn")
#: frame channels the voice coach reads (subscribe to these on a stream)
CHANNELS = ("Lap", "LapDistPct", "OnPitRoad", "pitbox_lap_dist_m", "pitbox_delta_s", "LapLastLapTime",
            "LapBestLapTime", "FuelLevel")
FUEL_CRITICAL_LAPS = 1.0  #: laps of fuel left under which the critical "box" call is made


def frame_values(values: Any) -> dict[str, Any]:
    """The channels the voice coach reads from a frame's values: a dict, a numpy structured
    row, or a row with derived channels (an object with ``row`` and ``extra``)."""
    if hasattr(values, "row") and hasattr(values, "extra"):
        out = frame_values(values.row)
        out.update({k: v for k, v in values.extra.items() if k in CHANNELS})
        return out
    names = getattr(getattr(values, "dtype", None), "names", None)
    if names is not None:
        return {k: values[k].item() if hasattr(values[k], "item") else values[k] for k in CHANNELS if k in names}
    return {k: values[k] for k in CHANNELS if k in values}


@dataclass
class Ready:
    """A message whose audio is ready: the arrival and ready times (``perf_counter`` [s])."""

    message: Message
    arrived: float
    ready: float
    session: int = 0  #: the coach's session count when the message was queued


class VoiceCoach:
    """Live glue between the stream, the scheduler, the voice and the player (module docstring).

    ``send`` receives every ``voice`` message (e.g. the stream hub's broadcast).
    ``background=False`` synthesizes in the calling thread (tests, notebooks that step frames
    by hand). The scheduler's output latency is the player's unless a scheduler is given.
    """

    def __init__(self, voice: Voice | None = None, player: Player | None = None,
                 scheduler: Scheduler | None = None, send: Callable[[dict[str, Any]], None] | None = None,
                 *, background: bool = True, zones: QuietZones | None = None, length_m: float | None = None):
        self.voice = voice if voice is not None else Voice()
        self.player = player if player is not None else make_player()
        self.scheduler = scheduler if scheduler is not None else Scheduler(latency_s=self.player.latency_s)
        if zones is not None:
            self.scheduler.set_zones(zones)
        self.send = send
        self.background = background
        self.length_m = length_m if length_m is not None else (zones.length_m if zones is not None else None)
        self.coach_state: dict[str, Any] | None = None
        self.values: dict[str, Any] = {}
        self.t: float | None = None
        self.lap: int | None = None
        self.tips: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []  #: every voice message, in order
        self.ready_log: list[Ready] = []  #: arrival → audio ready of every message
        self.actions: list[Action] = []
        self._fuel_called_lap: int | None = None
        self._lap_time_said: Any = None
        self._ready: queue.Queue[Ready] = queue.Queue()
        self._jobs: queue.Queue[tuple[Message, float, int] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._pending_jobs = 0
        self._lock = threading.Lock()
        self._commands: queue.Queue[tuple[str, int | None, str | int | None]] = queue.Queue()
        self._sessions: queue.SimpleQueue[None] = queue.SimpleQueue()  # new sessions not yet taken in
        self._session = 0  # sessions taken in (on the frames' thread)
        self.answers: list[tuple[str, int | None, str]] = []  #: (command, arg, answer) of each posted command
        self.listener: Any = None  #: the microphone's command listener, when one runs (``pitbox record``)
        #: push-to-talk read from the frames (:class:`~pitbox.voice.ptt.RadioPushToTalk`), or None
        self.ptt: Any = None
        self.errors = 0  #: stream input that could not be handled (as a publisher)

    # -- stream input ------------------------------------------------------------------------

    def handle(self, msg: Mapping[str, Any]) -> list[Action]:
        """Any stream message: ``reference``, ``tip``, ``coach`` or ``frame`` (others ignored)."""
        kind = msg.get("type")
        if kind == "frame":
            return self.on_frame(float(msg.get("t") or 0.0), msg.get("values") or {})
        if kind == "reference":
            self.on_reference(msg)
        elif kind == "tip":
            self.on_tip(msg)
        elif kind == "coach":
            self.on_coach(msg)
        return []

    def on_reference(self, msg: Mapping[str, Any]) -> None:
        zones = QuietZones.from_reference_message(msg)
        self.scheduler.set_zones(zones)
        self.length_m = zones.length_m

    def on_tip(self, tip: Mapping[str, Any]) -> Message:
        """Queue a tip (a ``tip`` message, or a row of ``pitbox coach``'s tips)."""
        self.tips.append(dict(tip))
        corner = str(tip.get("corner")) if tip.get("corner") is not None else None
        lap = int(tip["lap"]) if tip.get("lap") is not None else None
        m = Message(tip_phrase(tip), "tip", corner=corner, lap=lap, rank=int(tip.get("rank") or 1),
                    key=f"tip:{corner}")
        return self._enqueue(m)

    def on_coach(self, msg: Mapping[str, Any]) -> None:
        self.coach_state = dict(msg)
        fuel = msg.get("fuel") or {}
        left = fuel.get("laps_left")
        lap = msg.get("lap")
        if left is not None and left < FUEL_CRITICAL_LAPS and self._fuel_called_lap != lap:
            self._fuel_called_lap = lap
            self.say("Box this lap: fuel will not last the lap", "critical")
        last = msg.get("last_lap_s")
        if last is not None and lap is not None and lap != self._lap_time_said and self.scheduler.verbosity == "verbose":
            # information (verbose only): the lap just completed, against the best
            self._lap_time_said = lap
            best = msg.get("best_lap_s")
            text = f"Lap {say_seconds(float(last))}"
            if best is not None and float(last) - float(best) >= 0.05:
                text += f", {say_seconds(float(last) - float(best))} off your best"
            elif best is not None and abs(float(last) - float(best)) < 0.0005:
                text += ", your best"
            self._enqueue(Message(text, "info", key="lap_time"))

    def say(self, text: str, priority: str = "info", corner: str | None = None, ttl_s: float | None = None) -> Message:
        """Queue any message (synthesized like a tip)."""
        return self._enqueue(Message(text, priority, corner=corner, ttl_s=ttl_s))

    # -- synthesis -----------------------------------------------------------------------------

    def _enqueue(self, m: Message) -> Message:
        m.created_t = self.t if self.t is not None else 0.0
        arrived = time.perf_counter()
        if not self.background:
            self._synthesize(m)
            self._submit(Ready(m, arrived, time.perf_counter(), self._session))
            return m
        with self._lock:
            self._pending_jobs += 1
            self._idle.clear()
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="pitbox-voice-synth", daemon=True)
                self._worker.start()
        self._jobs.put((m, arrived, self._session))
        return m

    def _synthesize(self, m: Message) -> None:
        sp = self.voice.synthesize(m.text)
        m.audio, m.spoken, m.duration_s = sp, sp.spoken, sp.duration_s

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            m, arrived, session = job
            try:
                self._synthesize(m)
                self._ready.put(Ready(m, arrived, time.perf_counter(), session))
            except Exception:  # a phrase that cannot be made must not stop the voice
                log.exception("voice: cannot synthesize %r", m.text)
            finally:
                with self._lock:
                    self._pending_jobs -= 1
                    if self._pending_jobs == 0:
                        self._idle.set()

    def wait_synthesized(self, timeout: float = 60.0) -> bool:
        """Until every queued phrase is synthesized (tests, benchmarks); False on timeout."""
        return self._idle.wait(timeout)

    def _submit(self, r: Ready) -> None:
        self.ready_log.append(r)
        m = r.message
        if r.session != self._session:  # queued in a session that has ended since
            if m.priority in COACHING:
                self.scheduler.expired.append(m)  # about the old session
                return
            m.created_t = None  # an answer: its time to live runs from now, on the new clock
        self.scheduler.submit(m, t=m.created_t)

    # -- frames ----------------------------------------------------------------------------------

    def _distance(self, values: Mapping[str, Any]) -> float | None:
        d = values.get("pitbox_lap_dist_m")
        if d is not None:
            return float(d)
        pct = values.get("LapDistPct")
        length = self.length_m
        if length is None and self.scheduler.zones is not None:
            length = self.scheduler.zones.length_m
        if pct is None or length is None or not math.isfinite(float(pct)) or float(pct) < 0:
            return None
        return float(pct) * length

    def on_frame(self, t: float, values: Mapping[str, Any]) -> list[Action]:
        """One frame (session time ``t`` [s], channel values); plays, stops and sends what the
        scheduler decides. Returns the actions."""
        self.t = t
        self.values.update({k: v for k, v in values.items() if v is not None})
        lap = values.get("Lap")
        self.lap = int(lap) if lap is not None else self.lap
        while True:
            try:
                self._sessions.get_nowait()
            except queue.Empty:
                break
            self._take_new_session()
        while True:
            try:
                name, arg, reply_to = self._commands.get_nowait()
            except queue.Empty:
                break
            self.answers.append((name, arg, self.command(name, arg, reply_to)))
        while True:
            try:
                self._submit(self._ready.get_nowait())
            except queue.Empty:
                break
        acts = self.scheduler.update(t, self.lap, self._distance(values), bool(values.get("OnPitRoad") or False))
        for a in acts:
            self._do(a)
        return acts

    def _do(self, a: Action) -> None:
        self.actions.append(a)
        if a.kind == "start":
            sp = a.message.audio
            if sp is not None and getattr(sp, "wav", b""):
                try:
                    self.player.play(sp.wav)
                except Exception as exc:  # a broken audio device must not stop the coach
                    log.warning("voice: the player failed (%s)", exc)
            msg = voice_message(a.message, a.t, a.lap)
            self.sent.append(msg)
            if self.send is not None:
                self.send(msg)
        elif a.kind == "stop":
            try:
                self.player.stop()
            except Exception as exc:
                log.warning("voice: the player failed to stop (%s)", exc)

    # -- commands -----------------------------------------------------------------------------

    def post_command(self, name: str, arg: int | None = None, reply_to: str | int | None = None) -> None:
        """A recognised command from another thread (the microphone's listener, a client on
        the stream): carried out by :meth:`command` on the next frame, on the frame's thread
        (the scheduler is not shared between threads)."""
        self._commands.put((name, arg, reply_to))

    def command(self, name: str, arg: int | None = None, reply_to: str | int | None = None) -> str:
        """Carry out a recognised command and queue its spoken answer; returns the answer.
        ``reply_to`` (a client's command ``id``) goes out with the answer's ``voice`` message.
        Call it on the thread that feeds the frames (else :meth:`post_command`)."""
        s = self.scheduler
        if name == "repeat":
            last = s.last_message
            text = last.text if last is not None else "Nothing to repeat yet"
        elif name == "mute":
            for a in s.mute(True, self.t):
                self._do(a)
            text = "Muted"
            self._enqueue(Message(text, "reply", unmutable=True, reply_to=reply_to))
            return text
        elif name == "unmute":
            s.mute(False)
            text = "Voice on"
        elif name == "quiet in the corners":
            s.anywhere = False
            text = "Quiet in the corners"
        elif name == "talk anywhere":
            s.anywhere = True
            text = "Talking anywhere"
        elif name == "focus on turn":
            s.focus = f"T{int(arg)}" if arg else None
            text = f"Focus on {corner_words(s.focus)}" if s.focus else "Focus off"
        else:
            text = self.answer(name)
        self._enqueue(Message(text, "reply", reply_to=reply_to))
        return text

    def _num(self, *names: str) -> float | None:
        for n in names:
            v = (self.coach_state or {}).get(n)
            if v is None:
                v = self.values.get(n)
            try:
                f = float(v) if v is not None else None
            except (TypeError, ValueError):
                f = None
            if f is not None and math.isfinite(f) and f > 0:
                return f
        return None

    def answer(self, name: str) -> str:
        """The answer to an information command from the latest coach state and frames."""
        cs = self.coach_state or {}
        if name == "last lap":
            v = self._num("last_lap_s", "LapLastLapTime")
            return f"Last lap {say_seconds(v)}" if v else "No lap time yet"
        if name == "best lap":
            v = self._num("best_lap_s", "LapBestLapTime")
            return f"Best lap {say_seconds(v)}" if v else "No best lap yet"
        if name == "delta":
            v = self.values.get("pitbox_delta_s")
            if v is None:
                return "No delta yet"
            v = float(v)
            return f"{'Down' if v > 0 else 'Up'} {say_seconds(abs(v))}" if abs(v) >= 0.005 else "Level"
        if name == "fuel":
            fuel = cs.get("fuel") or {}
            left = fuel.get("laps_left")
            level = fuel.get("level_l", self.values.get("FuelLevel"))
            if left is not None:
                return f"Fuel for {left:.1f} laps"
            if level is not None:
                return f"{float(level):.0f} litres of fuel"
            return "No fuel figure yet"
        if name == "where am i losing time":
            deltas = [d for d in cs.get("corner_deltas") or [] if d.get("delta_s") is not None]
            if deltas:
                worst = max(deltas, key=lambda d: float(d["delta_s"]))
                if float(worst["delta_s"]) > 0.005:
                    return f"Most time lost in {corner_words(str(worst['corner']))}, {say_seconds(float(worst['delta_s']))}"
            if self.tips:
                worst_tip = max(self.tips[-6:], key=lambda t: float(t.get("time_loss_s") or 0))
                return tip_phrase(worst_tip)
            return "No time lost to the reference yet"
        return "Sorry"

    # -- as a publisher beside the stream (the recorder's / live coach's targets) ------------------

    def publish_frame(self, tick: int, session_time: float, values: Any) -> None:
        """A frame as the recorder or the live coach publishes it (a dict, a numpy row, or a
        row with the live coach's derived channels). Never raises: a publisher beside the
        stream must not stop it (failures are logged, the first few with their traceback)."""
        try:
            if self.ptt is not None:
                self.ptt.frame(values)
            self.on_frame(float(session_time), frame_values(values))
        except Exception:
            self._failed("frame")

    def publish_message(self, msg: Mapping[str, Any]) -> None:
        """The live coach's ``reference``, ``coach`` and ``tip`` messages (never raises, as
        :meth:`publish_frame`)."""
        try:
            self.handle(msg)
        except Exception:
            self._failed(str(msg.get("type")))

    def _failed(self, what: str) -> None:
        self.errors += 1
        if self.errors <= 3:
            log.exception("voice coach: %s not handled", what)

    def publish_lap(self, row: Mapping[str, Any]) -> None:
        pass

    def publish_session(self, meta: Mapping[str, Any]) -> None:
        """A new session (from any thread; taken in with the next frame): the tips and
        information waiting are about the old one and expire; the answers to the driver's
        commands are still said."""
        self._sessions.put(None)

    def _take_new_session(self) -> None:
        self._session += 1
        self.scheduler.new_session()
        self.coach_state = None
        self.tips = []

    def publish_session_info(self, info: Any) -> None:
        if self.ptt is not None:
            self.ptt.session_info(info)

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop the synthesis thread, the push-to-talk and the player."""
        if self.ptt is not None:
            self.ptt.close()
        if self._worker is not None and self._worker.is_alive():
            self._jobs.put(None)
            self._worker.join(timeout=10)
        self.player.close()
