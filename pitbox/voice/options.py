"""``pitbox record``'s voice options: the voiced coach beside the live coach.

Nothing heavy is imported here (the parser is built from this module); :func:`start_voice`
imports the voice when ``--voice`` is given.

``pitbox record ... --voice auto`` speaks the live coach's tips on the straight before their
corner (on the local player) and puts every phrase on the stream as a ``voice`` message;
``--voice-commands ptt`` (Enter to talk, Enter again to stop; with ``--ptt radio`` iRacing's
radio button, bound to the wheel) or ``wake`` ("pit box" + a command) listens to the
microphone and answers through the same scheduler.
"""

from __future__ import annotations

import argparse
import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pitbox.errors import ConfigError

log = logging.getLogger(__name__)

ENGINES = ("auto", "elevenlabs", "local", "text")
PLAYERS = ("auto", "winsound", "sounddevice", "aplay", "null")
VERBOSITY = ("quiet", "normal", "verbose")
LISTEN = ("off", "ptt", "wake")
#: what starts and ends a push-to-talk clip: Enter in the recorder's terminal, or iRacing's
#: radio transmit (``RadioTransmitCarIdx`` == ``PlayerCarIdx``), bound to a wheel button
PTT = ("enter", "radio")


def add_voice_options(parser: argparse.ArgumentParser) -> None:
    """``--voice``, ``--voice-id``, ``--voice-player``, ``--voice-verbosity``,
    ``--voice-commands``, ``--ptt``, ``--mic-device``."""
    g = parser.add_argument_group("voice coach (needs the live coach; see docs/voice.md)")
    g.add_argument("--voice", choices=ENGINES, default=None, metavar="ENGINE",
                   help="speak the live coach's tips and answers: auto (ElevenLabs with ELEVENLABS_API_KEY, else the "
                        "offline voice), elevenlabs, local or text (no audio: only the stream's voice messages); "
                        "default off")
    g.add_argument("--voice-id", default=None, metavar="V",
                   help="ElevenLabs voice id, or the offline voice (espeak-ng: en-us, en-gb+f3 ...)")
    g.add_argument("--voice-player", choices=PLAYERS, default="auto",
                   help="where the driver hears it (default auto: winsound, sounddevice, aplay, else none)")
    g.add_argument("--voice-verbosity", choices=VERBOSITY, default="normal",
                   help="quiet: safety and answers only; normal: + tips (default); verbose: + information")
    g.add_argument("--voice-commands", choices=LISTEN, default="off",
                   help="spoken commands on the microphone: ptt (Enter to talk, Enter to stop), wake ('pit box' + "
                        "command), off (default)")
    g.add_argument("--ptt", choices=PTT, default=None,
                   help="push-to-talk button: enter (in this terminal, the default) or radio (iRacing's radio transmit, "
                        "bound to a wheel button: talk while it is held; implies --voice-commands ptt)")
    g.add_argument("--mic-device", default=None, metavar="DEV", help="microphone name or index (default the system's)")


def check_voice_options(args: Any) -> None:
    """A clear error for combinations that cannot work (before anything starts)."""
    ptt = getattr(args, "ptt", None)
    if ptt is not None:
        mode = getattr(args, "voice_commands", "off")
        if mode == "wake":
            raise ConfigError(f"record: --ptt {ptt} is push-to-talk; it cannot go with --voice-commands wake "
                              "(which listens all the time)")
        if mode == "off":
            args.voice_commands = "ptt"  # --ptt radio alone asks for push-to-talk
    if getattr(args, "voice", None) is None:
        if getattr(args, "voice_commands", "off") != "off":
            flag = "--ptt" if ptt is not None else "--voice-commands"
            raise ConfigError(f"record: {flag} needs --voice (the answers are spoken)")
        return
    if getattr(args, "no_live_coach", False):
        raise ConfigError("record: --voice speaks the live coach's tips; it cannot run with --no-live-coach")


