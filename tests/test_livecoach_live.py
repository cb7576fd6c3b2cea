"""The live coach end to end: ``pitbox record --irsdk-file`` (its own process) reads the memory
map our emulator writes while it replays a simulated practice with an injected fault, with
the stream and a team relay on; real WebSocket clients receive the derived channels, the
coach's state and a tip naming the injected corner and fault; a client joining late gets
the reference, the state and the tips; ``set_reference`` switches the reference on the
stream and through the relay. And :func:`pitbox.livecoach.attach` runs the same core on a
stream that has no coach, catching up from its history."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pitbox.emulator import Emulator, TickRecord
from pitbox.ibt.reader import open_telemetry
from pitbox.live import Relay, StreamServer
from pitbox.live.testing import FAST_REPLAY, open_log, run
from pitbox.sim import read_truth, simulate_session

FAULT = "3:T3:brake_early:25"
SPEED = 12.0  #: emulated seconds per second (a few ticks may be missed on a loaded machine: no matter here)
DERIVED = ["pitbox_delta_s", "pitbox_predicted_lap_s", "pitbox_lap_dist_m"]


class Pacer(threading.Thread):
    """Steps the emulator at SPEED x real time; ``hold`` pauses it (the sim sitting still), and
    it holds by itself after ``hold_after`` ticks until released."""

    def __init__(self, emu: Emulator, hold_after: int | None = None, pause_at: int | None = None):
        super().__init__(daemon=True)
        self.emu = emu
        self.hold = threading.Event()
        #: after ``pause_at`` ticks the sim waits for ``resume`` (then goes on at SPEED)
        self.pause_at = pause_at
        self.resume = threading.Event()
        self.halt = threading.Event()
        self.published = 0
        self.hold_after = hold_after

    def run(self) -> None:
        period = 1.0 / (60.0 * SPEED)
        due = time.perf_counter()
        while not self.halt.is_set():
            if self.hold.is_set():
                time.sleep(0.01)
                due = time.perf_counter()
                period = 0.0  # released: the rest as fast as it goes (the checks are done)
                continue
            r = self.emu.step()
            if r is None:
                break
            if isinstance(r, TickRecord):
                self.published += 1
                if self.published == self.hold_after:
                    self.hold.set()
                if self.published == self.pause_at:
                    self.resume.wait(600)  # a safety net only: the test sets it
                    due = time.perf_counter()
                due += period
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.05:
                    due = time.perf_counter()
        self.emu.close()  # status 0: the recorder ends the session and (--until-gone) exits


def _pitbox() -> list[str]:
    script = Path(sys.executable).with_name("pitbox")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from pitbox.cli import main; sys.exit(main(sys.argv[1:]))"]


def _line(proc: subprocess.Popen, log: Path, prefix: str, timeout: float = 60.0) -> str:
    """The first line of the process' output starting with ``prefix`` (a line, not a timing:
    the process prints it once that stage is reached)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith(prefix):
                return line.strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no line starting {prefix!r} from pitbox record; got: {log.read_text()}")


@pytest.mark.slow
def test_record_irsdk_file_streams_derived_channels_coach_state_and_tips(tmp_path: Path) -> None:
    sim = simulate_session("pitboxsim_demo", 4, [FAULT], 31, in_lap=False, out=tmp_path / "practice.ibt")
    truth, _ = read_truth(sim.ibt_path)
    (fault,) = truth["faults"]
    emu = Emulator([sim.ibt_path], tmp_path / "irsdk.bin", speed=math.inf, keep_ground_truth=False).open()
    relay = Relay("127.0.0.1", 0, limits=FAST_REPLAY).start()
    log = tmp_path / "record.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*_pitbox(), "record", "--irsdk-file", str(emu.memmap_path), "--data", str(tmp_path / "data"),
             "--stream", "--stream-port", "0", "--publish", relay.url, "--driver-id", "alice", "--until-gone",
             "--no-fsync", "--timeout-s", "60"], stdout=out, stderr=subprocess.STDOUT, text=True)
    with open_telemetry(sim.ibt_path) as tf:
        c = tf.read(["Lap", "LapDistPct"])
    after_cut = int(np.flatnonzero((c["Lap"] == fault["lap"] + 1) & (c["LapDistPct"] > 0.25))[0])
    # the sim waits a quarter into lap 2 until the reference (lap 1, made by the analyst process)
    # is out, so that the laps after it stream a delta however slow the machine is
    lap2 = int(np.flatnonzero((c["Lap"] == 2) & (c["LapDistPct"] > 0.25))[0])
    pacer = Pacer(emu, hold_after=after_cut + 1, pause_at=lap2 + 1)  # the sim sits still after the lap's cut until the checks are done
    try:
        url = _line(proc, log, "streaming on ").split()[-1]
        _line(proc, log, "live coach on")
        _line(proc, log, "recording ")
        pacer.start()
        try:
            run(_clients(url, relay.url, pacer, fault), timeout=600)
        except BaseException:
            print(log.read_text())
            raise
        pacer.hold.clear()
        pacer.join(120)
        assert proc.wait(120) == 0, log.read_text()
        assert "1 session(s) stored" in log.read_text()
    finally:
        pacer.halt.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        relay.stop()
        emu.close()


