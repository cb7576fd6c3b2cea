"""A stand-in for the ElevenLabs text-to-speech API on 127.0.0.1, for tests and benchmarks.

It speaks the HTTP API the official SDK calls (``POST /v1/text-to-speech/{voice_id}`` and
``/v1/text-to-speech/{voice_id}/stream``, the ``xi-api-key`` header, JSON ``{"text",
"model_id"}``, the ``output_format`` query) and answers with real speech, made by the local
espeak-ng when it is installed (else a tone as long as speech would be), as raw PCM16
(``pcm_<rate>``) or WAV (``wav_<rate>``). Point the official client at it with
``ElevenLabs(api_key=..., base_url=server.url)`` or ``Voice(base_url=server.url)``.

Modes (``server.mode``, or a ``server.script`` list consumed one request at a time):

* ``ok``: 200 with the audio;
* ``401``: an invalid key (also answered whenever the key is not ``server.api_key``);
* ``429``: too many concurrent requests;
* ``500``: a server error;
* ``slow``: the request is held until the client gives up or the server stops (a timeout
  without depending on a clock); ``slow:S`` answers after S seconds;
* ``drop``: the connection is closed without an answer.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from pitbox.voice.wav import pcm_to_wav, read_wav, resample

log = logging.getLogger(__name__)

_PATH = re.compile(r"^/v1/text-to-speech/(?P<voice>[^/]+)(?P<stream>/stream)?$")


@dataclass
class Request:
    """One request the stand-in received."""

    path: str
    voice_id: str
    stream: bool
    api_key: str | None
    output_format: str | None
    body: dict[str, Any]
    mode: str
    headers: dict[str, str] = field(default_factory=dict)
    samples: int = 0  #: samples of audio sent back (0 when no audio was sent)


def synthesize_reference(text: str, sample_rate: int, voice: str = "en-us+m3") -> np.ndarray:
    """Speech for ``text`` as int16 samples at ``sample_rate`` [Hz]: espeak-ng when present,
    else a 150 Hz buzz with syllable-like envelope, 65 ms per character."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe:
        out = subprocess.run([exe, "-v", voice, "-s", "170", "--stdout", text], capture_output=True, check=True,
                             timeout=30).stdout
        x, rate = read_wav(out, "espeak-ng output")
        return resample(x, rate, sample_rate)
    n = int(0.065 * max(len(text), 1) * sample_rate)
    t = np.arange(n) / sample_rate
    env = 0.5 * (1 - np.cos(2 * np.pi * 4.0 * t))
    return (6000 * env * np.sin(2 * np.pi * 150 * t)).astype(np.int16)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("stand-in: " + format, *args)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        st = self.server.owner
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        m = _PATH.match(parts.path)
        mode = st._next_mode()
        req = Request(parts.path, m.group("voice") if m else "", bool(m and m.group("stream")),
                      self.headers.get("xi-api-key"), (parse_qs(parts.query).get("output_format") or [None])[0],
                      body if isinstance(body, dict) else {}, mode, dict(self.headers.items()))
        with st._lock:
            st.requests.append(req)
            st._changed.notify_all()
        if not m:
            self._json(404, {"detail": {"status": "not_found", "message": f"no route {parts.path}"}})
            return
        if mode == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if mode.startswith("slow"):
            wait = float(mode.split(":", 1)[1]) if ":" in mode else None
            st._release.wait(wait)
            if wait is None:
                self.close_connection = True
                return
        if req.api_key != st.api_key or mode == "401":
            self._json(401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}})
            return
        if mode == "429":
            self._json(429, {"detail": {"status": "too_many_concurrent_requests",
                                        "message": "Too many concurrent requests"}})
            return
        if mode == "500":
            self._json(500, {"detail": {"status": "internal_error", "message": "stand-in failure"}})
            return
        fmt = req.output_format or "mp3_44100_128"
        fm = re.fullmatch(r"(pcm|wav)_(\d+)", fmt)
        if not fm:
            self._json(422, {"detail": {"status": "invalid_output_format",
                                        "message": f"the stand-in answers pcm_* and wav_* only, not {fmt}"}})
            return
        rate = int(fm.group(2))
        text = str(req.body.get("text", ""))
        samples = st.speak(text, rate)
        req.samples = len(samples)
        pcm = samples.astype("<i2").tobytes()
        audio = pcm if fm.group(1) == "pcm" else pcm_to_wav(pcm, rate)
        self.send_response(200)
        self.send_header("Content-Type", "audio/pcm" if fm.group(1) == "pcm" else "audio/wav")
        if req.stream:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(audio), 4096):
                chunk = audio[i:i + 4096]
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(audio)))
            self.end_headers()
            self.wfile.write(audio)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: StandInElevenLabs