def start_voice(args: Any, senders: Sequence[Any]) -> Any:
    """The :class:`~pitbox.voice.coach.VoiceCoach` that ``--voice`` asks for (None without
    it), sending its ``voice`` messages to every ``senders`` publisher that has
    ``publish_message``; warmed up (the SDK imported, the offline voice started) so the
    first phrase is not late. With ``--voice-commands`` its microphone listener is started
    too (``coach.listener``)."""
    check_voice_options(args)
    if getattr(args, "voice", None) is None:
        return None
    from pitbox.voice.coach import VoiceCoach
    from pitbox.voice.player import make_player
    from pitbox.voice.scheduler import Scheduler
    from pitbox.voice.voice import Voice

    outs = [s for s in senders if hasattr(s, "publish_message")]

    def send(msg: dict[str, Any]) -> None:
        for s in outs:
            s.publish_message(msg)

    voice = Voice(engine=args.voice, voice=getattr(args, "voice_id", None))
    voice.warm_up()
    player = make_player(getattr(args, "voice_player", "auto") or "auto")
    sched = Scheduler(latency_s=player.latency_s, verbosity=getattr(args, "voice_verbosity", "normal") or "normal")
    coach = VoiceCoach(voice, player, sched, send)
    mode = getattr(args, "voice_commands", "off") or "off"
    coach.listener = None
    if mode != "off":
        try:
            coach.listener = start_listener(coach, mode, getattr(args, "mic_device", None),
                                            ptt=getattr(args, "ptt", None) or "enter")
        except BaseException:
            coach.close()
            raise
    return coach


class CommandListener:
    """Recognises each clip of ``clips`` (int16 samples at ``rate`` [Hz]) on a daemon thread
    and hands every command to ``coach.post_command`` (carried out on the coach's frame
    thread, answered through its scheduler). ``on_result`` sees every recognition."""

    def __init__(self, coach: Any, clips: Iterable[Any], rate: int, *, wake: bool = False,
                 recognizer: Any = None, on_result: Callable[[Any], None] | None = None):
        from pitbox.voice.commands import CommandRecognizer

        self.coach = coach
        self.clips = clips
        self.rate = int(rate)
        self.recognizer = recognizer if recognizer is not None else CommandRecognizer(wake=wake)
        self.on_result = on_result
        self.results: list[Any] = []
        self._thread = threading.Thread(target=self._run, name="pitbox-voice-commands", daemon=True)

    def start(self) -> CommandListener:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Until every clip is heard (a finite ``clips``); False on timeout."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        for clip in self.clips:
            try:
                r = self.recognizer.recognise(clip, self.rate)
            except Exception:  # a clip that cannot be decoded must not stop the listener
                log.exception("voice commands: cannot decode a clip")
                continue
            self.results.append(r)
            if r.command:
                log.info("voice command: %s%s", r.command, f" {r.arg}" if r.arg else "")
                self.coach.post_command(r.command, r.arg)
            if self.on_result is not None:
                self.on_result(r)


def _ptt_clips(mic: Any, lines: queue.Queue[str | None]) -> Iterable[Any]:
    """Push-to-talk on the terminal: each Enter starts a clip, the next Enter ends it."""
    print("voice commands: press Enter, speak, press Enter again", file=sys.stderr, flush=True)
    while True:
        if lines.get() is None:
            return
        yield mic.record_until(lambda: lines.get(), max_s=6.0)


def start_listener(coach: Any, mode: str, device: Any = None, *, ptt: str = "enter", mic: Any = None,
                   recognizer: Any = None) -> CommandListener:
    """The microphone listener for ``--voice-commands`` (``ptt`` or ``wake``); raises
    :class:`~pitbox.voice.errors.VoiceError` when there is no microphone. ``ptt``:
    ``enter`` (the terminal) or ``radio`` (iRacing's radio transmit, read from the frames
    the coach gets: :class:`~pitbox.voice.ptt.RadioPushToTalk` becomes ``coach.ptt``).
    ``mic``: another microphone than the system's (``record_until``, ``sample_rate``)."""
    if ptt not in PTT:
        raise ConfigError(f"record: --ptt {ptt!r}: expected one of {', '.join(PTT)}")
    if mic is None:
        from pitbox.voice.mic import Microphone

        dev: Any = int(device) if device is not None and str(device).isdigit() else device
        mic = Microphone(device=dev)  # a clear VoiceError without PortAudio or an input device
    if mode == "ptt" and ptt == "radio":
        from pitbox.voice.ptt import RadioPushToTalk

        radio = RadioPushToTalk(mic)
        coach.ptt = radio
        print("voice commands: hold iRacing's radio button (push-to-talk) and speak", file=sys.stderr, flush=True)
        return CommandListener(coach, radio.clips(), radio.sample_rate, recognizer=recognizer).start()
    if mode == "wake":
        return CommandListener(coach, mic.utterances(), mic.sample_rate, wake=True).start()
    lines: queue.Queue[str | None] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_stdin, name="pitbox-voice-ptt", daemon=True).start()
    return CommandListener(coach, _ptt_clips(mic, lines), mic.sample_rate).start()
