"""The dashboard's kernel side without a browser: the state built from stream messages, the
canvas updates, and the latest-state pump (with ipywidgets' own recording test comm).

Frames come from a simulated session with an injected early brake, read back with
pyirsdk (the reference reader); expected values come from pyirsdk's rows, the simulator's
track geometry and its ground truth, never from the dashboard's code."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pitbox.dashboard import panels
from pitbox.dashboard.state import CanvasCursor, DriverState, Reference, TeamState

CHANNELS = ["SessionTime", "Lap", "LapDistPct", "Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear"]
FAULT = {"lap": 2, "corner": "T3", "fault": "brake_early", "size": 25.0}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import irsdk

    from pitbox.sim import load_track, read_truth, simulate_session

    out = tmp_path_factory.mktemp("dash") / "s.ibt"
    simulate_session(track="pitboxsim_demo", laps=3, faults=[f"{FAULT['lap']}:{FAULT['corner']}:{FAULT['fault']}:25"],
                     seed=5, out=out)
    ibt = irsdk.IBT()
    ibt.open(str(out))
    try:
        cols = {n: np.asarray(ibt.get_all(n)) for n in CHANNELS}
    finally:
        ibt.close()
    truth, _ = read_truth(out)
    track = load_track("pitboxsim_demo")
    return {"cols": cols, "truth": truth, "track": track, "path": out}


def frames(sim: dict, step: int = 2) -> list[dict]:
    """The session as 30 Hz ``frame`` messages (values as JSON would carry them)."""
    c = sim["cols"]
    out = []
    for i in range(0, len(c["SessionTime"]), step):
        values = {n: (int(c[n][i]) if n in ("Lap", "Gear") else float(c[n][i])) for n in CHANNELS if n != "SessionTime"}
        out.append({"v": 1, "type": "frame", "tick": i, "t": float(c["SessionTime"][i]), "values": values})
    return out


def reference_message(sim: dict, lap: int = 1, step_m: float = 5.0) -> dict:
    """Contract A's ``reference`` message for ``lap``, built here from pyirsdk's rows, the
    track's own geometry (map) and the simulator's corner truth."""
    c, track = sim["cols"], sim["track"]
    sel = c["Lap"] == lap
    d = c["LapDistPct"][sel].astype(float) * track.length_m
    grid = np.arange(0.0, track.length_m, step_m)
    order = np.argsort(d)
    chans = {n: np.interp(grid, d[order], c[n][sel].astype(float)[order]).round(4).tolist()
             for n in ("Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear")}
    t = c["SessionTime"][sel].astype(float)
    chans["time_s"] = np.interp(grid, d[order], (t - t[0])[order]).tolist()
    x, y = track.pct_to_xy(grid / track.length_m)
    corners = [{"name": k["name"], "start_m": k["start_pct"] * track.length_m, "apex_m": k["apex_pct"] * track.length_m,
                "end_m": k["end_pct"] * track.length_m} for k in sim["truth"]["corners"]]
    return {"v": 1, "type": "reference", "kind": "session_best", "label": f"session best (lap {lap})",
            "session": "sim", "lap_index": lap, "time_s": float(sim["truth"]["laps"][lap]["lap_time_s"]),
            "length_m": track.length_m, "step_m": step_m, "distance_m": grid.tolist(), "channels": chans,
            "map": {"x": np.asarray(x).tolist(), "y": np.asarray(y).tolist()}, "corners": corners}


def test_laps_and_traces_by_distance_equal_the_file(sim: dict) -> None:
    st = DriverState()
    st.take(reference_message(sim))
    finished: dict[int, object] = {}
    for msg in frames(sim):
        before = (st.lap, st.cols)
        st.take(msg)
        if st.cols is not before[1] and before[0] is not None:
            finished[before[0]] = before[1]
    c = sim["cols"]
    laps_in_file = sorted({int(v) for v in c["Lap"][::2]})
    assert sorted(finished) == laps_in_file[:-1]  # the last lap is still the current one
    for lap in (1, 2):
        sel = np.flatnonzero(c["Lap"] == lap)
        rows = sel[sel % 2 == 0]
        cols = finished[lap]
        np.testing.assert_array_equal(cols.col("Speed"), c["Speed"][rows].astype(np.float32))
        np.testing.assert_array_equal(cols.col("Brake"), c["Brake"][rows].astype(np.float32))
        np.testing.assert_allclose(cols.col("d"), c["LapDistPct"][rows] * sim["track"].length_m, rtol=1e-6, atol=0.01)


def test_the_faulted_braking_zone_is_frozen_and_named(sim: dict) -> None:
    st = DriverState()
    st.take(reference_message(sim))
    zones = []
    version = 0
    for msg in frames(sim):
        st.take(msg)
        if st.zones.version != version:
            version = st.zones.version
            zones.append(st.zones.frozen)
    lap2 = [z for z in zones if z.lap == FAULT["lap"] and z.corner == FAULT["corner"]]
    assert len(lap2) == 1, [(z.lap, z.corner, round(z.start_m)) for z in zones]
    z = lap2[0]
    fault = next(f for f in sim["truth"]["faults"] if f["lap"] == FAULT["lap"])
    shift = fault["measured"]["brake_point_shift_m"]  # the simulator's ground truth, about -25 m
    assert z.ref_start_m is not None
    # the 5 m reference grid and the driver's brake-point noise (3 m per lap) bound the error
    assert abs((z.start_m - z.ref_start_m) - shift) < 9.0
    assert "earlier than the reference" in z.summary()
    # the same corner on the clean lap 1 starts within a few metres of the reference
    clean = [w for w in zones if w.lap == 1 and w.corner == FAULT["corner"]]
    assert clean and abs(clean[0].start_m - clean[0].ref_start_m) < 9.0
    # a corner's frozen zone shows its braking: the window holds the brake point
    assert z.window[0] < z.start_m < z.window[1]
    assert z.samples is not None and z.samples.shape[1] > 10


def test_a_brake_point_in_a_hole_of_missing_frames_is_told_as_the_stretch_it_lies_in(sim: dict) -> None:
    """Frames from 15 m before the faulted lap's T3 brake onset to 10 m after it never arrive
    (a slow page, dropped ticks): the zone says the brake went on somewhere in the hole, which
    holds the onset found in pyirsdk's rows, and claims only what the hole allows against the
    reference; the clean lap's zone, with every frame, says where."""
    from pitbox.dashboard.state import BRAKE_ON

    c, length = sim["cols"], sim["track"].length_m
    dist = c["LapDistPct"].astype(float) * length
    geo = sim["track"].corner(FAULT["corner"])
    rows = np.flatnonzero(c["Lap"] == FAULT["lap"])
    brake = c["Brake"]
    rising = rows[1:][(brake[rows[1:]] >= BRAKE_ON) & (brake[rows[:-1]] < BRAKE_ON) & (dist[rows[1:]] < geo.start_m)]
    onset = int(rising[-1])
    true_m = float(dist[onset])
    lost = {i for i in rows if true_m - 15 <= dist[i] <= true_m + 10}
    st = DriverState()
    st.take(reference_message(sim))
    zones = []
    for msg in frames(sim):
        if msg["tick"] in lost:
            continue
        st.take(msg)
        if st.zones.frozen is not None and (not zones or zones[-1] is not st.zones.frozen):
            zones.append(st.zones.frozen)
    z = next(z for z in zones if z.lap == FAULT["lap"] and z.corner == FAULT["corner"])
    assert z.start_from_m is not None and z.start_from_m < true_m <= z.start_m
    assert z.start_m - z.start_from_m > 25
    text = z.summary()
    assert "frames missing" in text and f"between {z.start_from_m:.0f} and {z.start_m:.0f} m" in text
    assert z.ref_start_m is not None and z.start_m < z.ref_start_m
    assert f"at least {z.ref_start_m - z.start_m:.0f} m earlier" in text
    shift = next(f for f in sim["truth"]["faults"] if f["lap"] == FAULT["lap"])["measured"]["brake_point_shift_m"]
    assert z.ref_start_m - z.start_m < abs(shift) + 9.0  # a lower bound, true within the noise
    clean = next(z for z in zones if z.lap == 1 and z.corner == FAULT["corner"])
    assert clean.start_from_m is None and "brake at" in clean.summary()


