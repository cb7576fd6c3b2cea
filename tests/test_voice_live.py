"""The voice coach's glue: stream messages in (contract A), the scheduler in between, audio
and ``voice`` messages out; the browser panel's audio widget."""

from __future__ import annotations

import numpy as np

from pitbox.voice import Voice
from pitbox.voice.coach import VoiceCoach, frame_values
from pitbox.voice.player import NullPlayer, make_player
from pitbox.voice.scheduler import Message, QuietZones, Scheduler
from pitbox.voice.wav import read_wav

L = 1000.0


def reference_message() -> dict:
    """A reference message as the live coach sends it: a 1 km lap at 50 m/s with one corner
    from 600 m to 700 m, braking from 550 m."""
    d = np.arange(0.0, L + 5, 5.0)
    brake = ((d >= 550) & (d < 600)).astype(float)
    return {"v": 1, "type": "reference", "kind": "session_best", "label": "lap 3", "session": None, "lap_index": 3,
            "time_s": 20.0, "length_m": L, "step_m": 5.0, "distance_m": d.tolist(),
            "channels": {"time_s": (d / 50.0).tolist(), "Brake": brake.tolist(), "Speed": [50.0] * len(d)},
            "map": None, "corners": [{"name": "T1", "start_m": 600.0, "apex_m": 650.0, "end_m": 700.0}]}


def test_zones_from_the_reference_message() -> None:
    z = QuietZones.from_reference_message(reference_message())
    (zone,) = z.zones
    assert zone.corners == ["T1"]
    assert zone.start_m == 500.0  # 1 s before the braking point at 50 m/s
    assert zone.end_m == 725.0  # 0.5 s after the corner's end
    assert z.brake_points["T1"] == 550.0
    assert z.window_for("T1", 3.0) == (725.0, 1500.0)  # the straight from the exit round to the braking