async def _clients(url: str, relay_url: str, pacer: Pacer, fault: dict[str, Any]) -> None:
    local = await open_log(url, subscribe={"channels": ["Speed", *DERIVED], "rate": 10})
    team = await open_log(relay_url, subscribe={"channels": ["pitbox_delta_s"], "rate": 10, "drivers": ["alice"]})

    def tip(log: Any) -> list[dict]:
        return [m for m in log.of("tip") if m["lap"] == fault["lap"]]

    await local.wait_for(lambda log: log.of("reference"), timeout=400)
    pacer.resume.set()
    await local.wait_for(lambda log: tip(log), timeout=400)
    pacer.hold.set()  # the sim sits still while we look (the recorder waits: --timeout-s 60)
    (t,) = [m for m in tip(local) if m["rank"] == 1]
    assert (t["corner"], t["fault"]) == (fault["corner"], fault["fault"])
    assert t["time_loss_s"] > 0.2 and "brake" in t["change"]
    frames = [m for m in local.frames() if m["values"].get("pitbox_delta_s") is not None]
    assert frames, ([m["values"] for m in local.frames()[-3:]], local.of("reference")[-1:], local.of("coach")[-1:])
    assert frames and set(frames[-1]["values"]) == {"Speed", *DERIVED}
    assert all(isinstance(m["values"]["pitbox_lap_dist_m"], float) for m in frames[-20:])
    states = local.of("coach")
    assert states[-1]["reference"]["kind"] == "session_best" and states[-1]["fuel"]["per_lap_mean3_l"] > 0
    (ref,) = local.of("reference")[-1:]
    sid = ref["session"]
    assert ref["label"].startswith(sid + ":") and ref["map"] is not None and ref["corners"]
    # the relay forwards it all per driver
    await team.wait_for(lambda log: tip(log) and log.of("reference") and log.of("coach"), timeout=30)
    assert all(m["driver"] == "alice" for m in team.messages if m["type"] in ("tip", "coach", "reference", "frame"))
    assert any("pitbox_delta_s" in m["values"] for m in team.frames("alice"))
    # a client joining late gets the reference, the coach's state and the session's tips
    late = await open_log(url, subscribe={"channels": ["pitbox_delta_s"], "rate": 1})
    await late.wait_for(lambda log: log.of("reference") and log.of("coach") and tip(log), timeout=30)
    # set_reference on the stream: a lap of this session
    await local.send({"v": 1, "type": "set_reference", "kind": "lap", "lap": f"{sid}:1"})
    await local.wait_for(lambda log: log.of("reference")[-1]["kind"] == "lap", timeout=60)
    assert local.of("reference")[-1]["label"] == f"{sid}:1"
    await local.send({"v": 1, "type": "set_reference", "kind": "fastest"})
    await local.wait_for(lambda log: any(m.get("code") == "bad_reference" for m in log.of("error")), timeout=30)
    # ... and through the relay, back to the session's best
    await team.send({"v": 1, "type": "set_reference", "kind": "session_best", "driver": "alice"})
    await team.wait_for(lambda log: log.of("reference")[-1]["kind"] == "session_best"
                        and len(log.of("reference")) >= 3, timeout=60)
    await team.send({"v": 1, "type": "set_reference", "kind": "optimal", "driver": "nobody"})
    await team.wait_for(lambda log: any(m.get("code") == "bad_driver" for m in log.of("error")), timeout=30)