def test_canvas_updates_carry_only_new_samples_and_reassemble_the_lap(sim: dict) -> None:
    st = DriverState()
    cursor = CanvasCursor()
    msgs = frames(sim)
    pages: dict[int, list[np.ndarray]] = {}
    content, buffers = st.canvas_update(cursor, full=True)
    assert content["reference"] is None  # nothing known yet
    st.take(reference_message(sim))
    content, buffers = st.canvas_update(cursor, full=False)
    ref = content["reference"]
    assert ref is not None and ref["n"] == len(reference_message(sim)["distance_m"])
    block = np.frombuffer(bytes(buffers[ref["buffer"]]), dtype=np.float32).reshape(len(ref["columns"]), ref["n"])
    np.testing.assert_allclose(block[ref["columns"].index("Speed")],
                               np.asarray(reference_message(sim)["channels"]["Speed"], dtype=np.float32))
    sizes = []
    for k, msg in enumerate(msgs):
        st.take(msg)
        if k % 7 == 0:
            content, buffers = st.canvas_update(cursor, full=False)
            assert "reference" not in content  # sent once, not with every update
            tr = content["trace"]
            cols = np.frombuffer(bytes(buffers[tr["buffer"]]), dtype=np.float32).reshape(len(tr["columns"]), tr["n"])
            if tr["start"] == 0:
                pages[tr["lap_id"]] = []
            else:
                assert tr["start"] == sum(b.shape[1] for b in pages[tr["lap_id"]])
            pages[tr["lap_id"]].append(cols)
            sizes.append(tr["n"])
    assert max(sizes) <= 7 + 1  # never more than what arrived since the previous update
    cur = np.concatenate(pages[st.lap_id], axis=1)
    np.testing.assert_array_equal(cur[0], st.cols.col("d")[: cur.shape[1]])
    # a full snapshot (a page opening late) carries the whole current lap and the reference
    content, buffers = st.canvas_update(CanvasCursor(), full=True)
    assert content["trace"]["start"] == 0 and content["trace"]["n"] == st.cols.n
    assert content["reference"] is not None


