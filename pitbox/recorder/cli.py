"""Commands ``pitbox record``, ``pitbox watch`` and ``pitbox recover``."""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pitbox.config import data_dir, telemetry_dir
from pitbox.errors import ConfigError, PitboxError
from pitbox.signals import stop_on_signals


def register(subparsers: Any) -> None:
    _register_record(subparsers)
    _register_watch(subparsers)
    _register_recover(subparsers)


# -- record --------------------------------------------------------------------------

def _register_record(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "record", help="record iRacing live (or replay a recorded session) into the store",
        description="Record every tick of every channel live through pyirsdk into crash-safe Parquet "
                    "sessions: waits for the sim, records while it runs, survives it restarting. "
                    "'replay FILE' plays an .ibt or a stored session through the same recorder. "
                    "Ctrl-C stops and finishes the open session.")
    p.add_argument("source", nargs="?", default="iracing", choices=["iracing", "replay"],
                   help="iracing (default): the live sim; replay: FILE")
    p.add_argument("file", nargs="?", type=Path, help="with replay: an .ibt, live dump or stored .parquet session")
    p.add_argument("--data", default=None, help="store folder (default: $PITBOX_DATA or ./data)")
    p.add_argument("--irsdk-file", type=Path, metavar="PATH",
                   help="read this memory-map file (an emulator's, any OS) instead of iRacing's shared memory")
    p.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="replay speed: 1 = real time (default); 0 or inf = as fast as possible")
    p.add_argument("--via-emulator", action="store_true",
                   help="replay through the iRacing emulator (a temporary memory map read by pyirsdk) "
                        "instead of feeding rows directly; .ibt sources only")
    p.add_argument("--flush-s", type=float, default=0.5, metavar="S",
                   help="rows reach the disk at least this often (default 0.5 s)")
    p.add_argument("--timeout-s", type=float, default=2.0, metavar="S",
                   help="the sim is gone when no tick arrives for S seconds (default 2)")
    p.add_argument("--resume-s", type=float, default=10.0, metavar="S",
                   help="a paused sim that comes back within S seconds continues the same session (default 10)")
    p.add_argument("--no-fsync", action="store_true", help="do not fsync segments (faster; a power cut may lose more)")
    p.add_argument("--no-recover", action="store_true", help="do not recover interrupted recordings at start")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--until-gone", action="store_true", help="stop the first time the sim goes away")
    p.add_argument("--watch", nargs="?", const="", default=None, metavar="FOLDER",
                   help="also import finished .ibt files from FOLDER (default iRacing's telemetry folder)")
    from pitbox.live.cli import add_stream_options

    add_stream_options(p)  # --stream --stream-host --stream-port --token-secret ... --publish URL --token
    from pitbox.livecoach.options import add_coach_options

    add_coach_options(p)  # --no-live-coach --coach-reference --fuel-laps --fuel-minutes
    from pitbox.voice.options import add_voice_options

    add_voice_options(p)  # --voice --voice-id --voice-player --voice-verbosity --voice-commands --mic-device
    p.set_defaults(func=cmd_record)


class _Publishers:
    """Fans the recorder's publish calls out to the stream server and the relay publisher."""

    def __init__(self, targets: list[Any]):
        self.targets = targets

    def publish_frame(self, tick: int, session_time: float, values: Any) -> None:
        for t in self.targets:
            t.publish_frame(tick, session_time, values)

    def publish_lap(self, row: Any) -> None:
        for t in self.targets:
            t.publish_lap(row)

    def publish_session(self, meta: Any) -> None:
        for t in self.targets:
            t.publish_session(meta)

    def publish_session_info(self, info: Any) -> None:
        for t in self.targets:
            t.publish_session_info(info)

    def stop(self) -> None:
        for t in self.targets:
            t.stop()


def _publishers(args: argparse.Namespace, data: Path) -> _Publishers | None:
    from pitbox.live.cli import open_publishers
    from pitbox.livecoach.options import start_service
    from pitbox.voice.options import check_voice_options, start_voice

    check_voice_options(args)
    targets = open_publishers(args)
    for t in targets:
        print(f"streaming on {t.url}" if hasattr(t, "clients") else f"publishing to {t.url}", flush=True)
    fast_replay = args.source == "replay" and (args.speed <= 0 or math.isinf(args.speed))
    try:
        voice = start_voice(args, targets)
    except BaseException:
        for t in targets:
            t.stop()
        raise
    try:
        coach = start_service(args, targets, data, lossless=fast_replay, voice=voice)
    except (ValueError, PitboxError) as exc:
        for t in targets:
            t.stop()
        if voice is not None:
            voice.stop()
        raise ConfigError(f"record: --coach-reference {args.coach_reference}: {exc}") from None
    if coach is not None:
        print(f"live coach on (reference {args.coach_reference}); --no-live-coach turns it off", flush=True)
        if voice is not None:
            print(f"voice coach on ({voice.voice.primary} voice, {voice.player.name} player)", flush=True)
        return _Publishers([coach])
    return _Publishers(targets) if targets else None