def test_attach_runs_the_core_on_a_stream_without_a_coach(tmp_path: Path) -> None:
    """A notebook on a stream that has no coach: the core runs on what the client receives
    (here the whole session from the stream's history, at 60 Hz, as JSON) and tips the
    injected fault; live frames then get the derived channels."""
    from pitbox.livecoach import attach

    sim = simulate_session("pitboxsim_demo", 3, [FAULT], 32, in_lap=False, out=tmp_path / "p.ibt")
    truth, _ = read_truth(sim.ibt_path)
    (fault,) = truth["faults"]
    with open_telemetry(sim.ibt_path) as tf:
        rows = tf.read_rows()
        ticks = tf.read(["SessionTick"])["SessionTick"]
        info = tf.session_info
    frames = [(int(ticks[i]), float(rows[i]["SessionTime"]), rows[i]) for i in range(len(rows))]
    server = StreamServer("127.0.0.1", 0, history_provider=lambda ch, rate, since: frames).start()
    server.publish_session_info(info)
    got: list[dict] = []
    live = attach(server.url, on_message=got.append, process=False)
    try:
        deadline = time.monotonic() + 300
        while live.coach().frames < len(frames) or len(live.coach().coached) < 2:
            assert time.monotonic() < deadline, "the history did not arrive"
            time.sleep(0.05)
        live.coach().finish()  # the stream ends here: coach the last lap on what was received
        live.set_reference("session_best")
        while len(live.coach().coached) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        tips = live.tips()
        assert [(t["lap"], t["corner"], t["fault"], t["rank"]) for t in tips.to_dict("records")][:1] == \
            [(fault["lap"], fault["corner"], fault["fault"], 1)]
        assert set(tips.lap) == {fault["lap"]}  # nothing on the clean laps
        assert live.reference_message()["kind"] == "session_best"
        assert live.state()["best_lap_s"] == pytest.approx(min(lap["lap_time_s"] for lap in truth["laps"]
                                                               if lap["kind"] == "timed"), abs=0.002)
        tick, t, row = frames[-1]
        server.publish_frame(tick + 1, t + 1 / 60, row)  # a live frame after the history
        while not [m for m in got if m["type"] == "frame"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        (frame,) = [m for m in got if m["type"] == "frame"]
        assert frame["tick"] == tick + 1 and frame["values"]["pitbox_delta_s"] is not None
    finally:
        live.stop()
        server.stop()


def _coach_messages(n: int) -> list[dict]:
    ref = {"v": 1, "type": "reference", "kind": "session_best", "label": "S:1", "session": "S", "lap_index": 1,
           "time_s": 83.7, "length_m": 3328.7, "step_m": 5.0, "distance_m": [0.0, 5.0], "channels": {},
           "map": None, "corners": []}
    coach = [{"v": 1, "type": "coach", "lap": k, "t": float(k)} for k in range(n)]
    tips = [{"v": 1, "type": "tip", "lap": k, "lap_index": k, "corner": "T3", "fault": "brake_early",
             "change": "brake 20 m later", "time_loss_s": 0.5, "rank": 1, "reference": "S:1"} for k in range(n)]
    return [ref, *coach, *tips]


def test_the_stream_keeps_the_coachs_messages_for_late_joiners_and_takes_set_reference() -> None:
    server = StreamServer("127.0.0.1", 0).start()
    controls: list[dict] = []
    try:
        server.publish_session({"id": "S", "track": "t"})
        for m in _coach_messages(3):
            server.publish_message(m)

        async def main() -> None:
            first = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 60})
            await first.wait_for(lambda log: len(log.of("tip")) == 3)  # the server has them all
            late = await open_log(server.url, subscribe={"channels": ["Speed"], "rate": 60})
            await late.wait_for(lambda log: len(log.of("tip")) == 3)  # after its subscribed
            server.publish_frame(1, 0.0, {"Speed": 1.0})
            await late.wait_for(lambda log: log.frames())
            kinds = [m["type"] for m in late.messages if m["type"] in ("session", "reference", "coach", "tip")]
            assert kinds == ["session", "reference", "coach", "tip", "tip", "tip"]  # the latest coach only
            assert late.of("coach")[0]["lap"] == 2
            await late.send({"v": 1, "type": "set_reference", "kind": "optimal"})
            await late.wait_for(lambda log: log.of("error"))
            assert late.of("error")[0]["code"] == "no_coach"  # no coach answers on this stream
            server.control_handler = controls.append
            await late.send({"v": 1, "type": "set_reference", "kind": "lap", "lap": "S:3"})
            await late.send({"v": 1, "type": "set_reference", "kind": "lap", "lap": "3"})
            await late.wait_for(lambda log: len(log.of("error")) == 2)
            assert late.of("error")[1]["code"] == "bad_reference" and "SESSION:LAP" in late.of("error")[1]["message"]
            server.publish_session({"id": "S2", "track": "t"})  # a new session forgets them
            await late.wait_for(lambda log: log.of("session")[-1]["meta"]["id"] == "S2")
            fresh = await open_log(server.url, subscribe={"channels": None, "rate": 60})
            await fresh.wait_for(lambda log: log.of("subscribed"))
            server.publish_frame(2, 0.0, {"Speed": 1.0})
            await fresh.wait_for(lambda log: log.frames())
            assert not [m for m in fresh.messages if m["type"] in ("reference", "coach", "tip")]

        run(main())
        assert controls == [{"type": "set_reference", "kind": "lap", "lap": "S:3"}]
    finally:
        server.stop()