def test_cars_on_the_reference_map_match_the_track_geometry(sim: dict) -> None:
    st = DriverState()
    st.take(reference_message(sim))
    track = sim["track"]
    pcts = []
    for msg in frames(sim)[2000:2400:40]:
        msg["values"]["CarIdxLapDistPct"] = [0.25, msg["values"]["LapDistPct"], -1.0] + [-1.0] * 61
        msg["values"]["PlayerCarIdx"] = 1
        st.take(msg)
        cars = st.cars()
        me = cars["me"].index(True)
        x, y = track.pct_to_xy(np.asarray([msg["values"]["LapDistPct"]]))
        assert math.hypot(cars["x"][me] - float(x[0]), cars["y"][me] - float(y[0])) < 1.0
        other = cars["me"].index(False)
        ox, oy = track.pct_to_xy(np.asarray([0.25]))
        assert math.hypot(cars["x"][other] - float(ox[0]), cars["y"][other] - float(oy[0])) < 1.0
        assert len(cars["pct"]) == 2  # empty slots (-1) are not cars
        pcts.append(cars["pct"][me])
    assert len(set(pcts)) > 5


def test_lap_table_tips_fuel_and_tyres_panels() -> None:
    st = DriverState()
    st.take({"v": 1, "type": "session", "meta": {"id": "s1", "driver": "Alice", "track": "x"}})
    st.take({"v": 1, "type": "lap", "row": {"lap_index": 2, "lap": 2, "time_s": 84.1, "complete": True, "valid": True}})
    tip = {"v": 1, "type": "tip", "lap": 2, "lap_index": 2, "corner": "T3", "fault": "brake_early",
           "change": "brake 20 m later (at 827 m, not 807 m)", "time_loss_s": 0.575, "rank": 1, "reference": "lap 1"}
    st.take(tip)
    st.take(tip)  # the same tip again (a reconnect): shown once
    html = panels.laps_html(st)
    row = html.split('data-lap="2"')[1].split("</tr>")[0]
    assert "T3" in row and "brake_early" in row and "(0.575 s)" in row  # no accuracy stated: none shown
    assert html.count('data-pitbox="tip"') == 1
    st.take({**tip, "lap": 3, "lap_index": 3, "time_loss_sd_s": 0.031})
    row = panels.laps_html(st).split('data-lap="3"')[1].split("</tr>")[0]
    assert "(0.575 ± 0.031 s)" in row
    st.take({"v": 1, "type": "coach", "lap": 3, "corner_deltas": [{"corner": "T1", "delta_s": 0.12}],
             "fuel": {"level_l": 40.0, "per_lap_mean3_l": 2.5, "per_lap_p65_l": 2.6, "laps_left": 16.0,
                      "laps_left_min": 15.4, "laps_left_max": 16.2, "to_add_l": {"laps": 20, "l": 12.0}},
             "tyres": {"snapshot": {"LFtempCM": 81.0}, "age_s": 120.0, "lap": 1}}, now_ms=1_000_000.0)
    assert "16.0 (15.4–16.2)" in panels.fuel_html(st)
    tyres = panels.tyres_html(st, now_ms=1_000_000.0 + 60_000.0)
    assert "3 min old" in tyres and "not live" in tyres
    assert 'class="loss">+0.120' in panels.corners_html(st)
    # a new session clears the laps and tips of the last one
    st.take({"v": 1, "type": "session", "meta": {"id": "s2", "driver": "Alice", "track": "x"}})
    assert "no lap yet" in panels.laps_html(st)


