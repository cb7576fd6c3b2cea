"""When the voice speaks, checked on replays of a simulated practice session with injected
faults.

* The main replay plays the session's ``.ibt`` through the iRacing emulator one tick at a time
  (lockstep) and reads every frame with unmodified pyirsdk from the memory map; the tips are
  ``pitbox coach``'s, handed over half a second after each lap as the live coach does.
* The pre-emption and mute tests are about the scheduler alone: they read the ``.ibt``'s
  frames with pyirsdk directly.

The scheduler's quiet zones come from the corners the analysis detects on the reference lap
(and, in a second coach fed the same frames, from the simulator's track geometry and corner
file). Every check is against what the car did in the frames (``Brake``) and where the track's
corners really are (the simulator's geometry): never against the scheduler's own zones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pitbox.analysis as pa
from pitbox.sim import load_corner_file, load_track, simulate_session
from pitbox.voice import Voice
from pitbox.voice.coach import VoiceCoach
from pitbox.voice.player import NullPlayer
from pitbox.voice.scheduler import Message, QuietZones, Scheduler
from pitbox.voice.testing import emulator_frames, ibt_frames, replay_voice

TRACK = "pitboxsim_demo"
FAULTS = ["2:T1:brake_early:20", "3:T6:late_throttle:20", "4:T5:brake_late:12", "5:T8:brake_early:20",
          "6:T3:low_min_speed:6", "7:T6:brake_early:20", "8:T1:late_throttle:20"]
LATENCY_S = 0.15
BUDGET = 2


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("voice_sched")
    res = simulate_session(TRACK, laps=10, faults=FAULTS, seed=7, out=d / "practice.ibt")
    a = pa.analyse(res.ibt_path)
    tips = pa.coach(a).tips
    tips = [{**t, "rank": int(i) + 1} for _, g in tips.groupby("lap_index") for i, (_, t) in
            enumerate(g.sort_values("time_loss_s", ascending=False).iterrows())]
    tips = [{k: (v.item() if hasattr(v, "item") else v) for k, v in t.items()} for t in tips]
    return {"dir": d, "ibt": res.ibt_path, "analysis": a, "tips": tips, "cache": d / "voice-cache"}


def truth_zones(a: pa.SessionAnalysis) -> QuietZones:
    """Zones from the simulator's own corner geometry and its corner file's braking points."""
    track = load_track(TRACK)
    cf = load_corner_file(TRACK, "Demo Circuit")
    L = a.ref_trace.length_m
    bp = {c.name: c.brake_pct * L for c in cf.corners if c.brake_pct is not None}
    corners = [{"name": c.name, "start_m": c.start_m * L / track.length_m, "end_m": c.end_m * L / track.length_m,
                "brake_m": bp.get(c.name)} for c in track.corners]
    tr = a.ref_trace
    return QuietZones.from_reference(tr.distance_m, tr.time_s, None, corners, L)


def make_coach(zones: QuietZones, cache: Path) -> VoiceCoach:
    sched = Scheduler(zones, latency_s=LATENCY_S, budget_per_lap=BUDGET)
    return VoiceCoach(Voice(engine="local", cache_dir=cache), NullPlayer(), sched, background=False)


@pytest.fixture(scope="module")
def replay(practice: dict) -> dict:
    a = practice["analysis"]
    coaches = {"detected": make_coach(QuietZones.from_analysis(a), practice["cache"]),
               "geometry": make_coach(truth_zones(a), practice["cache"])}
    frames = replay_voice(list(coaches.values()), emulator_frames(practice["ibt"], str(practice["dir"] / "map.bin")),
                          practice["tips"])
    return {"coaches": coaches, "frames": frames, "length_m": a.ref_trace.length_m}


def corner_geometry(length_m: float) -> dict[str, tuple[float, float]]:
    track = load_track(TRACK)
    k = length_m / track.length_m
    return {c.name: (c.start_m * k, c.end_m * k) for c in track.corners}


def in_corner(dist: np.ndarray, geo: dict[str, tuple[float, float]]) -> np.ndarray:
    return np.any([(dist >= a) & (dist <= b) for a, b in geo.values()], axis=0)


@pytest.mark.slow
@pytest.mark.parametrize("zones", ["detected", "geometry"])
def test_tips_are_spoken_on_the_straight_before_their_corner(replay: dict, practice: dict, zones: str) -> None:
    coach: VoiceCoach = replay["coaches"][zones]
    f = replay["frames"]
    t, lap, brake = f["SessionTime"].astype(float), f["Lap"].astype(int), f["Brake"].astype(float)
    dist = f["LapDistPct"].astype(float) * replay["length_m"]
    geo = corner_geometry(replay["length_m"])
    cornering = in_corner(dist, geo)
    spoken = [s for s in coach.scheduler.spoken if s.message.priority == "tip"]
    n_tips = len(practice["tips"])
    assert n_tips >= 6, "the faults should give tips"
    last_lap = int(lap.max())
    # tips about the last laps may find no lap left to be spoken on: count those that could
    could = [tp for tp in practice["tips"] if int(tp["lap"]) < last_lap - 1]
    said = {(s.message.corner, s.message.lap) for s in spoken}
    share = sum((tp["corner"], int(tp["lap"])) in said for tp in could) / len(could)
    assert share >= 0.8, f"only {share:.0%} of the tips were spoken"
    for s in spoken:
        m = s.message
        window = (t >= s.audible_t) & (t <= s.end_t)
        assert window.any()
        # heard while the car neither brakes nor turns, as the frames show it
        assert brake[window].max() <= 0.05, f"{m.text!r} heard under braking"
        assert not cornering[window].any(), f"{m.text!r} heard in a corner"
        # on a later lap than the one it is about, within its time to live
        assert s.lap > m.lap
        assert s.start_t - m.created_t <= m.ttl_s
        # before its corner: the car reaches the corner after the audio ends, passing at most the
        # two corners that have no straight of their own before them (demo T2 and T3)
        after = t > s.end_t
        reach = np.flatnonzero(after & (dist >= geo[m.corner][0]) & (dist <= geo[m.corner][1]))
        assert len(reach), "the car never reached the corner after the tip"
        between = (t > s.end_t) & (t < t[reach[0]])
        passed = {name for name, (a0, a1) in geo.items() if np.any(between & (dist >= a0) & (dist <= a1))}
        assert len(passed) <= 2, f"{m.text!r} spoken {len(passed)} corners before {m.corner}"
        assert t[reach[0]] - s.end_t < 40.0
    # never two at once, and the per-lap budget holds
    starts = sorted(coach.scheduler.spoken, key=lambda s: s.start_t)
    for x, y in zip(starts, starts[1:], strict=False):
        assert x.end_t <= y.start_t + 1e-9
    per_lap: dict[int, int] = {}
    for s in spoken:
        per_lap[s.lap] = per_lap.get(s.lap, 0) + 1
    assert max(per_lap.values()) <= BUDGET
    # the stream got one voice message per message spoken, as contract A has it
    assert [m["text"] for m in coach.sent] == [s.message.text for s in coach.scheduler.spoken]
    v = coach.sent[0]
    assert v["type"] == "voice" and v["v"] == 1 and set(v) >= {"text", "spoken", "priority", "t", "lap", "corner"}


@pytest.mark.slow
def test_the_detected_corners_agree_with_the_track(replay: dict) -> None:
    """The zones the analysis learns cover every corner of the track's real geometry."""
    zones = replay["coaches"]["detected"].scheduler.zones
    for name, (a, b) in corner_geometry(replay["length_m"]).items():
        for d in np.linspace(a, b, 9):
            assert zones.zone_at(d) is not None, f"{name} at {d:.0f} m is not quiet"