def _print_session(path: Path) -> None:
    from pitbox.store import read_meta

    try:
        m = read_meta(path)
    except PitboxError:
        print(f"stored {path}", flush=True)
        return
    print(f"stored {m['id']}: {m['track']} / {m['car']} / {m['session_type'] or '?'}: {m['samples']} ticks "
          f"from tick {m.get('first_tick', '?')}{_joined(m.get('joined_at_tick'))}, "
          f"{m.get('dropped_ticks', 0)} dropped, {m['laps']} laps -> {path}", flush=True)


def _joined(tick: int | None) -> str:
    """How the recording began, for the summaries: nothing when the recorder was waiting
    for the sim (it records from the sim's first tick)."""
    return "" if tick is None else f" (joined the running sim at its tick {tick})"


def _source(args: argparse.Namespace, tmp: Path) -> tuple[Any, Any]:
    """The recorder's source, and the emulator feeding it (``--via-emulator``) or None."""
    from pitbox.recorder.sources import IrsdkSource, ReplaySource

    if args.source == "iracing":
        if args.file is not None:
            raise ConfigError("record: FILE goes with 'replay' only (use --irsdk-file for a memory-map file)")
        return IrsdkSource(args.irsdk_file, timeout_s=args.timeout_s), None
    if args.file is None:
        raise ConfigError("record replay: give the FILE to replay")
    if not args.file.is_file():
        raise ConfigError(f"record replay: {args.file}: no such file")
    fast = args.speed <= 0 or math.isinf(args.speed)
    if not args.via_emulator:
        return ReplaySource(args.file, speed=0 if fast else args.speed), None
    if args.file.suffix.lower() == ".parquet":
        raise ConfigError("record replay --via-emulator: the emulator plays .ibt files; replay a .parquet directly")
    from pitbox.emulator import Emulator

    memmap = tmp / "irsdk-memmap.bin"
    emu = Emulator([args.file], memmap, speed=math.inf if fast else args.speed, keep_ground_truth=False).open()
    return IrsdkSource(memmap, timeout_s=args.timeout_s, source_name=f"{args.file.name} (emulated)"), emu


def drive_emulator(emu: Any, src: Any, rec: Any, speed: float, stop: threading.Event) -> None:
    """Play the emulator one tick at a time once pyirsdk has its map open.

    Paced at ``speed`` × the source's tick rate; when a tick comes late (the emulator builds
    rows in blocks) the schedule moves on from it instead of publishing the late ticks back
    to back, which no 60 Hz reader could follow. With ``speed`` infinite each tick waits for
    the recorder to take the one before (as fast as possible, nothing dropped).
    """
    from pitbox.emulator import TickRecord

    while not src.mapped.wait(0.05):
        if stop.is_set():
            return
    period = 0.0 if math.isinf(speed) else 1.0 / (60.0 * speed)
    due = time.perf_counter()
    try:
        while not stop.is_set():
            before = rec.stats.ticks
            r = emu.step()
            if r is None:
                return
            if not isinstance(r, TickRecord):
                continue
            if period == 0.0:
                deadline = time.monotonic() + 5.0
                while rec.stats.ticks == before and time.monotonic() < deadline and not stop.is_set():
                    time.sleep(0.0001)
                continue
            due += period
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:
                due = time.perf_counter()
    finally:
        emu.close()  # header status 0: the recorder closes the session