def drive(coach: VoiceCoach, t0: float, t1: float, lap0: int = 1) -> list:
    """Frames at 60 Hz of a car at 50 m/s on the 1 km lap (a lap is 20 s)."""
    acts = []
    for t in np.arange(t0, t1, 1 / 60):
        dist = (t * 50.0) % L
        lap = lap0 + int(t * 50.0 // L)
        acts += coach.on_frame(float(t), {"Lap": lap, "LapDistPct": dist / L, "OnPitRoad": False})
    return acts


def test_a_tip_goes_out_on_the_straight_before_its_corner_as_audio_and_a_voice_message(tmp_path) -> None:
    sent = []
    player = NullPlayer()
    coach = VoiceCoach(Voice(engine="local", cache_dir=tmp_path), player, Scheduler(latency_s=0.1), sent.append,
                       background=True)
    coach.handle(reference_message())
    drive(coach, 0.0, 1.0)
    coach.handle({"v": 1, "type": "tip", "lap": 1, "lap_index": 1, "corner": "T1", "fault": "brake_early",
                  "change": "brake 15 m later (at 550 m, not 535 m)", "time_loss_s": 0.31, "rank": 1,
                  "reference": "lap 3"})
    assert coach.wait_synthesized(60)
    acts = drive(coach, 1.0, 45.0)
    coach.close()
    (start,) = [a for a in acts if a.kind == "start"]
    m = start.message
    assert m.spoken == "Turn 1: brake 15 metres later, worth three tenths" and m.audio.engine == "local"
    assert start.lap == 2  # the tip is about lap 1: said on the next lap
    dist = (start.t * 50.0) % L
    dist = dist if dist >= 725.0 else dist + L  # the straight runs over the line
    end = dist + 50.0 * (0.1 + m.duration_s)
    assert 725.0 <= dist and end <= 1500.0  # started after the last corner, ended before the braking zone
    assert player.played == 1
    assert sent == [{"v": 1, "type": "voice", "text": m.text, "spoken": m.spoken, "priority": "tip",
                     "t": round(start.t, 3), "lap": 2, "corner": "T1"}]
    assert coach.ready_log[0].ready >= coach.ready_log[0].arrived


def test_low_fuel_is_said_at_once_even_in_a_corner(tmp_path) -> None:
    coach = VoiceCoach(Voice(engine="text"), NullPlayer(), Scheduler(latency_s=0.1), background=False)
    coach.handle(reference_message())
    drive(coach, 0.0, 12.0)  # at 600 m: in the corner
    coach.command("mute")
    coach.handle({"v": 1, "type": "coach", "lap": 1, "fuel": {"level_l": 1.2, "laps_left": 0.6}})
    acts = coach.on_frame(12.02, {"Lap": 1, "LapDistPct": 0.601})
    assert [(a.kind, a.message.priority) for a in acts] == [("start", "critical")]
    assert acts[0].message.text.startswith("Box this lap")


def test_frames_as_the_recorder_publishes_them() -> None:
    row = np.zeros(1, dtype=[("Lap", "i4"), ("LapDistPct", "f4"), ("Speed", "f4")])[0]
    row["Lap"], row["LapDistPct"] = 3, 0.25

    class Derived:  # the live coach's frame: the recorder's row plus derived channels
        def __init__(self, row, extra):
            self.row, self.extra = row, extra

    v = frame_values(Derived(row, {"pitbox_delta_s": 0.2, "pitbox_lap_dist_m": 250.0, "other": 1}))
    assert v == {"Lap": 3, "LapDistPct": 0.25, "pitbox_delta_s": 0.2, "pitbox_lap_dist_m": 250.0}
    coach = VoiceCoach(Voice(engine="text"), NullPlayer(), Scheduler(latency_s=0.1), background=False)
    coach.publish_message(reference_message())
    coach.publish_frame(1, 5.0, Derived(row, {"pitbox_lap_dist_m": 250.0}))
    assert coach.lap == 3 and coach.t == 5.0
    coach.publish_message({"v": 1, "type": "reference", "channels": {}})  # broken: logged, never raised
    assert coach.errors == 1 and coach.scheduler.zones is not None  # the last good zones stay
    coach.say("a tip", "tip")
    coach.say("an answer", "reply")
    coach.publish_session({"id": "new"})  # from the writer's thread: taken in with the next frame
    assert len(coach.scheduler.pending) == 2
    coach.publish_frame(2, 1.0, Derived(row, {"pitbox_lap_dist_m": 250.0}))  # the new session's clock
    assert [m.text for m in coach.scheduler.expired] == ["a tip"]  # about the old session
    said = [m.text for m in coach.scheduler.pending] + [sp.message.text for sp in coach.scheduler.spoken]
    assert said == ["an answer"]


def test_a_phrase_made_for_the_old_session_is_not_said_in_the_new_one() -> None:
    """Synthesis runs beside the frames: a tip that is ready only after its session ended is
    about the old session and expires; an answer made then is still said, its time to live
    counted on the new session's clock."""
    coach = VoiceCoach(Voice(engine="text"), NullPlayer(), Scheduler(latency_s=0.1), background=True)
    try:
        coach.on_frame(900.0, {"Lap": 9, "LapDistPct": 0.5})
        coach.say("an old tip", "tip")
        coach.say("an answer", "reply", ttl_s=5.0)
        assert coach.wait_synthesized(60)  # both ready, not yet handed to the scheduler
        coach.publish_session({"id": "next"})
        coach.on_frame(3.0, {"Lap": 0, "LapDistPct": 0.5})  # the new session's clock
        assert [m.text for m in coach.scheduler.expired] == ["an old tip"]
        answer = [m for m in coach.scheduler.pending] + [sp.message for sp in coach.scheduler.spoken]
        assert [m.text for m in answer] == ["an answer"] and answer[0].created_t == 3.0
    finally:
        coach.close()


def test_the_browser_panel_plays_voice_messages(tmp_path) -> None:
    from pitbox.voice.widget import VoicePanel

    panel = VoicePanel(Voice(engine="local", cache_dir=tmp_path, normalise=False))
    msg = {"v": 1, "type": "voice", "text": "T3: 0.3 s", "spoken": "Turn 3: three tenths", "priority": "tip",
           "t": 1.0, "lap": 2, "corner": "T3"}
    panel.on_voice(msg)  # off: browsers need a click before they play
    assert panel.played == [] and panel.audio.value == b""
    panel.toggle.value = True
    panel.on_voice(msg)
    panel._thread.join(30)
    x, rate = read_wav(panel.audio.value)
    assert rate > 0 and len(x) / rate > 0.5 and panel.played[0]["engine"] == "local"
    assert "T3: 0.3 s" in panel.label.value
    panel.close()


def test_a_phrase_arriving_as_the_idle_panel_worker_leaves_still_plays() -> None:
    """The panel's worker thread leaves when no phrase came for a while; a phrase that arrives
    after it found none but before it has ended must start another worker, not be dropped
    (it was, once in a loaded browser run). The panel's lock is wrapped so that the phrase
    arrives in exactly that moment: right as the idle worker releases the lock."""
    import threading

    from pitbox.voice.widget import VoicePanel

    panel = VoicePanel(Voice(engine="text"), enabled=True)
    panel.IDLE_S = 0.01
    first = {"type": "voice", "text": "T3: 0.3 s", "priority": "tip"}
    second = {"type": "voice", "text": "T6: 0.5 s", "priority": "tip"}

    class Gate:
        def __init__(self) -> None:
            self.lock, self.fired, self.idle = threading.Lock(), False, False

        def __enter__(self) -> None:
            self.lock.acquire()
            self.idle = threading.current_thread().name == "pitbox-voice-panel" and panel._latest is None

        def __exit__(self, *exc: object) -> None:
            idle = self.idle
            self.lock.release()
            if idle and not self.fired:  # the worker found nothing and is about to leave
                self.fired = True
                t = threading.Thread(target=panel.on_voice, args=(second,))
                t.start()
                t.join()

    panel._lock = Gate()
    panel.on_voice(first)
    worker = panel._thread
    worker.join(30)
    assert panel._lock.fired
    assert panel._thread is not None and panel._thread is not worker, "the second phrase started no worker"
    panel._thread.join(30)
    assert [m["text"] for m in panel.played] == ["T3: 0.3 s", "T6: 0.5 s"]
    assert "T6: 0.5 s" in panel.label.value
    panel.close()


def test_player_choice_here() -> None:
    p = make_player("auto")
    assert p.name in ("sounddevice", "aplay", "null", "winsound")
    p.close()


def test_messages_need_a_known_priority() -> None:
    import pytest

    from pitbox.voice.errors import VoiceError

    with pytest.raises(VoiceError, match="priority"):
        Message("x", "urgent")


def test_verbose_says_each_lap_time_as_information() -> None:
    def coach_at(verbosity: str) -> VoiceCoach:
        c = VoiceCoach(Voice(engine="text"), NullPlayer(), Scheduler(latency_s=0.1, verbosity=verbosity),
                       background=False)
        for _ in range(3):  # the coach message comes once a second: the lap is said once
            c.on_coach({"type": "coach", "lap": 3, "last_lap_s": 84.34, "best_lap_s": 83.9})
        return c

    (info,) = [m for m in coach_at("verbose").scheduler.pending if m.priority == "info"]
    assert info.text == "Lap 1 minute 24.3, four tenths off your best"
    assert coach_at("normal").scheduler.pending == []


def test_verbosity_levels() -> None:
    """quiet: only critical messages and replies; normal: + tips; verbose: + information."""
    zones = QuietZones.from_reference_message(reference_message())
    heard = {}
    for level in ("quiet", "normal", "verbose"):
        s = Scheduler(zones, latency_s=0.1, verbosity=level, cooldown_s=0.0)
        s.submit(Message("a tip", "tip", duration_s=1.0, corner="T1", lap=1), t=0.0)
        s.submit(Message("lap time", "info", duration_s=1.0), t=0.0)
        s.submit(Message("an answer", "reply", duration_s=1.0), t=0.0)
        for t in np.arange(20.0, 60.0, 0.1):  # laps 2 and 3 at 50 m/s
            s.update(float(t), 1 + int(t // 20), (t * 50.0) % L)
        heard[level] = sorted(sp.message.priority for sp in s.spoken)
    assert heard == {"quiet": ["reply"], "normal": ["reply", "tip"], "verbose": ["info", "reply", "tip"]}