def test_team_state_keeps_drivers_apart() -> None:
    team = TeamState()
    team.take({"v": 1, "type": "drivers", "drivers": [{"id": "a", "name": "A", "connected": True},
                                                      {"id": "b", "name": "B", "connected": True}]})
    for i in range(5):
        for did, lap in (("a", 3), ("b", 7)):
            team.take({"v": 1, "type": "frame", "driver": did, "tick": i, "t": i / 10.0,
                       "values": {"Lap": lap, "LapDistPct": 0.1 + 0.01 * i, "Speed": 50.0,
                                  "pitbox_delta_s": 0.5 if did == "a" else -0.25}})
    content, _ = team.canvas_update(["a", "b"], full=True)
    got = {d["id"]: (d["lap"], d["delta_s"]) for d in content["drivers"]}
    assert got == {"a": (3, 0.5), "b": (7, -0.25)}
    assert [d["id"] for d in team.live_drivers()] == ["a", "b"]


def test_reference_corner_lookup() -> None:
    ref = Reference.from_message({"kind": "lap", "label": "x", "time_s": 80.0, "length_m": 1000.0,
                                  "distance_m": [0.0, 500.0, 1000.0], "channels": {"Speed": [1, 2, 3]},
                                  "corners": [{"name": "T1", "start_m": 200.0, "end_m": 300.0},
                                              {"name": "T2", "start_m": 600.0, "end_m": 700.0}]})
    assert ref.corner_for(150.0) == "T1"  # braking before T1's start
    assert ref.corner_for(250.0) == "T1"
    assert ref.corner_for(450.0) == "T2"
    assert ref.corner_for(750.0) is None


# -- the latest-state pump --------------------------------------------------------------

@pytest.fixture
def test_comm():
    from ipywidgets.widgets.tests import utils

    utils.setup_test_comm()
    yield
    utils.teardown_test_comm()


def _page(widget, content: dict) -> None:
    """A message from the page, as the kernel's comm delivers it."""
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def _sent(widget, kind: str) -> list[dict]:
    """The custom messages of type ``kind`` the kernel sent to ``widget``'s page."""
    out = []
    for _args, kwargs in widget.comm.messages:
        data = kwargs.get("data") or {}
        if data.get("method") == "custom" and data["content"].get("type") == kind:
            out.append(data["content"])
    return out


def _updates(widget) -> list[dict]:
    return _sent(widget, "update")


