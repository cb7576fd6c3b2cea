"""The live coach's core on frames recorded from the emulator (unmodified pyirsdk reading the
memory map the emulator writes) replaying a simulated practice with injected faults.

Expected values come from elsewhere: ``pitbox compare`` and ``pitbox coach`` on the stored
session (cut where the live coach ran, as an ``.ibt`` the analysis reads itself), the
simulator's ground truth (lap times, time at every metre, fuel), iRacing's own lap times in
a real file, and pyirsdk.

"The same laps" for tips: the live tips of lap N are ``pitbox coach``'s tips of lap N on the
session as recorded up to the tick at which the live coach ran the after-lap analysis
(``cut_tick``, the first tick after lap N's last corner segment ended on lap N+1, or the
session's last tick), with the same reference.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_recorder import Running, stored_ticks, wait_until

from pitbox.analysis import compare_laps
from pitbox.analysis.source import parse_yaml_text
from pitbox.cli import main as cli_main
from pitbox.emulator import Emulator
from pitbox.ibt.writer import write_ibt
from pitbox.livecoach import LiveCoach
from pitbox.livecoach import jobs as J
from pitbox.livecoach.analyst import Analyst, run_jobs
from pitbox.livecoach.frames import FIELDS, TYRE_CHANNELS
from pitbox.recorder import IrsdkSource
from pitbox.recorder.cli import drive_emulator
from pitbox.sim import read_truth, simulate_session
from pitbox.store import import_file, read_meta

from conftest import LANGLEY, REAL, need

SIM = {"track": "pitboxsim_demo", "laps": 4, "seed": 21, "in_lap": False,
       "faults": ["3:T3:brake_early:25", "4:T6:late_throttle:25"]}
KEEP = tuple(dict.fromkeys((*FIELDS, *TYRE_CHANNELS, "CarIdxLapDistPct")))


class FrameLog:
    """The recorder's publisher: keeps every frame (the coach's channels of the live row)."""

    def __init__(self) -> None:
        self.ticks: list[int] = []
        self.times: list[float] = []
        self._batch: list[np.void] = []
        self.parts: list[np.ndarray] = []
        self.sessions: list[dict] = []
        self.infos: list[dict] = []

    def publish_frame(self, tick: int, session_time: float, values: np.void) -> None:
        self.ticks.append(tick)
        self.times.append(session_time)
        self._batch.append(values)
        if len(self._batch) >= 512:
            self._compact()

    def _compact(self) -> None:
        if self._batch:
            from numpy.lib import recfunctions as rfn

            arr = np.array(self._batch, dtype=self._batch[0].dtype)
            names = [n for n in KEEP if n in (arr.dtype.names or ())]
            self.parts.append(rfn.repack_fields(arr[names]))
            self._batch = []

    def rows(self) -> np.ndarray:
        self._compact()
        return np.concatenate(self.parts)

    def publish_lap(self, row: dict) -> None:
        pass

    def publish_session(self, meta: dict) -> None:
        self.sessions.append(dict(meta))

    def publish_session_info(self, info: dict) -> None:
        self.infos.append(info)


@dataclass
class Recorded:
    root: Path
    data: Path
    ibt: Path
    truth: dict[str, Any]
    arrays: dict[str, np.ndarray]
    path: Path  #: the stored live session
    meta: dict[str, Any]
    ticks: np.ndarray
    times: np.ndarray
    rows: np.ndarray  #: structured, one per frame (the coach's channels of the live row)
    session_msg: dict[str, Any]

    @property
    def sid(self) -> str:
        return str(self.meta["id"])

    @property
    def info(self) -> dict[str, Any]:
        return parse_yaml_text(self.meta["session_yaml"])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    root = tmp_path_factory.mktemp("livecoach")
    res = simulate_session(SIM["track"], SIM["laps"], SIM["faults"], SIM["seed"], in_lap=SIM["in_lap"],
                           out=root / "practice.ibt")
    truth, arrays = read_truth(res.ibt_path)
    emu = Emulator([res.ibt_path], root / "irsdk.bin", speed=math.inf, keep_ground_truth=False).open()
    log = FrameLog()
    src = IrsdkSource(emu.memmap_path)
    run = Running(src, root / "data", publisher=log)
    drive_emulator(emu, src, run.rec, math.inf, threading.Event())  # lockstep: every tick, as fast as it goes
    wait_until(lambda: not run.rec.session_open, 10, "the session to close")
    (path,) = run.stop()
    meta = read_meta(path)
    assert run.rec.stats.dropped == 0
    # another session of the track with GPS in the store: the live map comes from its track model
    other = simulate_session(SIM["track"], 1, (), 4, in_lap=False, out=root / "other.ibt")
    import_file(other.ibt_path, root / "data")
    return Recorded(root, root / "data", res.ibt_path, truth, arrays, path, meta, np.array(log.ticks),
                    np.array(log.times), log.rows(), log.sessions[0])


@dataclass
class Coached:
    coach: LiveCoach
    derived: list[dict[str, Any]] = field(default_factory=list)  #: per frame
    messages: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  #: (frame index, message)
    #: name -> (frame index, copy of the coach, copy of the analyst) before that frame
    snapshots: dict[str, tuple[int, LiveCoach, Analyst]] = field(default_factory=dict)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m["type"] == kind]


def coach_frames(rec: Recorded, coach: LiveCoach, analyst: Analyst, start: int = 0, stop: int | None = None,
                 out: Coached | None = None, hook: Any = None) -> Coached:
    """Feed frames ``[start, stop)`` to the core, running the analyst inline after each."""
    out = out or Coached(coach)
    for i in range(start, len(rec.rows) if stop is None else stop):
        if hook is not None:
            hook(i, coach)
        out.derived.append(coach.feed(int(rec.ticks[i]), float(rec.times[i]), rec.rows[i]))
        run_jobs(coach, analyst)
        out.messages.extend((i, m) for m in coach.messages())
    return out


def fresh_coach(rec: Recorded, **kw: Any) -> tuple[LiveCoach, Analyst]:
    coach = LiveCoach(**kw)
    coach.set_session(rec.session_msg)
    coach.set_session_info(rec.info)
    return coach, Analyst(rec.data)


@pytest.fixture(scope="module")
def coached(recorded: Recorded) -> Coached:
    """The core on every recorded frame, with copies of its state taken on the way for the
    tests that go on differently from there (a reference switch, a session change)."""
    coach, analyst = fresh_coach(recorded, fuel_laps=5)
    starts = crossings(recorded)  # first frames of laps 1, 2, 3, 4, 5
    marks = {"mid_lap_3": (starts[2] + starts[3]) // 2, "lap_4": starts[3] + 200}
    out = Coached(coach)

    def snapshot(i: int, c: LiveCoach) -> None:
        for name, at in marks.items():
            if i == at:
                out.snapshots[name] = (i, copy.deepcopy(c), copy.deepcopy(analyst))

    coach_frames(recorded, coach, analyst, out=out, hook=snapshot)
    coach.finish()
    run_jobs(coach, analyst)
    out.messages.extend((len(recorded.rows), m) for m in coach.messages())
    return out


def crossings(rec: Recorded) -> list[int]:
    """Frame indices where the Lap channel goes up by one (the first frame of a lap)."""
    lap = rec.rows["Lap"].astype(int)
    return [int(i) + 1 for i in np.flatnonzero(np.diff(lap) == 1)]


# -- delta -----------------------------------------------------------------------------------

def test_live_delta_at_each_line_equals_compare_and_the_true_lap_time_difference(recorded, coached) -> None:
    truth_laps = {lap["lap"]: lap for lap in recorded.truth["laps"]}
    checked = 0
    for i in crossings(recorded):
        state = [m for k, m in coached.messages if m["type"] == "coach" and k == i][-1]  # the new lap's first
        lap = int(recorded.rows["Lap"][i - 1])
        before = coached.derived[i - 1]["pitbox_delta_s"]
        if state["reference"] is None or before is None or state["last_lap_delta_s"] is None:
            continue
        ref = state["last_lap_reference"]
        row = next(r for r in coached.coach.laps if r["lap"] == lap)
        res = compare_laps(f"{recorded.sid}:{row['lap_index']}", ref, recorded.data)
        assert abs(before - res["delta_at_line_s"]) < 0.005, (lap, before, res["delta_at_line_s"])
        assert abs(state["last_lap_delta_s"] - res["delta_at_line_s"]) < 0.001
        ref_lap = res["reference"]["lap"]
        true = truth_laps[lap]["lap_time_s"] - truth_laps[ref_lap]["lap_time_s"]
        assert abs(state["last_lap_delta_s"] - true) < 0.005
        per_corner = dict(zip(res["per_corner"].corner, res["per_corner"].delta_s, strict=True))
        live = {c["corner"]: c["delta_s"] for c in state["last_lap_corner_deltas"]}
        assert set(live) == set(per_corner)
        for corner, d in per_corner.items():
            assert abs(live[corner] - d) < 0.005, (lap, corner, live[corner], d)
        checked += 1
    assert checked == SIM["laps"] - 1  # every timed lap after the first (the first is the reference)


def test_predicted_lap_and_lap_distance(recorded, coached) -> None:
    length = recorded.truth["track"]["length_m"]
    refs = coached.of("reference")
    ref_at = [(k, m["time_s"]) for k, m in coached.messages if m["type"] == "reference"]
    true_time = {lap["lap"]: lap["lap_time_s"] for lap in recorded.truth["laps"]}
    for m in refs:  # lap_index is the lap number here (no resets): the truth's lap time
        assert m["time_s"] == pytest.approx(true_time[m["lap_index"]], abs=5e-4)
    for i in range(0, len(recorded.rows), 97):
        d = coached.derived[i]
        assert d["pitbox_lap_dist_m"] == pytest.approx(float(recorded.rows["LapDistPct"][i]) * length, abs=0.05)
        if d["pitbox_delta_s"] is not None:  # predicted = the reference's lap time + the delta now
            ref_time = [t for k, t in ref_at if k <= i][-1]
            assert d["pitbox_predicted_lap_s"] == pytest.approx(ref_time + d["pitbox_delta_s"], abs=2e-4)
    assert refs and refs[0]["kind"] == "session_best" and refs[0]["map"] is not None
    mp = refs[0]["map"]  # live data has no GPS: a track model learned from the stored session with GPS
    assert mp["source"] == "model"
    path_m = np.sum(np.hypot(np.diff(mp["x"]), np.diff(mp["y"])))
    assert path_m == pytest.approx(length, rel=0.02)  # the map is the track, by its true length
    assert len(refs[0]["distance_m"]) == len(refs[0]["channels"]["Speed"]) == len(refs[0]["map"]["x"])
    assert [c["name"] for c in refs[0]["corners"]] == [c["name"] for c in recorded.truth["corners"]]
    assert len(json.dumps(refs[0])) < 100_000


# -- tips ------------------------------------------------------------------------------------

def cut_ibt(rec: Recorded, cut_tick: int, out: Path) -> Path:
    """The stored live session up to ``cut_tick`` (inclusive) as an .ibt (the analysis' channels)."""
    ticks = stored_ticks(rec.meta)
    k = int(np.searchsorted(ticks, cut_tick, side="right"))
    table = pq.read_table(rec.path)
    chans = {}
    for name in (*FIELDS, "SessionTick"):
        if name in table.column_names:
            col = table.column(name).combine_chunks()
            arr = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1) \
                if hasattr(col.type, "list_size") else col.to_numpy(zero_copy_only=False)
            chans[name] = arr[:k]
    return write_ibt(out, chans, rec.meta["session_yaml"])