# -- the scheduler alone, on the .ibt's frames ---------------------------------------------------


@pytest.fixture(scope="module")
def ibt(practice: dict) -> dict:
    return ibt_frames(practice["ibt"])


def straight_frame(f: dict, zones: QuietZones, lap_no: int, need_s: float) -> int:
    """A frame of lap ``lap_no`` where ``need_s`` seconds of speech fit before the next zone."""
    dist = f["LapDistPct"] * zones.length_m
    for i in np.flatnonzero(f["Lap"] == lap_no):
        if zones.zone_at(dist[i]) is None and zones.time_to_next_zone(dist[i]) * 0.85 > need_s:
            return int(i)
    raise AssertionError("no straight")


def run(s: Scheduler, f: dict, zones: QuietZones, i0: int, i1: int, inject: dict) -> list:
    acts = []
    for i in range(i0, i1):
        for m in inject.get(i, []):
            s.submit(m, t=float(f["SessionTime"][i]))
        acts += [(i, a) for a in s.update(float(f["SessionTime"][i]), int(f["Lap"][i]),
                                          float(f["LapDistPct"][i]) * zones.length_m, bool(f["OnPitRoad"][i]))]
    return acts


def test_a_command_reply_cuts_a_tip(practice: dict, ibt: dict) -> None:
    zones = QuietZones.from_analysis(practice["analysis"])
    s = Scheduler(zones, latency_s=LATENCY_S)
    i = straight_frame(ibt, zones, 4, 3.0)
    tip = Message("Turn 6: brake 20 metres later", "tip", 2.0)  # no corner: any straight will do
    reply = Message("Fuel for 5 laps", "reply", 0.8)
    acts = run(s, ibt, zones, i, i + 6000, {i: [tip], i + 30: [reply]})
    kinds = [(a.kind, a.message.priority) for _, a in acts]
    assert kinds[:3] == [("start", "tip"), ("stop", "tip"), ("start", "reply")]
    assert acts[1][0] == acts[2][0] == i + 30  # cut and replaced in the same frame
    # the cut tip comes back once the reply is done, whole
    assert ("start", "tip") in kinds[3:]
    again = [a for _, a in acts[3:] if a.kind == "start"][0]
    assert again.t >= acts[2][1].t + LATENCY_S + reply.duration_s