def test_the_relay_forwards_the_coachs_messages_per_driver_and_set_reference_to_the_driver() -> None:
    from pitbox.live import RelayPublisher
    from pitbox.live.protocol import Derived

    relay = Relay("127.0.0.1", 0, limits=FAST_REPLAY).start()
    pub = RelayPublisher(relay.url, driver_id="alice", backoff_s=0.02, backoff_max_s=0.2).start()
    controls: list[dict] = []
    pub.control_handler = controls.append
    try:
        assert pub.wait_connected(20)
        pub.publish_session({"id": "S", "track": "t"})
        for m in _coach_messages(2):
            pub.publish_message(m)


        async def main() -> None:
            first = await open_log(relay.url, subscribe={"channels": ["pitbox_delta_s"], "rate": 60})
            await first.wait_for(lambda lg: len(lg.of("tip")) == 2)  # the relay has them all
            log = await open_log(relay.url, subscribe={"channels": ["pitbox_delta_s"], "rate": 60})
            await log.wait_for(lambda lg: len(lg.of("tip")) == 2)
            pub.publish_frame(1, 0.0, Derived({"Speed": 3.0}, {"pitbox_delta_s": 0.25}))
            await log.wait_for(lambda lg: lg.frames())
            assert log.frames()[-1]["values"] == {"pitbox_delta_s": 0.25} and log.frames()[-1]["driver"] == "alice"
            assert {m["driver"] for m in log.messages if m["type"] in ("reference", "coach", "tip")} == {"alice"}
            assert [m["lap"] for m in log.of("coach")] == [1]
            await log.send({"v": 1, "type": "set_reference", "kind": "all_time_best", "driver": "alice"})
            await log.send({"v": 1, "type": "set_reference", "kind": "all_time_best"})
            await log.wait_for(lambda lg: lg.of("error"))
            assert log.of("error")[0]["code"] == "bad_driver"

        run(main())
        deadline = time.monotonic() + 20
        while not controls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert controls == [{"type": "set_reference", "kind": "all_time_best", "lap": None}]
    finally:
        pub.stop()
        relay.stop()