class StandInElevenLabs:
    """The stand-in server; ``with StandInElevenLabs() as srv: srv.url``.

    ``api_key`` is the key it accepts; ``mode``/``script`` choose the answers (module
    docstring); ``requests`` lists what arrived; ``wait_for_requests(n)`` waits for them."""

    def __init__(self, api_key: str = "test-key", mode: str = "ok", voice: str = "en-us+m3"):
        self.api_key = api_key
        self.mode = mode
        self.script: list[str] = []
        self.voice = voice
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._release = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def _next_mode(self) -> str:
        with self._lock:
            return self.script.pop(0) if self.script else self.mode

    def speak(self, text: str, sample_rate: int) -> np.ndarray:
        return synthesize_reference(text, sample_rate, self.voice)

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the stand-in first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandInElevenLabs:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="elevenlabs-stand-in", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Let every held ``slow`` request end (they close without an answer)."""
        self._release.set()

    def wait_for_requests(self, n: int, timeout: float = 30.0) -> list[Request]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"stand-in got {len(self.requests)} requests, expected {n}")
            return list(self.requests)

    def stop(self) -> None:
        self.release()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> StandInElevenLabs:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- replays for the scheduler's tests and benchmark -------------------------------------------

#: the channels a replay reads for the voice coach and for checking it
REPLAY_CHANNELS = ("SessionTime", "Lap", "LapDistPct", "OnPitRoad", "Brake", "Speed", "SteeringWheelAngle")


def ibt_frames(path: str, channels: tuple[str, ...] = REPLAY_CHANNELS) -> dict[str, np.ndarray]:
    """Every row of an ``.ibt`` file as arrays, read with pyirsdk (the reference reader)."""
    import irsdk

    ibt = irsdk.IBT()
    ibt.open(str(path))
    try:
        return {c: np.asarray(ibt.get_all(c)) for c in channels}
    finally:
        ibt.close()


def emulator_frames(path: str, memmap: str, channels: tuple[str, ...] = REPLAY_CHANNELS):
    """Each tick of an ``.ibt`` played by the emulator one tick at a time (lockstep) and read
    back by unmodified pyirsdk from the memory map: yields ``{channel: value}``."""
    import irsdk

    from pitbox.emulator import Emulator
    from pitbox.emulator.core import TickRecord

    with Emulator([str(path)], memmap, keep_ground_truth=False) as emu:
        first = emu.step()
        ir = irsdk.IRSDK()
        if not ir.startup(test_file=str(memmap)):
            raise RuntimeError(f"pyirsdk cannot open the emulator's map {memmap}")
        try:
            rec = first
            while rec is not None:
                if isinstance(rec, TickRecord) and rec.kind == "row":
                    ir.freeze_var_buffer_latest()
                    yield {c: ir[c] for c in channels}
                rec = emu.step()
        finally:
            ir.shutdown()


def replay_voice(coaches: list[Any], frames: Any, tips: list[dict[str, Any]], *, tip_delay_s: float = 0.5,
                 hook: Any = None) -> dict[str, np.ndarray]:
    """Feed each frame (``{channel: value}`` with ``SessionTime``) to every voice coach, and
    hand each tip (``pitbox coach`` rows as dicts, ``lap`` = the ``Lap`` they are about) to
    them ``tip_delay_s`` [s] after the frames first show a later lap, as the live coach does
    after its after-lap analysis. ``hook(t, values, coaches)`` runs before each frame.
    Returns every frame's channels as arrays (for checking what was said against them)."""
    by_lap: dict[int, list[dict[str, Any]]] = {}
    for tip in tips:
        by_lap.setdefault(int(tip["lap"]), []).append(tip)
    rec: dict[str, list[Any]] = {}
    due: list[tuple[float, dict[str, Any]]] = []
    seen_lap: int | None = None
    for values in frames:
        t = float(values["SessionTime"])
        lap = int(values["Lap"])
        for k, v in values.items():
            rec.setdefault(k, []).append(v)
        if seen_lap is None or lap > seen_lap:
            for done in sorted(k for k in by_lap if k < lap):
                due += [(t + tip_delay_s, tip) for tip in by_lap.pop(done)]
            seen_lap = lap
        if hook is not None:
            hook(t, values, coaches)
        while due and due[0][0] <= t:
            _, tip = due.pop(0)
            for c in coaches:
                c.on_tip(tip)
        for c in coaches:
            c.on_frame(t, values)
    return {k: np.asarray(v) for k, v in rec.items()}