def _await(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_pump_sends_nothing_before_the_page_and_one_update_at_a_time(sim: dict, test_comm) -> None:
    from pitbox.dashboard.canvas import LiveCanvas

    st = DriverState()
    cursor = CanvasCursor()
    canvas = LiveCanvas()
    built = threading.Event()

    def build(full: bool):
        built.set()
        return st.canvas_update(cursor, full)

    pump = canvas.attach(build, resync_s=30.0)
    try:
        msgs = frames(sim)
        for m in msgs[:300]:  # the page is not open yet: nothing goes out, no backlog builds
            st.take(m)
            pump.mark_dirty()
        assert not built.wait(0.2) and _updates(canvas) == []
        _page(canvas, {"type": "ready", "view": "v1"})  # the page opens late
        _await(lambda: len(_updates(canvas)) == 1)
        first = _updates(canvas)[0]
        assert first["full"] and first["trace"]["start"] == 0 and first["trace"]["n"] == st.cols.n
        for m in msgs[300:400]:  # the full snapshot is not acknowledged: nothing more goes out
            st.take(m)
            pump.mark_dirty()
        assert pump.waiting_for_ack and len(_updates(canvas)) == 1
        n_before = first["trace"]["start"] + first["trace"]["n"]
        _page(canvas, {"type": "ack", "seq": first["seq"], "lag_ms": 12.0})
        _await(lambda: len(_updates(canvas)) == 2)
        second = _updates(canvas)[1]
        assert not second["full"]
        assert second["trace"]["start"] == n_before  # exactly the samples that arrived meanwhile
        assert second["trace"]["start"] + second["trace"]["n"] == st.cols.n
        # an ack for an old update changes nothing; a second view gets a full snapshot
        _page(canvas, {"type": "ack", "seq": first["seq"]})
        assert len(_updates(canvas)) == 2
        _page(canvas, {"type": "ready", "view": "v2"})
        _await(lambda: len(_updates(canvas)) == 3)
        assert _updates(canvas)[2]["full"]
        assert pump.stats()["lag_p50_ms"] == 12.0
    finally:
        pump.stop()


def test_pump_keeps_at_most_a_window_unacknowledged_and_acks_are_cumulative(sim: dict, test_comm) -> None:
    """Updates stream without waiting for each ack, but never more than ``window`` are
    unacknowledged; one ack of the newest frees them all, and the samples add up exactly."""
    from pitbox.dashboard.canvas import LiveCanvas

    st = DriverState()
    cursor = CanvasCursor()
    canvas = LiveCanvas()
    st.take(reference_message(sim))  # the track length, so that frames have a distance
    pump = canvas.attach(lambda full: st.canvas_update(cursor, full), resync_s=30.0, window=4)
    msgs = [m for m in frames(sim) if m["values"]["Lap"] == 1][:40]
    try:
        _page(canvas, {"type": "ready", "view": "v"})
        _await(lambda: len(_updates(canvas)) == 1)
        _page(canvas, {"type": "ack", "seq": _updates(canvas)[0]["seq"]})
        for i, m in enumerate(msgs[:4]):  # one frame at a time: each goes out, no ack awaited
            st.take(m)
            pump.mark_dirty()
            _await(lambda i=i: len(_updates(canvas)) == i + 2)
        assert pump.in_flight == 4
        for m in msgs[4:40]:  # the window is full: nothing more goes out
            st.take(m)
            pump.mark_dirty()
        ups = _updates(canvas)
        assert len(ups) == 5 and not any(u["full"] for u in ups[1:]) and ups[-1]["window"] == 4
        _page(canvas, {"type": "ack", "seq": ups[2]["seq"]})  # cumulative: the first two are done
        # the frames that came meanwhile go out as one update (the latest state, not a queue)
        _await(lambda: len(_updates(canvas)) == 6)
        assert pump.in_flight == 3 and pump.acked == 3
        _page(canvas, {"type": "ack", "seq": ups[1]["seq"]})  # an old ack changes nothing
        assert pump.in_flight == 3 and pump.acked == 3
        _page(canvas, {"type": "ack", "seq": _updates(canvas)[-1]["seq"]})
        _await(lambda: pump.in_flight == 0)
        ups = _updates(canvas)
        for a, b in zip(ups[1:], ups[2:], strict=False):  # each update starts where the previous one ended
            assert b["trace"]["start"] == a["trace"]["start"] + a["trace"]["n"]
        assert ups[-1]["trace"]["start"] + ups[-1]["trace"]["n"] == st.cols.n == 40
    finally:
        pump.stop()


def test_pump_resyncs_with_a_snapshot_when_the_page_stops_answering(test_comm) -> None:
    from pitbox.dashboard.canvas import LiveCanvas

    st = DriverState()
    cursor = CanvasCursor()
    canvas = LiveCanvas()
    pump = canvas.attach(lambda full: st.canvas_update(cursor, full), resync_s=0.3)
    try:
        _page(canvas, {"type": "ready", "view": "v"})
        _await(lambda: len(_updates(canvas)) == 1)
        st.take({"v": 1, "type": "frame", "tick": 1, "t": 1.0, "values": {"Lap": 1, "pitbox_lap_dist_m": 10.0}})
        pump.mark_dirty()
        _await(lambda: len(_updates(canvas)) == 2)  # no ack came: given up, and resent in full
        assert _updates(canvas)[1]["full"] and pump.resyncs >= 1
    finally:
        pump.stop()


def test_a_canvas_the_page_cannot_hear_is_replaced_and_fed_by_the_same_pump(test_comm, monkeypatch) -> None:
    """anywidget drops a model whose module loaded too slowly in the page; the page then
    reports "deaf" and the slot shows a new canvas, fed by the same pump from a full snapshot
    (in a real browser: tests/test_dashboard_hearing.py)."""
    from pitbox import hearing
    from pitbox.dashboard.canvas import canvas_slot

    now = [100.0]
    monkeypatch.setattr(hearing, "clock", lambda: now[0])
    st = DriverState()
    cursor = CanvasCursor()
    slot = canvas_slot("driver", lambda full: st.canvas_update(cursor, full), resync_s=30.0)
    first = slot.widget
    pump = first.pump
    try:
        _page(first, {"type": "deaf", "view": "v1"})  # no hello answered yet: nothing to judge by
        assert slot.renewals == 0 and slot.widget is first
        _page(first, {"type": "hello", "view": "v1"})
        assert _sent(first, "hello") == [{"type": "hello", "view": "v1"}]  # answered at once
        _page(first, {"type": "ready", "view": "v1"})
        _await(lambda: len(_updates(first)) == 1)
        now[0] += hearing.GRACE_S / 2
        _page(first, {"type": "deaf", "view": "v1"})  # the answer may still be on its way
        assert slot.renewals == 0 and slot.widget is first
        now[0] += hearing.GRACE_S
        _page(first, {"type": "deaf", "view": "v1"})
        assert slot.renewals == 1 and slot.widget is not first and slot.children == (slot.widget,)
        second = slot.widget
        assert first.comm is None and first.pump is None  # closed; the pump moved over
        assert second.pump is pump and pump.widget is second and not pump.waiting_for_ack
        st.take({"v": 1, "type": "frame", "tick": 1, "t": 1.0, "values": {"Lap": 1, "pitbox_lap_dist_m": 10.0}})
        pump.mark_dirty()
        assert _updates(second) == []  # nothing before the new view says ready
        _page(second, {"type": "ready", "view": "v2"})
        _await(lambda: len(_updates(second)) == 1)
        assert _updates(second)[0]["full"] and _updates(second)[0]["trace"]["n"] == 1
    finally:
        pump.stop()


def test_notebook_files_exist() -> None:
    root = Path(__file__).resolve().parents[1] / "notebooks"
    assert (root / "live_dashboard.ipynb").is_file() and (root / "team_dashboard.ipynb").is_file()


def test_dashboard_runs_the_live_coach_itself_on_a_stream_without_one(sim: dict, test_comm) -> None:
    """A stream with no live coach (``--no-live-coach``): ``coach="auto"`` notices the
    missing channels and runs the coach in the kernel; its lap distance comes back."""
    from pitbox.dashboard import Dashboard
    from pitbox.ibt import open_telemetry
    from pitbox.live import StreamServer
    from pitbox.live.replay import ibt_frames
    from pitbox.live.testing import wait_until

    with open_telemetry(sim["path"]) as f:
        info = f.session_info
    rows = ibt_frames(sim["path"], None, 0, 3000)
    stream = StreamServer("127.0.0.1", 0).start()
    dash = None
    try:
        stream.publish_session({"id": "sim", "track": "pitboxsim_demo"})
        stream.publish_session_info(info)
        dash = Dashboard(stream.url, coach="auto", lap_chart=False, rate=60)
        wait_until(lambda: [c["rate"] for c in stream.clients()] == [60], timeout=60)  # subscribed
        i = 0
        while dash.local_coach is None:  # frames without the coach's channels, until it notices
            tick, t, values = rows[i]
            stream.publish_frame(tick, t, values)
            i += 1
            wait_until(lambda i=i: dash.state.frames >= i or dash.local_coach is not None, timeout=60)
        wait_until(lambda: sorted(c["rate"] for c in stream.clients()) == [60, 60], timeout=60)
        for tick, t, values in rows[i : i + 300]:
            stream.publish_frame(tick, t, values)
        wait_until(lambda: math.isfinite(dash.state.latest.get("pitbox_lap_dist_m", math.nan)), timeout=60)
        pct = sim["cols"]["LapDistPct"][: i + 300]
        d = dash.state.latest["pitbox_lap_dist_m"]
        assert float(pct.min()) * sim["track"].length_m - 5 <= d <= float(pct.max()) * sim["track"].length_m + 5
        assert dash.state.frames > 0 and not dash._coach_seen
    finally:
        if dash is not None:
            dash.stop()
        stream.stop()


def test_reference_switcher_sends_set_reference_and_lap_chart_follows_the_laps(test_comm) -> None:
    """The reference given to ``Dashboard`` and the one picked in the switcher reach the
    stream server as ``set_reference`` (what the live coach acts on)."""
    from pitbox.dashboard import Dashboard
    from pitbox.live import StreamServer
    from pitbox.live.testing import wait_until

    asked: list[dict] = []
    stream = StreamServer("127.0.0.1", 0)
    stream.control_handler = asked.append
    stream.start()
    dash = None
    try:
        stream.publish_session({"id": "S1", "track": "x"})
        dash = Dashboard(stream.url, reference="optimal", coach="stream")
        wait_until(lambda: len(asked) == 1, timeout=60)
        assert asked[0] == {"type": "set_reference", "kind": "optimal", "lap": None}
        for i in range(1, 4):
            stream.publish_lap({"lap_index": i, "lap": i, "time_s": 84.0 + i, "complete": True, "valid": i != 2})
        wait_until(lambda: len(dash.state.laps) == 3, timeout=60)
        dash._slow()
        values = [v for _, v in dash.picker.options]
        assert values[-2:] == ["S1:1", "S1:3"]  # the valid laps of this session
        dash.picker.value = "S1:3"
        wait_until(lambda: len(asked) == 2, timeout=60)
        assert asked[1] == {"type": "set_reference", "kind": "lap", "lap": "S1:3"}
        chart = dash.lap_chart
        assert list(chart.data[0].x) == [1, 2, 3] and list(chart.data[0].y) == [85.0, 86.0, 87.0]
        assert list(chart.data[0].marker.color)[1] != list(chart.data[0].marker.color)[0]  # lap 2 is invalid
    finally:
        if dash is not None:
            dash.stop()
        stream.stop()


def test_the_dashboard_plays_the_voice_coachs_phrases_once_its_toggle_is_on(tmp_path, test_comm) -> None:
    """``voice`` messages on the stream (``pitbox record --voice``) reach the dashboard's audio
    widget as a WAV made by the offline voice, only after the toggle is pressed."""
    from pitbox.dashboard import Dashboard
    from pitbox.live import StreamServer
    from pitbox.live.testing import wait_until
    from pitbox.voice import Voice
    from pitbox.voice.wav import read_wav

    stream = StreamServer("127.0.0.1", 0).start()
    dash = None
    said = {"v": 1, "type": "voice", "text": "T3: brake 20 m later, 0.575 s",
            "spoken": "Turn 3: brake 20 metres later, six tenths", "priority": "tip", "t": 90.0, "lap": 3,
            "corner": "T3"}
    try:
        stream.publish_session({"id": "S1", "track": "x"})
        dash = Dashboard(stream.url, coach="stream", lap_chart=False,
                         voice=Voice(engine="local", cache_dir=tmp_path, normalise=False))
        assert dash.voice_panel.toggle.description == "voice" and dash.voice_panel.toggle.value is False
        # voice messages go to subscribed clients only (not kept for late joiners); the session
        # comes with the hello, before the subscription is taken, so wait for a frame instead
        ticks = iter(range(1, 1 << 30))

        def got_a_frame() -> bool:
            if dash.state.frames:
                return True
            k = next(ticks)
            stream.publish_frame(k, k / 60, {"Speed": 10.0})
            return False

        wait_until(got_a_frame, timeout=180)
        assert dash.state.meta.get("id") == "S1"
        stream.publish_message(said)
        wait_until(lambda: len(dash.state.voice) == 1, timeout=180)
        assert dash.voice_panel.played == [] and dash.voice_panel.audio.value == b""  # off: nothing plays
        dash.voice_panel.toggle.value = True
        stream.publish_message({**said, "t": 175.0, "lap": 4})
        wait_until(lambda: len(dash.voice_panel.played) == 1, timeout=180)
        x, rate = read_wav(dash.voice_panel.audio.value)
        assert len(x) / rate > 1.0  # a whole sentence of speech
        assert dash.voice_panel.played[0]["lap"] == 4 and dash.voice_panel.played[0]["engine"] == "local"
        assert "T3: brake 20 m later" in dash.voice_panel.label.value
    finally:
        if dash is not None:
            dash.stop()
        stream.stop()


def test_push_to_talk_goes_to_the_recorders_voice_coach_when_it_has_one(tmp_path, test_comm) -> None:
    """The button's command goes to the recorder's voice coach (``pitbox record --voice``: its
    hello says ``commands``) and the answer is what that coach says on the stream (fuel from
    the real file's ``FuelLevel``); a stream without one is answered by the coach here."""
    import re

    from test_recorder import W13

    from pitbox import cli
    from pitbox.dashboard import Dashboard
    from pitbox.live import StreamServer
    from pitbox.live.cli import open_publishers
    from pitbox.live.replay import ibt_frames
    from pitbox.live.testing import wait_until
    from pitbox.livecoach.options import start_service
    from pitbox.voice.options import start_voice

    from conftest import need

    rows = ibt_frames(need(W13), ["Lap", "LapDistPct", "OnPitRoad", "FuelLevel", "LapLastLapTime"])
    args = cli.build_parser().parse_args(["record", "--stream", "--stream-port", "0", "--voice", "text",
                                          "--voice-player", "null"])
    targets = open_publishers(args)
    voice = start_voice(args, targets)
    service = start_service(args, targets, tmp_path / "data", voice=voice, process=False)
    plain = StreamServer("127.0.0.1", 0).start()  # no voice coach
    dashes: list = []
    try:
        service.publish_session({"id": "S1", "track": "x"})
        remote = Dashboard(targets[0].url, coach="stream", lap_chart=False, voice=False)
        other = Dashboard(targets[0].url, coach="stream", lap_chart=False, voice=False)  # a second coach's page
        local = Dashboard(plain.url, coach="stream", lap_chart=False, voice=False)
        dashes += [remote, other, local]
        wait_until(lambda: all(d.state.connection == "connected" for d in dashes), 60)
        assert remote.remote_commands and other.remote_commands and not local.remote_commands
        answer: list[str] = []
        answer_other: list[str] = []
        asking = [threading.Thread(target=lambda: answer.append(remote.command("fuel", timeout=60))),
                  threading.Thread(target=lambda: answer_other.append(other.command("focus on turn", 4, timeout=60)))]
        for a in asking:
            a.start()
        # the recorder took both (both pages see both spoken answers: each must take its own)
        wait_until(lambda: all(any(m["type"] == "command_ok" for m in d._answer_log) for d in (remote, other)), 60)
        for tick, t, values in rows:  # the recorder's frames, until the driver's voice has answered
            if not any(a.is_alive() for a in asking):
                break
            service.publish_frame(tick, t, values)
            assert service.wait_idle(30) and voice.wait_synthesized(30)
        for a in asking:
            a.join(60)
        assert sorted(a[:2] for a in voice.answers) == [("focus on turn", 4), ("fuel", None)]
        assert remote.talk.via == "recorder" and other.talk.via == "recorder"
        assert answer_other == ["Focus on turn 4"]
        (said,) = answer
        litres = float(re.fullmatch(r"(\d+) litres of fuel", said).group(1))
        levels = [float(v["FuelLevel"]) for _, _, v in rows]
        assert round(min(levels)) <= litres <= round(max(levels))
        assert local.command("delta") == "No delta yet" and local.talk.via == "here"  # no voice coach there
    finally:
        for d in dashes:
            d.stop()
        service.stop()
        plain.stop()


def test_a_snapshot_whose_build_failed_goes_out_with_the_next_change() -> None:
    """The kernel's update pump (pitbox.dashboard.sync) owes a page that said "ready" a full
    snapshot; when building it fails once (the state changed under it), the next update must
    still be a full snapshot, or the page never gets the reference, map and status it paints
    from. The comm is a stand-in recording what the pump sends (no kernel here)."""
    import queue
    import threading

    from pitbox.dashboard.sync import AckPump

    sent: queue.Queue = queue.Queue()

    class Comm:
        def on_msg(self, cb, remove: bool = False) -> None:
            self.cb = cb

        def send(self, content, buffers) -> None:
            sent.put(content)

    builds: list[bool] = []
    failed = threading.Event()

    def build(full: bool):
        builds.append(full)
        if len(builds) == 1:
            failed.set()
            raise RuntimeError("dictionary changed size during iteration")
        return {"type": "update"}, []

    comm = Comm()
    pump = AckPump(comm, build)
    try:
        comm.cb(comm, {"type": "ready", "view": "v1"}, [])  # the pump's thread builds the snapshot: it fails
        assert failed.wait(30) and builds == [True]
        with pump._send_lock:  # the failed send has returned
            pass
        assert sent.empty() and builds == [True]  # no retry loop while nothing changes
        pump.mark_dirty()  # a frame arrives
        first = sent.get(timeout=30)
        assert first["full"] is True and builds == [True, True], (builds, first)
    finally:
        pump.stop()
