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
import re
import shutil
import subprocess
import threading
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
        pcm = st.speak(text, rate).astype("<i2").tobytes()
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
