"""Commands ``pitbox voice say``, ``pitbox voice hear`` and ``pitbox voice listen``.

Nothing heavy is imported here: the parser must build fast (``pitbox --help``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ENGINES = ("auto", "elevenlabs", "local", "text")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("voice", help="speak a phrase, recognise a spoken command (voiced coaching)",
                              description="Voiced coaching: text to speech through ElevenLabs or an offline voice, "
                                          "and spoken commands. See docs/voice.md.")
    sub = p.add_subparsers(dest="voice_command", metavar="ACTION")

    s = sub.add_parser("say", help="speak TEXT (made for the ear) into a WAV file, or on the local player",
                       description="Speak through the same engines, cache, fallback and text normalisation as the "
                                   "live coach. ELEVENLABS_API_KEY enables the cloud; ELEVENLABS_BASE_URL points the "
                                   "official client at another endpoint.")
    s.add_argument("text", help="what to say, e.g. 'T3: brake 20 m later, 0.575 s'")
    s.add_argument("--engine", choices=ENGINES, default="auto",
                   help="auto (ElevenLabs with a key, else local), elevenlabs, local or text (default auto)")
    s.add_argument("--voice", default=None, help="ElevenLabs voice id, or the local voice (espeak-ng: en-us, en-gb+f3 …)")
    s.add_argument("--model", default=None, help="ElevenLabs model (default eleven_flash_v2_5)")
    s.add_argument("--out", default=None, help="write the WAV here (default: play it on the local player)")
    s.add_argument("--budget", type=float, default=None, help="seconds the cloud may take, retries included (default 3)")
    s.add_argument("--cache-dir", default=None, help="phrase cache folder (default $PITBOX_VOICE_CACHE or the user cache)")
    s.add_argument("--no-cache", action="store_true", help="neither read nor write the phrase cache")
    s.add_argument("--raw", action="store_true", help="say the text as given (no units written out)")
    s.add_argument("--json", action="store_true", help="engine, spoken text, latency and duration as JSON")
    s.set_defaults(func=_say)

    h = sub.add_parser("hear", help="the voice command spoken in a WAV file, or none",
                       description="Recognise one command (pocketsphinx grammar + rejection of anything else).")
    h.add_argument("file", help="a PCM WAV file (any rate; mono or stereo)")
    h.add_argument("--wake", action="store_true", help="require the wake phrase 'pit box' before the command")
    h.add_argument("--json", action="store_true", help="command, argument, what was heard, decode time as JSON")
    h.set_defaults(func=_hear)

    li = sub.add_parser("listen", help="push-to-talk on the microphone: print each command",
                        description="Press Enter to start talking and Enter again to stop (or --wake: listen all the "
                                    "time for 'pit box' followed by a command). Needs PortAudio and an input device.")
    li.add_argument("--device", default=None, help="input device name or index (default: the system's)")
    li.add_argument("--wake", action="store_true", help="listen continuously for 'pit box <command>'")
    li.add_argument("--seconds", type=float, default=6.0, help="longest push-to-talk recording (default 6 s)")
    li.add_argument("--json", action="store_true", help="one JSON object per line")
    li.set_defaults(func=_listen)
    p.set_defaults(func=lambda args: _help(p))


def _help(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _say(args: argparse.Namespace) -> int:
    from pitbox.voice.errors import VoiceError
    from pitbox.voice.voice import DEFAULT_BUDGET_S, Voice

    cache: Any = False if args.no_cache else (args.cache_dir or None)
    v = Voice(engine=args.engine, voice=args.voice, model=args.model, cache_dir=cache,
              budget_s=args.budget if args.budget is not None else DEFAULT_BUDGET_S, normalise=not args.raw)
    sp = v.synthesize(args.text)
    out = None
    if args.out:
        if not sp.wav:
            raise VoiceError(f"--out {args.out}: the {sp.engine} engine made no audio (use --engine local or elevenlabs)")
        out = Path(args.out)
        try:
            out.write_bytes(sp.wav)
        except OSError as exc:
            raise VoiceError(f"--out {out}: cannot write ({exc.strerror})") from None
    elif sp.wav:
        from pitbox.voice.player import make_player

        player = make_player("auto")
        player.play(sp.wav)
        if player.name != "null":
            import time

            time.sleep(sp.duration_s + player.latency_s)  # the CLI waits for the phrase to finish
        player.close()
    info = sp.to_dict()
    info["out"] = str(out) if out else None
    if args.json:
        print(json.dumps(info))
    else:
        where = f" -> {out}" if out else ""
        print(f"{sp.engine}{' (cached)' if sp.cached else ''}: {sp.spoken!r}, {sp.duration_s:.2f} s of audio, "
              f"ready in {sp.latency_s * 1000:.0f} ms{where}")
        for note in sp.notes:
            print(f"  fallback: {note}", file=sys.stderr)
    return 0


def _hear(args: argparse.Namespace) -> int:
    from pitbox.voice.commands import CommandRecognizer
    from pitbox.voice.errors import VoiceError

    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VoiceError(f"{path}: cannot read ({exc.strerror})") from None
    rec = CommandRecognizer(wake=args.wake)
    r = rec.recognise_wav(data, name=str(path))
    if args.json:
        print(json.dumps(r.to_dict()))
    else:
        print(r.phrase if r.command else "none")
    return 0


def _listen(args: argparse.Namespace) -> int:
    from pitbox.voice.commands import CommandRecognizer
    from pitbox.voice.mic import Microphone

    device: Any = int(args.device) if args.device is not None and str(args.device).isdigit() else args.device
    mic = Microphone(device=device)  # raises VoiceError with a clear reason when there is no input
    rec = CommandRecognizer(wake=args.wake)

    def show(r: Any) -> None:
        if args.json:
            print(json.dumps(r.to_dict()), flush=True)
        else:
            print(r.phrase if r.command else "none", flush=True)

    if args.wake:
        print("listening for 'pit box' + a command; Ctrl-C to stop", file=sys.stderr)
        for clip in mic.utterances():
            r = rec.recognise(clip, mic.sample_rate)
            if r.command:
                show(r)
        return 0
    print("press Enter, speak, press Enter again (Ctrl-C to stop)", file=sys.stderr)
    while True:
        if sys.stdin.readline() == "":
            return 0
        clip = mic.record_until(lambda: sys.stdin.readline() is not None, max_s=args.seconds)
        show(rec.recognise(clip, mic.sample_rate))
