"""A simulated practice session played live: the lap simulator's ``.ibt`` through the iRacing
emulator (``pitbox emulate``) into ``pitbox record`` reading it with pyirsdk, with the
stream (and the live coach, on by default) on. Used by ``pitbox live-demo``, the browser
tests and the dashboard benchmark.

The recorder starts first and waits for the sim; :meth:`Practice.start_session` starts the
emulator, so a caller can open its dashboards before the first lap. Both are child
processes in their own process groups: Ctrl-C in a terminal reaches only the parent, which
stops them in order (emulator, then recorder, which finishes and stores the session).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from pitbox.errors import PitboxError


class PracticeError(PitboxError):
    """The recorder or the emulator of a practice session did not start or stopped early."""


def _popen(args: Sequence[str], *, cwd: Path | None = None) -> subprocess.Popen[str]:
    kwargs: dict = {}
    if os.name == "nt":  # pragma: no cover - Windows
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "pitbox", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env, **kwargs)


def stop_process(proc: subprocess.Popen[str] | None, timeout: float = 20.0) -> int | None:
    """SIGTERM (Windows: CTRL_BREAK), wait, then kill; returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            if os.name == "nt":  # pragma: no cover
                proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            else:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        except ProcessLookupError:
            pass
    return proc.returncode


class _Reader:
    """Collects a child's output lines (to a log file too) on a thread; waits for a pattern."""

    def __init__(self, proc: subprocess.Popen[str], log: Path, name: str):
        self.proc = proc
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._log = log
        self._thread = threading.Thread(target=self._run, name=f"pitbox-{name}-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        with open(self._log, "a", encoding="utf-8") as f:
            for line in self.proc.stdout:
                f.write(line)
                f.flush()
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                if self.proc.poll() is not None and not self._thread.is_alive():
                    raise PracticeError(f"process exited with {self.proc.returncode} before printing "
                                        f"{pattern!r}: {' | '.join(self.lines[-8:])}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PracticeError(f"no {pattern!r} within {timeout} s: {' | '.join(self.lines[-8:])}")
                self._cond.wait(min(left, 0.5))

    def tail(self, n: int = 12) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:])

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


class Practice:
    """One driver's practice: ``ibt`` replayed at ``speed`` × real time.

    ``Practice(ibt, data, work).start()`` starts the recorder (``--stream`` on an OS-picked
    port unless ``stream_port`` is given; ``publish``/``driver_id`` also publish to a relay;
    ``record_args`` adds options); ``.url`` is its stream. ``start_session()`` starts the
    emulator; ``wait_done()`` waits for the session to end; ``stop()`` stops both."""

    def __init__(self, ibt: str | os.PathLike[str], data: str | os.PathLike[str], work: str | os.PathLike[str], *,
                 speed: float = 1.0, stream: bool = True, stream_port: int = 0, publish: str | None = None,
                 driver_id: str | None = None, token: str | None = None, loop: bool = False,
                 record_args: Sequence[str] = (), name: str = "practice"):
        self.ibt = Path(ibt)
        self.data = Path(data)
        self.work = Path(work)
        self.speed = speed
        self.stream = stream
        self.stream_port = stream_port
        self.publish = publish
        self.driver_id = driver_id
        self.token = token
        self.loop = loop
        self.record_args = list(record_args)
        self.name = name
        self.memmap = self.work / f"{name}-irsdk.bin"
        self.recorder: subprocess.Popen[str] | None = None
        self.emulator: subprocess.Popen[str] | None = None
        self._rec_out: _Reader | None = None
        self._emu_out: _Reader | None = None
        self.url: str | None = None

    @property
    def recorder_log(self) -> Path:
        return self.work / f"{self.name}-record.log"

    @property
    def emulator_log(self) -> Path:
        return self.work / f"{self.name}-emulate.log"

    def start(self, timeout: float = 120.0) -> Practice:
        """Start the recorder; returns once it streams (or publishes) and waits for the sim."""
        self.work.mkdir(parents=True, exist_ok=True)
        if not self.ibt.is_file():
            raise PracticeError(f"{self.ibt}: no such session file to play")
        self.memmap.unlink(missing_ok=True)
        args = ["record", "--irsdk-file", str(self.memmap), "--data", str(self.data), "--until-gone",
                "--timeout-s", "3", *self.record_args]
        if self.stream:
            args += ["--stream", "--stream-port", str(self.stream_port)]
        if self.publish:
            args += ["--publish", self.publish]
            if self.driver_id:
                args += ["--driver-id", self.driver_id]
            if self.token:
                args += ["--token", self.token]
        self.recorder = _popen(args)
        self._rec_out = _Reader(self.recorder, self.recorder_log, f"{self.name}-record")
        try:
            if self.stream:
                self.url = self._rec_out.wait_for(r"streaming on (wss?://\S+)", timeout).group(1)
            self._rec_out.wait_for(r"^recording ", timeout)
        except PracticeError:
            self.stop()
            raise
        return self

    def start_session(self) -> None:
        """Start the emulator: the session begins (the recorder picks it up within a second)."""
        args = ["emulate", str(self.ibt), "--memmap", str(self.memmap), "--speed", f"{self.speed:g}"]
        if self.loop:
            args.append("--loop")
        self.emulator = _popen(args)
        self._emu_out = _Reader(self.emulator, self.emulator_log, f"{self.name}-emulate")

    @property
    def session_running(self) -> bool:
        return self.emulator is not None and self.emulator.poll() is None

    def wait_done(self, timeout: float | None = None) -> int | None:
        """Wait for the emulator to finish the session and the recorder to store it."""
        if self.emulator is not None:
            self.emulator.wait(timeout)
        if self.recorder is not None:
            self.recorder.wait(timeout)
        return None if self.recorder is None else self.recorder.returncode

    def stop(self) -> None:
        """Stop the emulator (the sim goes away), then the recorder (it stores the session)."""
        stop_process(self.emulator)
        if self.recorder is not None and self.recorder.poll() is None and self.emulator is not None:
            try:  # with --until-gone it ends by itself once the sim is gone
                self.recorder.wait(15.0)
            except subprocess.TimeoutExpired:
                pass
        stop_process(self.recorder, 30.0)
        for r in (self._emu_out, self._rec_out):
            if r is not None:
                r.join()

    def recorder_summary(self) -> str | None:
        """The recorder's last line about what it stored ("1 session(s) stored, ...")."""
        lines = [] if self._rec_out is None else self._rec_out.lines
        return next((line for line in reversed(lines) if "session(s) stored" in line), None)

    def output(self) -> str:
        parts = []
        for label, r in (("record", self._rec_out), ("emulate", self._emu_out)):
            if r is not None:
                parts.append(f"--- {label}:\n{r.tail()}")
        return "\n".join(parts)

    def __enter__(self) -> Practice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