def test_a_waiting_reply_goes_before_a_waiting_tip(practice: dict, ibt: dict) -> None:
    zones = QuietZones.from_analysis(practice["analysis"])
    s = Scheduler(zones, latency_s=LATENCY_S)
    i = int(np.flatnonzero((ibt["Lap"] == 4) & (ibt["Brake"] > 0.5))[0])  # braking: nothing may start
    acts = run(s, ibt, zones, i, i + 3000, {i: [Message("tip", "tip", 1.5), Message("reply", "reply", 1.5)]})
    starts = [a.message.priority for _, a in acts if a.kind == "start"]
    assert starts[:2] == ["reply", "tip"]
    first = acts[0]
    assert first[0] > i and ibt["Brake"][first[0]] <= 0.05


def test_mute_silences_everything_but_safety(practice: dict, ibt: dict) -> None:
    zones = QuietZones.from_analysis(practice["analysis"])
    s = Scheduler(zones, latency_s=LATENCY_S)
    i = straight_frame(ibt, zones, 5, 3.0)
    s.submit(Message("tip", "tip", 2.0), t=float(ibt["SessionTime"][i]))
    acts = run(s, ibt, zones, i, i + 1, {})
    assert [a.kind for _, a in acts] == ["start"]
    stopped = s.mute(True)
    assert [a.kind for a in stopped] == ["stop"]
    j = int(np.flatnonzero((ibt["Lap"] == 5) & (ibt["Brake"] > 0.5))[-1])  # in a braking zone
    later = run(s, ibt, zones, i + 1, j + 2000, {i + 60: [Message("reply", "reply", 1.0, ttl_s=1000.0), Message("info", "info", 1.0),
                                                         Message("tip 2", "tip", 1.0)],
                                                 j: [Message("Box now", "critical", 1.0)]})
    started = [(k, a.message.text) for k, a in later if a.kind == "start"]
    assert started == [(j, "Box now")]  # at once, in the braking zone, muted
    s.mute(False)
    more = run(s, ibt, zones, j + 2000, j + 9000, {})
    assert "reply" in [a.message.text for _, a in more if a.kind == "start"]