def offline_tips(path: Path) -> dict[str, Any]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli_main(["coach", str(path), "--json"]) == 0
    return json.loads(buf.getvalue())


#: every tip field `pitbox coach --json` also gives (the time cost with its accuracy included)
TIP_KEYS = ("lap", "lap_index", "corner", "fault", "change", "time_loss_s", "time_loss_sd_s", "deviation_gap")


def test_live_tips_equal_pitbox_coach_on_the_session_cut_where_the_coach_ran(recorded, coached) -> None:
    live = coached.of("tip")
    assert {c["lap_index"] for c in coached.coach.coached} >= {1, 2, 3, 4}
    for entry in coached.coach.coached:
        off = offline_tips(cut_ibt(recorded, entry["cut_tick"], recorded.root / f"cut{entry['lap_index']}.ibt"))
        expected = [t for t in off["tips"] if t["lap_index"] == entry["lap_index"]]
        got = [t for t in live if t["lap_index"] == entry["lap_index"]]
        assert [{k: t[k] for k in TIP_KEYS} for t in got] == [{k: t[k] for k in TIP_KEYS} for t in expected]
        assert [t["rank"] for t in got] == list(range(1, len(got) + 1))
        for t in got:
            assert t["reference"].split(":")[-1] == off["reference"].split(":")[-1]
            assert t["cut_tick"] == entry["cut_tick"] and t["session"] == recorded.sid
    by_lap = {f["lap"]: f for f in recorded.truth["faults"]}
    for lap, fault in by_lap.items():  # the injected corner and fault, on the lap it was made
        top = [t for t in live if t["lap"] == lap and t["rank"] == 1]
        assert top and (top[0]["corner"], top[0]["fault"]) == (fault["corner"], fault["fault"])
    assert not [t for t in live if t["lap"] not in by_lap]  # clean laps: silence
    # the accuracy is stated once the driver has three clean laps of a corner (NaN, sent as null, before)
    assert any(isinstance(t["time_loss_sd_s"], float) and t["time_loss_sd_s"] > 0 for t in live)