@pytest.mark.skipif(sys.platform == "win32", reason="kills the analyst with SIGKILL")
def test_stop_returns_when_the_analyst_died_with_jobs_unread(tmp_path: Path) -> None:
    """An analyst process that dies (killed, or terminated by ``stop`` under load) leaves
    jobs in the pipe that nobody reads; ``stop`` must still return (it waited forever on the
    queue's feeder thread: a hang seen in ``pitbox record --stream`` on a loaded machine)."""
    import os
    import signal

    from pitbox.livecoach.worker import AnalystProcess

    analyst = AnalystProcess(lambda result: None, data=tmp_path).start()
    assert analyst.ready.wait(300), "the analyst process never started"
    assert analyst.pid is not None
    os.kill(analyst.pid, signal.SIGKILL)
    while analyst.alive:
        time.sleep(0.01)
    analyst.submit([b"x" * (1 << 20)])  # far more than a pipe holds: its feeder thread blocks
    stopper = threading.Thread(target=analyst.stop, kwargs={"timeout": 1.0}, daemon=True)
    stopper.start()
    stopper.join(120)  # a safety net only: stop() returns at once
    assert not stopper.is_alive(), "stop() hung on jobs the dead analyst never read"
def test_no_live_coach_streams_the_recorder_alone(tmp_path: Path) -> None:
    """``pitbox record --stream --no-live-coach``: the stream carries the recorder's frames and
    nothing of the coach (no derived channel even when asked for, no reference/coach/tip
    messages, ``set_reference`` answered with ``no_coach``), and no analyst process runs."""
    import psutil

    sim = simulate_session("pitboxsim_demo", 1, [], 33, in_lap=False, out=tmp_path / "p.ibt")
    emu = Emulator([sim.ibt_path], tmp_path / "irsdk.bin", speed=math.inf, keep_ground_truth=False).open()
    log = tmp_path / "record.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*_pitbox(), "record", "--irsdk-file", str(emu.memmap_path), "--data", str(tmp_path / "data"),
             "--stream", "--stream-port", "0", "--no-live-coach", "--until-gone", "--no-fsync", "--timeout-s", "60"],
            stdout=out, stderr=subprocess.STDOUT, text=True)
    pacer = Pacer(emu, hold_after=1200)  # 20 s of the out lap, then the sim sits still while we look
    try:
        url = _line(proc, log, "streaming on ").split()[-1]
        _line(proc, log, "recording ")
        pacer.start()

        async def client() -> None:
            lg = await open_log(url, subscribe={"channels": ["Speed", "LapDistPct", *DERIVED], "rate": 60})
            await lg.wait_for(lambda lg: len(lg.frames()) >= 300 or pacer.hold.is_set() and lg.frames(), timeout=300)
            await lg.send({"v": 1, "type": "set_reference", "kind": "optimal"})
            await lg.wait_for(lambda lg: lg.of("error"), timeout=30)
            assert lg.of("error")[0]["code"] == "no_coach"
            assert {n for m in lg.frames() for n in m["values"]} == {"Speed", "LapDistPct"}
            assert not [m for m in lg.messages if m["type"] in ("reference", "coach", "tip")]

        try:
            run(client(), timeout=400)
        except BaseException:
            print(log.read_text())
            raise
        kids = [p.name() for p in psutil.Process(proc.pid).children(recursive=True)]
        assert not [k for k in kids if "analyst" in k or "python" in k.lower()], kids
        pacer.halt.set()  # the sim closes: the recorder stores the session and exits (--until-gone)
        pacer.join(120)
        assert proc.wait(120) == 0, log.read_text()
        assert "live coach on" not in log.read_text()
        assert "1 session(s) stored" in log.read_text()
    finally:
        pacer.halt.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        emu.close()


def test_the_analyst_process_ends_when_the_recorder_dies() -> None:
    """A recorder killed (Task Manager, a crash) leaves no analyst process behind."""
    import psutil

    script = ("import sys\nfrom pitbox.livecoach.worker import AnalystProcess\n"
              "p = AnalystProcess(lambda r: None).start()\nassert p.ready.wait(300)\n"
              "print(p.pid, flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), line
        analyst = psutil.Process(int(line))
        assert analyst.is_running()
    finally:
        proc.kill()  # no clean stop: the parent just vanishes
        proc.wait(30)
    analyst.wait(timeout=120)  # raises psutil.TimeoutExpired if it lingers