def test_time_to_live_is_checked_when_speaking(practice: dict, ibt: dict) -> None:
    zones = QuietZones.from_analysis(practice["analysis"])
    s = Scheduler(zones, latency_s=LATENCY_S)
    i = int(np.flatnonzero((ibt["Lap"] == 3) & (ibt["Brake"] > 0.5))[0])
    m = Message("old news", "info", 1.0, ttl_s=0.05)
    s.set_verbosity("verbose")
    acts = run(s, ibt, zones, i, i + 2000, {i: [m]})
    assert [a.kind for _, a in acts] == ["expired"]


# -- a new session: its SessionTime starts again (iRacing counts it per session) -------------------


def test_a_new_session_whose_clock_starts_again_is_not_kept_silent(practice: dict, ibt: dict) -> None:
    """A tip playing as the session ends leaves a cooldown and an end time on the old clock;
    on the new session's clock (near zero again) neither may hold the voice back."""
    zones = QuietZones.from_analysis(practice["analysis"])
    s = Scheduler(zones, latency_s=LATENCY_S)
    i = straight_frame(ibt, zones, 7, 3.0)
    acts = run(s, ibt, zones, i, i + 1, {i: [Message("last tip of session one", "tip", 2.0)]})
    assert [a.kind for _, a in acts] == ["start"]  # still playing when the session changes
    s.new_session()
    # session two: the same frames again from the start, a clock ~6 laps behind the old one
    j = straight_frame(ibt, zones, 2, 3.0)
    lap2 = np.flatnonzero(ibt["Lap"] == 2)
    acts = run(s, ibt, zones, 0, int(lap2[-1]) + 1, {j: [Message("first tip of session two", "tip", 2.0)]})
    starts = [(k, a.message.text) for k, a in acts if a.kind == "start"]
    assert [text for _, text in starts] == ["first tip of session two"]
    k = starts[0][0]
    assert j <= k <= lap2[-1] and ibt["Brake"][k] <= 0.05  # in its lap, off the brakes


def test_an_answer_asked_as_the_session_ends_is_still_said(practice: dict, ibt: dict) -> None:
    """The driver asks for fuel in a braking zone (nothing may start there), and the session
    changes before the answer could be said: the answer comes in the new session, with the
    client's command id; the tip that was waiting is about the old session and expires."""
    zones = QuietZones.from_analysis(practice["analysis"])
    sent: list[dict] = []
    coach = VoiceCoach(Voice(engine="text"), NullPlayer(), Scheduler(zones, latency_s=LATENCY_S),
                       send=sent.append, background=False)
    names = ("Lap", "LapDistPct", "OnPitRoad")

    def feed(k: int) -> None:
        coach.on_frame(float(ibt["SessionTime"][k]), {n: ibt[n][k].item() for n in names})

    b = int(np.flatnonzero((ibt["Lap"] == 6) & (ibt["Brake"] > 0.5))[0])
    for k in range(b - 600, b):
        feed(k)
    coach.say("a tip about session one", "tip")
    coach.post_command("fuel", reply_to="c1")
    feed(b)
    assert sent == [] and coach.answers and coach.answers[0][0] == "fuel"
    coach.publish_session({"id": "session two"})
    for k in range(0, int(np.flatnonzero(ibt["Lap"] == 2)[-1])):
        feed(k)
    assert [m.get("reply_to") for m in sent] == ["c1"]
    assert sent[0]["text"] == coach.answers[0][2] and sent[0]["priority"] == "reply"
    assert "a tip about session one" in [m.text for m in coach.scheduler.expired]