# -- reference switches ----------------------------------------------------------------------

def test_reference_switch_mid_lap_to_a_lap_and_to_the_optimal_lap(recorded, coached) -> None:
    starts = crossings(recorded)  # first frames of laps 1, 2, 3, 4, 5
    mid, coach, analyst = coached.snapshots["mid_lap_3"]
    coach, analyst = copy.deepcopy(coach), copy.deepcopy(analyst)
    out = Coached(coach, derived=[{}] * mid)
    assert starts[2] < mid < starts[3]
    coach.set_reference("lap", f"{recorded.sid}:2")
    run_jobs(coach, analyst)
    out.messages.extend((mid, m) for m in coach.messages())
    ref = out.of("reference")[-1]
    assert (ref["kind"], ref["label"], ref["lap_index"]) == ("lap", f"{recorded.sid}:2", 2)
    coach_frames(recorded, coach, analyst, mid, starts[3] + 1, out)
    res = compare_laps(f"{recorded.sid}:3", f"{recorded.sid}:2", recorded.data)
    # right after the switch the delta is against lap 2 at that distance
    x = (float(recorded.rows["LapDistPct"][mid]) % 1.0) * res["track_length_m"]
    live = out.derived[mid - 0]["pitbox_delta_s"]
    assert live == pytest.approx(float(np.interp(x, res["delta"].distance_m, res["delta"].delta_s)), abs=0.005)
    state = [m for k, m in out.messages if m["type"] == "coach" and k == starts[3]][-1]
    assert state["last_lap_reference"] == f"{recorded.sid}:2"
    assert abs(state["last_lap_delta_s"] - res["delta_at_line_s"]) < 0.001
    # the optimal lap from best sectors of the valid laps so far (1, 2, 3), against the truth
    coach.set_reference("optimal")
    run_jobs(coach, analyst)
    ref = [m for m in coach.messages() if m["type"] == "reference"][-1]
    dist, t = recorded.arrays["distance_m"], recorded.arrays["time_s"]
    laps = list(recorded.arrays["lap"])
    info = recorded.info
    starts_pct = sorted(float(s["SectorStartPct"]) for s in info["SplitTimeInfo"]["Sectors"])
    bounds = [p * recorded.truth["track"]["length_m"] for p in starts_pct] + [recorded.truth["track"]["length_m"]]
    lap_time = {lap["lap"]: lap["lap_time_s"] for lap in recorded.truth["laps"]}

    def true_t(lap: int, x: float) -> float:  # the truth's grid stops at the last whole metre
        return lap_time[lap] if x >= bounds[-1] else float(np.interp(x, dist, t[laps.index(lap)]))

    best = sum(min(true_t(lap, b) - true_t(lap, a) for lap in (1, 2, 3))
               for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    assert ref["kind"] == "optimal" and abs(ref["time_s"] - best) < 0.005
    fastest = min((1, 2, 3), key=lambda lap: lap_time[lap])
    assert ref["coach_reference"] == f"{recorded.sid}:{fastest}"  # the coaching engine needs a driven lap


def test_all_time_best_comes_from_the_store(recorded, tmp_path: Path) -> None:
    from pitbox.store import Store, import_file

    other = simulate_session(SIM["track"], 2, (), 5, in_lap=False, out=tmp_path / "other.ibt")
    data = tmp_path / "data"
    import_file(other.ibt_path, data)
    coach = LiveCoach("all_time_best")
    coach.set_session(recorded.session_msg)
    analyst = Analyst(data)
    run_jobs(coach, analyst)
    (ref,) = [m for m in coach.messages() if m["type"] == "reference"]
    cat = Store(data).sessions()
    best = cat.loc[cat.best_lap_s.idxmin()]
    assert ref["kind"] == "all_time_best" and ref["session"] == best.id
    assert ref["time_s"] == pytest.approx(best.best_lap_s, abs=1e-4)
    assert ref["map"]["source"] == "gps"  # the stored .ibt has GPS
    coach.set_reference("lap", "nosuchsession:3")
    run_jobs(coach, analyst)
    state = [m for m in coach.messages() if m["type"] == "coach"][-1]
    assert "nosuchsession" in state["reference_error"] and state["reference"]["kind"] == "all_time_best"
    with pytest.raises(ValueError, match="SESSION:LAP"):
        coach.set_reference("lap", "3")


# -- resets and session changes ----------------------------------------------------------------

def test_reset_to_the_pits_ends_the_lap_and_laps_agree_with_iracing() -> None:
    from pitbox.ibt.reader import open_telemetry
    from pitbox.laps import lap_table

    tf = open_telemetry(need(LANGLEY))
    rows = tf.read_rows()
    cols = tf.read(["SessionTime", "Lap", "LapDistPct", "Speed", "LapLastLapTime"])
    onpit = tf.read(["OnPitRoad"])["OnPitRoad"]
    coach, analyst = LiveCoach(), Analyst(None)
    coach.set_session_info(tf.session_info)
    derived, states = [], []
    for i in range(len(rows)):
        derived.append(coach.feed(i, float(cols["SessionTime"][i]), rows[i]))
        run_jobs(coach, analyst)
        states.extend(m for m in coach.messages() if m["type"] == "coach")
    tf.close()
    blank = np.flatnonzero((cols["Lap"] == 0) & (cols["LapDistPct"] == 0) & (cols["Speed"] == 0))
    reset = int(blank[blank > 2000][0])  # the reset to the pits (lap 186)
    after = int(np.flatnonzero((np.arange(len(rows)) > reset) & (np.diff(cols["Lap"], prepend=0) == 1))[0])
    assert all(d["pitbox_delta_s"] is None for d in derived[reset:after])
    assert derived[after + 5]["pitbox_delta_s"] is not None  # a new lap from the line, after the out lap
    llt = {184: 15.1959, 185: 15.2772}  # iRacing's own LapLastLapTime of the two full laps
    assert [r["lap"] for r in coach.laps] == [184, 185]
    for r in coach.laps:
        assert abs(r["time_s"] - llt[r["lap"]]) < 0.002
    table = lap_table({**cols, "OnPitRoad": onpit}, 60)
    for s in states:  # the coach's lap_index is the lap table's row holding that tick (None on blank rows)
        hit = table[(table.start_row <= s["tick"]) & (s["tick"] < table.end_row)]
        assert s["lap_index"] == (int(hit.lap_index.iloc[0]) if len(hit) else None), s["tick"]
    assert {s["lap_index"] for s in states} >= set(range(6))


def test_session_change_starts_over(recorded, coached) -> None:
    starts = crossings(recorded)
    cut, coach, analyst = coached.snapshots["lap_4"]  # into lap 4: lap 3's coaching waits for its last corner
    coach, analyst = copy.deepcopy(coach), copy.deepcopy(analyst)
    out = Coached(coach, derived=[{}] * cut)
    assert coach.reference is not None and len(coach.laps) == 3
    coached_before = len(coach.coached)
    second = recorded.rows[: starts[2] + 30].copy()
    second["SessionNum"] += 1
    shift = int(recorded.ticks[cut - 1]) + 1 - int(recorded.ticks[0])
    meta2 = {**recorded.session_msg, "id": recorded.sid + "-next", "session_num": 1}
    for i in range(len(second)):
        if i == 5:
            coach.set_session(meta2)
        out.derived.append(coach.feed(int(recorded.ticks[i]) + shift, float(recorded.times[i]) + 1000.0, second[i]))
        run_jobs(coach, analyst)
        out.messages.extend((cut + i, m) for m in coach.messages())
        if i == 0:
            assert len(coach.coached) == 0 and coach.laps == [] and coach.reference is None
            assert out.derived[-1]["pitbox_delta_s"] is None
    # lap 3 of the first session was coached at its end, before the change
    first = [m for k, m in out.messages if m["type"] == "tip" and k < cut + 1]
    assert coached_before == 2 and [t["lap"] for t in first] == [3]
    refs = [m for k, m in out.messages if m["type"] == "reference" and k >= cut]
    truth = {lap["lap"]: lap["lap_time_s"] for lap in recorded.truth["laps"]}
    assert [r["label"] for r in refs] == [f"{recorded.sid}-next:1"] + ([f"{recorded.sid}-next:2"] if truth[2] < truth[1] else [])
    assert [r["lap"] for r in coach.laps] == [1, 2]
    state = coach.state()
    assert state["session"] == recorded.sid + "-next" and state["lap"] == 3


# -- fuel and tyres ----------------------------------------------------------------------------

def test_fuel_against_the_simulators_fuel_truth(recorded, coached) -> None:
    truth = [lap for lap in recorded.truth["laps"] if lap["kind"] == "timed"]
    used = [lap["fuel_used_l"] for lap in truth]
    assert coached.coach.fuel.uses_l == pytest.approx(used, abs=1e-3)
    state = [m for k, m in coached.messages if m["type"] == "coach"][-1]
    fuel = state["fuel"]
    mean3, p65 = float(np.mean(used[-3:])), float(np.percentile(used, 65))
    assert fuel["per_lap_mean3_l"] == pytest.approx(mean3, abs=2e-3)
    assert fuel["per_lap_p65_l"] == pytest.approx(p65, abs=2e-3)
    t_now = state["t"]
    last = recorded.truth["laps"][-1]  # the truth's fuel at the last line and now, linear in between
    level = float(np.interp(t_now, [last["start_session_time_s"], last["end_session_time_s"]],
                            [last["fuel_start_l"], last["fuel_end_l"]]))
    assert fuel["level_l"] == pytest.approx(level, abs=0.01)
    assert fuel["laps_left"] == pytest.approx(level / mean3, rel=0.005)
    assert fuel["laps_left_min"] == pytest.approx(level / max(used), rel=0.005)
    assert fuel["laps_left_max"] == pytest.approx(level / min(used), rel=0.005)
    pct = float(recorded.rows["LapDistPct"][-1])
    need_l = ((1 - pct) + 5) * p65 - level
    assert fuel["to_add_l"]["laps"] == 5 and fuel["to_add_l"]["l"] == pytest.approx(max(need_l, 0.0), abs=0.02)


def test_tyres_are_the_last_pit_stall_snapshot_with_its_age(tmp_path: Path) -> None:
    """iRacing updates tyre values live only in the stall: a copy whose values change on track
    (as live memory may hold anything there) must still show the stall values."""
    import irsdk

    from pitbox.ibt.reader import open_telemetry

    w13 = need(REAL / "mercedesw13_spielberg-gp_teamjorge-ibt_valid.ibt")
    ir = irsdk.IBT()
    ir.open(str(w13))
    stall = np.asarray(ir.get_all("PlayerCarInPitStall"), bool)
    t = np.asarray(ir.get_all("SessionTime"), np.float64)
    temps = {n: np.asarray(ir.get_all(n), np.float64) for n in ("LFtempCM", "RRtempCL", "LFwearM")}
    ir.close()
    left = int(np.flatnonzero(stall[:-1] & ~stall[1:])[0])  # the last tick in the stall before leaving
    back = int(np.flatnonzero(~stall[:-1] & stall[1:])[0]) + 1
    with open_telemetry(w13) as tf:
        cols = tf.read()
        variables, yaml_text = tf.variables, tf.session_info_text
    for n in ("LFtempCM", "RRtempCL"):
        cols[n] = np.where(stall, cols[n], cols[n] + 25.0).astype(cols[n].dtype)  # memory changing on track
    path = write_ibt(tmp_path / "w13.ibt", cols, yaml_text, variables=variables)
    with open_telemetry(path) as tf:
        rows = tf.read_rows()
    coach = LiveCoach()
    states = []
    for i in range(len(rows)):
        coach.feed(i + 1, float(t[i]), rows[i])
        states.append(coach.state()["tyres"])
    s = states[left + 30]
    assert not s["in_stall"] and s["age_s"] == pytest.approx(t[left + 30] - t[left], abs=1e-3)
    for n, v in temps.items():
        assert s["snapshot"][n] == pytest.approx(v[left], abs=1e-3)
    assert states[back]["in_stall"] and states[back]["age_s"] == 0.0
    assert states[0]["snapshot"]["LFtempCM"] == pytest.approx(temps["LFtempCM"][0], abs=1e-3)


def test_fuel_to_add_for_minutes_against_the_simulators_truth(recorded, coached) -> None:
    """``--fuel-minutes M``: enough for M minutes at the mean of the last 3 true lap times,
    from the truth's fuel use (65th percentile of the stint) and its level now."""
    from pitbox.livecoach.fuel import FuelTarget

    truth = [lap for lap in recorded.truth["laps"] if lap["kind"] == "timed"]
    used = [lap["fuel_used_l"] for lap in truth]
    lap_s = float(np.mean([lap["lap_time_s"] for lap in truth][-3:]))
    fuel = copy.deepcopy(coached.coach.fuel)
    fuel.target = FuelTarget(minutes=120.0)
    pct = float(recorded.rows["LapDistPct"][-1])
    state = fuel.state(pct)
    level = state["level_l"]
    laps = 120 * 60 / lap_s - (1 - pct)
    assert state["to_add_l"]["minutes"] == 120.0
    assert state["to_add_l"]["laps"] == pytest.approx(laps, abs=0.02)
    need_l = ((1 - pct) + laps) * float(np.percentile(used, 65)) - level
    assert state["to_add_l"]["l"] == pytest.approx(need_l, abs=0.02) and need_l > 0


def test_map_by_dead_reckoning_when_the_store_has_no_session_of_the_track(recorded, tmp_path: Path) -> None:
    """Live data has no GPS; with no stored session of the track to learn a model from, the
    reference's map is dead-reckoned from the live channels: the track's own shape (the
    simulator's geometry) up to a rotation and an offset."""
    from pitbox.sim import load_track

    coach = LiveCoach()
    coach.set_session(recorded.session_msg)
    coach.set_session_info(recorded.info)
    (tmp_path / "empty-store").mkdir()
    analyst = Analyst(tmp_path / "empty-store")
    stop = crossings(recorded)[1] + 5  # lap 1 (the first timed lap) done: the session best
    refs = coach_frames(recorded, coach, analyst, 0, stop).of("reference")
    assert refs, "no reference after the first timed lap"
    mp = refs[-1]["map"]
    assert mp is not None and mp["source"] == "dead_reckoning"
    track = load_track(SIM["track"])
    tx, ty = track.xy(np.asarray(refs[-1]["distance_m"]))
    a_ = np.c_[tx, ty] - np.c_[tx, ty].mean(0)
    b_ = np.c_[mp["x"], mp["y"]] - np.c_[mp["x"], mp["y"]].mean(0)
    u, _, vt = np.linalg.svd(b_.T @ a_)
    rms = float(np.sqrt(np.mean(np.sum((b_ @ (u @ vt) - a_) ** 2, axis=1))))
    assert rms < 10.0, rms  # metres, on a 3.3 km lap


def test_real_live_rows_float6_channels_and_caridx_arrays(real_dump: Path) -> None:
    """iRacing's own live memory (real dumps: float[6] sub-sample channels, ``CarIdx*``
    arrays of 64 cars): the core's lap distance is iRacing's ``LapDist``, and the dashboard,
    fed the frame as the stream sends it (the core's channels added, JSON), places the same
    cars as pyirsdk's ``CarIdxLapDistPct`` (empty slots left out, the player marked)."""
    import irsdk

    from pitbox.dashboard.state import SUBSCRIBE_CHANNELS, DriverState
    from pitbox.ibt.reader import open_telemetry
    from pitbox.live.protocol import Derived, dumps, frame_message, select_values

    ir = irsdk.IRSDK()
    assert ir.startup(test_file=str(real_dump))
    ir.freeze_var_buffer_latest()  # the newest row, as the recorder reads it
    try:
        want = {n: ir[n] for n in ("LapDist", "LapDistPct", "PlayerCarIdx", "CarIdxLapDistPct")}
        six = {n: ir[n] for n in FIELDS if isinstance(ir[n], list)}  # float[6]: 360 Hz sub-samples
    finally:
        ir.shutdown()
    with open_telemetry(real_dump) as tf:
        (row,) = tf.read_rows()
        info = tf.session_info
    coach = LiveCoach()
    coach.set_session_info(info)
    derived = coach.feed(1, float(row["SessionTime"]), row)
    assert derived["pitbox_lap_dist_m"] == pytest.approx(want["LapDist"], abs=0.05)
    assert derived["pitbox_delta_s"] is None  # no reference yet
    coach.finish()
    (kept,) = [j.rows for j in coach.jobs() if isinstance(j, J.Rows)]  # the row the after-lap analysis gets
    for name, subs in six.items():  # the value at the tick's time: the last sub-sample
        assert kept[name][0] == pytest.approx(subs[-1], rel=1e-6), name
    msg = json.loads(dumps(frame_message(1, float(row["SessionTime"]),
                                         select_values(Derived(row, derived), SUBSCRIBE_CHANNELS, clean=False))))
    assert len(msg["values"]["CarIdxLapDistPct"]) == 64
    st = DriverState()
    st.take({"v": 1, "type": "session_info", "info": info})
    st.take(msg)
    cars = st.cars()
    me = want["PlayerCarIdx"]
    others = sorted(v for i, v in enumerate(want["CarIdxLapDistPct"]) if v >= 0 and i != me)
    assert sorted(p for p, m in zip(cars["pct"], cars["me"], strict=True) if not m) == pytest.approx(others, abs=1e-6)
    if me is not None and want["LapDist"] > 0:
        (mine,) = [p for p, m in zip(cars["pct"], cars["me"], strict=True) if m]
        assert mine == pytest.approx(want["LapDistPct"], abs=2e-3)  # from the lap distance over the YAML's length