def cmd_record(args: argparse.Namespace) -> int:
    from pitbox.recorder.recorder import Recorder
    from pitbox.recorder.watch import Watcher

    data = data_dir(args.data)
    pubs = _publishers(args, data)
    stop_threads = threading.Event()
    switch = sys.getswitchinterval()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pitbox-replay-") as tmp:
        src, emu = _source(args, Path(tmp))
        rec = Recorder(src, data, flush_s=args.flush_s, fsync=not args.no_fsync, publisher=pubs,
                       on_session=_print_session, resume_s=args.resume_s, recover_first=not args.no_recover)
        if args.watch is not None:
            folder = telemetry_dir(args.watch or None)
            w = Watcher(folder, data, on_result=lambda r: print(f"{r.status:9} {r.source}", flush=True))
            threading.Thread(target=w.run, args=(stop_threads,), name="pitbox-watch", daemon=True).start()
            print(f"watching {folder} for finished .ibt files", flush=True)
        if emu is not None:
            sys.setswitchinterval(0.0005)  # the emulator shares this interpreter: hand it over quickly
            speed = math.inf if args.speed <= 0 else args.speed
            threading.Thread(target=drive_emulator, args=(emu, src, rec, speed, stop_threads), daemon=True).start()
        if args.source == "iracing" and args.irsdk_file is None and sys.platform != "win32":
            print("note: iRacing's shared memory exists on Windows only; waiting anyway "
                  "(use --irsdk-file PATH for an emulator's memory map)", file=sys.stderr, flush=True)
        what = args.file if args.source == "replay" else (args.irsdk_file or "iRacing")
        print(f"recording {what} into {data}; Ctrl-C stops", flush=True)
        t0 = time.monotonic()
        try:
            with stop_on_signals(rec.stop):
                stored = rec.run(duration_s=args.duration, until_gone=args.until_gone or emu is not None)
        finally:
            stop_threads.set()
            sys.setswitchinterval(switch)
            if emu is not None:
                emu.close()
            if pubs is not None:
                pubs.stop()
    s = rec.stats
    first = "" if s.first_tick is None else f", from tick {s.first_tick}{_joined(s.joined_at_tick)}"
    print(f"{len(stored)} session(s) stored, {s.ticks} ticks recorded, {s.dropped} dropped{first}, "
          f"in {time.monotonic() - t0:.1f} s", flush=True)
    return 0


# -- watch ---------------------------------------------------------------------------

def _register_watch(subparsers: Any) -> None:
    p = subparsers.add_parser("watch", help="import each new .ibt from iRacing's telemetry folder once finished",
                              description="Watch FOLDER (default: $PITBOX_TELEMETRY or ~/Documents/iRacing/telemetry) "
                                          "and import each .ibt once iRacing has finished writing it; link it with "
                                          "a live recording of the same stint. Ctrl-C stops.")
    p.add_argument("folder", nargs="?", default=None, help="folder to watch")
    p.add_argument("--data", default=None, help="store folder (default: $PITBOX_DATA or ./data)")
    p.add_argument("--stable-s", type=float, default=5.0, metavar="S",
                   help="a file is finished when its size has not changed for S seconds (default 5)")
    p.add_argument("--poll-s", type=float, default=1.0, metavar="S", help="look every S seconds (default 1)")
    p.add_argument("--once", action="store_true", help="one pass (files stable for --stable-s already), then exit")
    p.set_defaults(func=cmd_watch)


def cmd_watch(args: argparse.Namespace) -> int:
    from pitbox.recorder.watch import Watcher

    folder = telemetry_dir(args.folder)
    data = data_dir(args.data)
    if not folder.is_dir():
        raise ConfigError(f"watch: {folder}: no such folder (give FOLDER or set PITBOX_TELEMETRY)")
    data.mkdir(parents=True, exist_ok=True)
    w = Watcher(folder, data, stable_s=args.stable_s, poll_s=args.poll_s,
                on_result=lambda r: print(f"{r.status:9} {r.error or r.source}"
                                          + (f" ({', '.join(r.sessions)})" if r.sessions else ""), flush=True))
    if args.once:
        w.scan()
        if args.stable_s > 0:
            time.sleep(args.stable_s)
            w.scan()
        return 1 if any(r.status == "failed" for r in w.results) else 0
    print(f"watching {folder} -> {data}; Ctrl-C stops", flush=True)
    stop = threading.Event()
    with stop_on_signals(stop.set):
        w.run(stop)
    return 0


# -- recover -------------------------------------------------------------------------

def _register_recover(subparsers: Any) -> None:
    p = subparsers.add_parser("recover", help="turn interrupted recordings into proper sessions",
                              description="Finish every recording a stopped or killed recorder left in "
                                          "<data>/.recording (a running recorder's are left alone).")
    p.add_argument("--data", default=None, help="store folder (default: $PITBOX_DATA or ./data)")
    p.set_defaults(func=cmd_recover)


def cmd_recover(args: argparse.Namespace) -> int:
    from pitbox.recorder.finalize import pending_recordings, recover

    data = data_dir(args.data)
    pending = pending_recordings(data)
    stored = recover(data, on_session=_print_session)
    print(f"{len(stored)} session(s) recovered from {len(pending)} interrupted recording(s) in {data}")
    return 0