# -- command clips: synthesized speech in engine noise ------------------------------------------

#: (espeak-ng voice, words per minute, pitch 0-99) used to fit the rejection model and to
#: choose the recogniser's settings; the last three raise the formants 20-35 % (variants
#: ``linda``, ``belinda``, ``f3``: a short vocal tract, as a high-pitched voice has) and share
#: no variant with :data:`VOICES_TEST`
VOICES_TRAIN = (("en-us", 170, 50), ("en-gb", 160, 40), ("en-gb-x-rp", 175, 45), ("en-gb-scotland", 150, 50),
                ("en-029", 190, 50), ("en-us+m3", 180, 45), ("en-us+m7", 200, 35), ("en-us+f2", 165, 65),
                ("en-gb+f3", 175, 70), ("en-gb-x-gbclan", 160, 50), ("en-gb-x-gbcwmd", 185, 55), ("en-us+m1", 155, 40),
                ("en-us+linda", 165, 60), ("en-gb+belinda", 170, 65), ("en-us+f3", 170, 70))
#: other voices and variants, for the tests and the benchmark
VOICES_TEST = (("en-us-nyc", 165, 50), ("en-us+m2", 185, 45), ("en-gb+m5", 170, 40), ("en-gb-x-rp+f4", 160, 65),
               ("en-029+m4", 175, 50), ("en-gb-scotland+f1", 170, 60), ("en-us+m6", 195, 40),
               ("en-gb-x-gbclan+f5", 180, 55))
#: out-of-grammar phrases used to fit the rejection model
OOG_TRAIN = ("pit lane speed limit", "how many laps to go", "what is my position", "box box box",
             "tyre pressures please", "change the brake bias", "who is behind me", "copy that",
             "yellow flag in sector two", "the car feels loose", "increase the wing", "radio check",
             "is it going to rain", "gap to the leader", "understeer in the hairpin", "tell me the weather",
             "i need new tyres", "okay thanks", "turn the radio off", "what was that", "push now",
             "how is the fuel looking", "repeat after me please", "lap time please")
#: other out-of-grammar phrases (some share words with commands), for the tests and the benchmark
OOG_TEST = ("what are the tyre temperatures", "switch to map two", "how long is left", "is the car damaged",
            "traffic behind", "where is the pit entry", "i am boxing", "say again", "thanks mate",
            "brakes are fading", "how far to the car ahead", "the rear is sliding", "turn up the volume",
            "is there a penalty", "more front wing", "tell the team", "what lap is it", "slow down",
            "green flag", "the engine sounds rough")
#: the commands as a driver says them ("focus on turn" with a number from one to twelve)
COMMAND_WORDS = ("repeat", "mute", "unmute", "quiet in the corners", "talk anywhere", "last lap", "delta", "fuel",
                 "best lap", "where am i losing time")
_NUMW = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


def espeak_samples(text: str, voice: str = "en-us", wpm: int = 170, pitch: int = 50, rate: int = 16000) -> np.ndarray:
    """``text`` spoken by espeak-ng (its command line) as float samples at ``rate`` [Hz]."""
    exe = shutil.which("espeak-ng")
    if not exe:
        raise RuntimeError("espeak-ng is not installed (make installs it)")
    out = subprocess.run([exe, "-v", voice, "-s", str(wpm), "-p", str(pitch), "--stdout", text], capture_output=True,
                         check=True, timeout=60).stdout
    x, r = read_wav(out, f"espeak-ng {voice}")
    return resample(x.astype(np.float64), r, rate)


def engine_noise(n: int, rng: np.random.Generator, rate: int = 16000) -> np.ndarray:
    """Engine-like noise, unit RMS: brown noise (drift removed) plus an engine's firing
    frequency (70-160 Hz, wobbling 3 % as the revs change) with ten harmonics at 1/k."""
    t = np.arange(n) / rate
    b = np.cumsum(rng.standard_normal(n))
    b -= np.convolve(b, np.ones(801) / 801, mode="same")
    b /= b.std() + 1e-9
    f0 = rng.uniform(70, 160) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.2, 0.7) * t))
    ph = 2 * np.pi * np.cumsum(f0) / rate
    h = sum((1.0 / k) * np.sin(k * ph + rng.uniform(0, 2 * np.pi)) for k in range(1, 11))
    h = np.asarray(h) / (np.std(h) + 1e-9)
    y = 0.6 * b + 0.8 * h
    return y / (y.std() + 1e-9)


def noisy_clip(speech: np.ndarray, rng: np.random.Generator, snr_db: float = 6.0, rate: int = 16000) -> np.ndarray:
    """Speech in engine noise at ``snr_db`` (speech power over its active part against the
    noise), with 0.2-0.5 s of noise before and after and 0.3-0.6 s of exact digital silence
    at both ends (a push-to-talk button opening and closing); int16."""
    s = speech / (np.abs(speech).max() + 1e-9) * 12000
    active = s[np.abs(s) > 300]
    power = float(np.mean(active ** 2)) if len(active) else float(np.mean(s ** 2))
    lead, tail = int(rng.uniform(0.2, 0.5) * rate), int(rng.uniform(0.2, 0.5) * rate)
    body = np.concatenate([np.zeros(lead), s, np.zeros(tail)])
    body = body + engine_noise(len(body), rng, rate) * math.sqrt(power / 10 ** (snr_db / 10))
    e0, e1 = int(rng.uniform(0.3, 0.6) * rate), int(rng.uniform(0.3, 0.6) * rate)
    y = np.concatenate([np.zeros(e0), body, np.zeros(e1)])
    peak = np.abs(y).max()
    if peak > 32000:
        y *= 32000 / peak
    return np.round(y).astype(np.int16)


@dataclass
class Clip:
    """A synthetic clip: ``kind`` "command", "other" (out of grammar) or "noise"; ``phrase``
    what was said ("" for noise)."""

    kind: str
    phrase: str
    voice: str
    samples: np.ndarray
    rate: int = 16000


def command_clips(voices: Any = VOICES_TEST, others: Any = OOG_TEST, seed: int = 0, n_noise: int = 8,
                  snr_db: float = 6.0, commands: Any = COMMAND_WORDS, others_per_voice: int | None = None) -> list[Clip]:
    """Every command (and one "focus on turn N", N random) and the out-of-grammar phrases
    spoken by each voice in engine noise, plus ``n_noise`` clips of engine noise alone."""
    rng = np.random.default_rng(seed)
    jobs: list[tuple[str, str, tuple[str, int, int]]] = []
    for vi, v in enumerate(voices):
        for c in list(commands) + [f"focus on turn {_NUMW[int(rng.integers(0, 12))]}"]:
            jobs.append(("command", c, v))
        sel = list(others) if others_per_voice is None else \
            [others[(vi * others_per_voice + k) % len(others)] for k in range(others_per_voice)]
        for o in sel:
            jobs.append(("other", o, v))
    clips = [Clip(k, p, v[0], noisy_clip(espeak_samples(p, *v), rng, snr_db)) for k, p, v in jobs]
    for _ in range(n_noise):
        n = int(rng.uniform(1.0, 2.5) * 16000)
        level = rng.uniform(500, 3000)
        body = engine_noise(n, rng) * level
        clips.append(Clip("noise", "", "engine", np.concatenate([np.zeros(4000), body, np.zeros(4000)])
                          .astype(np.int16)))
    return clips


class ClipMicrophone:
    """The microphone for tests (no sound card here): each recording is the next of
    ``clips`` (int16 samples at ``sample_rate`` [Hz]), returned once ``wait()`` returns (the
    push-to-talk released), as :meth:`pitbox.voice.mic.Microphone.record_until` does.
    ``recording`` is set when a recording starts; ``recorded`` counts them."""

    def __init__(self, clips: Sequence[np.ndarray], sample_rate: int = 16000):
        self.clips = list(clips)
        self.sample_rate = sample_rate
        self.recording = threading.Event()
        self.recorded = 0

    def record_until(self, wait: Callable[[], Any], max_s: float = 6.0) -> np.ndarray:
        self.recording.set()
        done = threading.Event()
        threading.Thread(target=lambda: (wait(), done.set()), daemon=True, name="clip-mic-wait").start()
        done.wait(max_s)
        self.recorded += 1
        return self.clips.pop(0) if self.clips else np.zeros(0, np.int16)
