"""The team archive: the index beside the sessions, the team questions on DuckDB and on a
dask.distributed cluster, the simulated team, and laps imported from other tools.

Expected answers are computed here from the sessions themselves, never from the index: the
lap tables and YAML stored in each session file's footer (read with pyarrow and PyYAML), the
telemetry columns of the session files, and the simulator's ground truth written beside each
``.ibt`` (segment times per lap and corner). DuckDB and a real LocalCluster (2 worker
processes) must give identical frames.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import pitbox.team as team
from pitbox.cli import main
from pitbox.store import Store, import_paths
from pitbox.team.errors import LapFileError, TeamError
from pitbox.team.index import index_root, index_sessions, rebuild, status

DRIVERS, SESSIONS, LAPS, SEED = 3, 2, 3, 11
TRACK, CAR = "pitboxsim_demo", "pitboxsim_gt"


# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def team_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated team (3 drivers x 2 sessions x 3 timed laps), built once; the .ibt files and
    their ground truth are kept in ``<dir>/ibt``. Tests that change the store copy it."""
    from pitbox.sim.team import simulate_team

    root = tmp_path_factory.mktemp("team")
    simulate_team(root / "data", DRIVERS, SESSIONS, LAPS, SEED, tracks=[TRACK, "pitboxsim_glen"],
                  keep_ibt=root / "ibt", jobs=2)
    return root


@pytest.fixture(scope="session")
def data(team_dir: Path) -> Path:
    return team_dir / "data"


@pytest.fixture
def copy(team_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(team_dir / "data", tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture(scope="module")
def client():
    """One dask.distributed LocalCluster for the module: 2 worker processes, memory limit set,
    no dashboard."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


# -- the independent answers: pandas over the session files -------------------------------------------

def session_files(data: Path) -> list[Path]:
    return sorted(p for p in data.glob("track=*/car=*/*.parquet"))


def footer(path: Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[b"pitbox"])


def truth_of(team_dir: Path, meta: dict) -> dict:
    return json.loads((team_dir / "ibt" / meta["source_name"]).with_suffix(".truth.json").read_text())


def expected_laps(data: Path) -> pd.DataFrame:
    """Every lap of every session: the stored lap table, the session's identity from its
    footer and YAML (PyYAML), sector times from SessionTime, Lap and LapDistPct at the YAML's
    sector starts, and the fuel at the lap's start from FuelLevel."""
    out = []
    for p in session_files(data):
        meta = footer(p)
        info = yaml.safe_load(meta["session_yaml"])
        laps = pd.DataFrame(meta["lap_table"])
        ch = pq.read_table(p, columns=["SessionTime", "Lap", "LapDistPct", "FuelLevel"]).to_pandas()
        t, pos = ch.SessionTime.to_numpy(), ch.Lap.to_numpy() + ch.LapDistPct.to_numpy(np.float64)
        starts = sorted(float(s["SectorStartPct"]) for s in info["SplitTimeInfo"]["Sectors"])
        sectors = []
        for r in laps.itertuples():
            if not r.complete:
                sectors.append([np.nan] * len(starts))
                continue
            a, b = max(r.start_row - 1, 0), min(r.end_row + 1, len(t))
            marks = np.interp(r.lap + np.array([*starts, 1.0]), pos[a:b], t[a:b])
            sectors.append(list(np.diff(marks)))
        laps[[f"s{i + 1}_s" for i in range(len(starts))]] = np.array(sectors)
        laps["n_sectors"] = len(starts)
        laps["fuel_start_l"] = np.interp(laps.start_s, t, ch.FuelLevel.to_numpy(np.float64))
        laps["session_id"], laps["driver"], laps["track"], laps["car"] = meta["id"], meta["driver"], meta["track"], meta["car"]
        laps["start"] = pd.Timestamp(meta["start"])
        laps["session_type"] = info["SessionInfo"]["Sessions"][0]["SessionType"]
        laps["setup_name"] = info["DriverInfo"]["DriverSetupName"]
        laps["track_temp_c"] = float(str(info["WeekendInfo"]["TrackSurfaceTemp"]).split()[0])
        out.append(laps)
    return pd.concat(out, ignore_index=True)


def expected_corners(team_dir: Path) -> pd.DataFrame:
    """Segment time of every valid lap and corner: the corner ranges (LapDistPct) from the
    simulator's ground truth, the times from the session file's SessionTime, Lap and
    LapDistPct (interpolated at each range's ends; a range may run over the line), valid laps
    from the stored lap table."""
    rows = []
    for p in session_files(team_dir / "data"):
        meta = footer(p)
        ch = pq.read_table(p, columns=["SessionTime", "Lap", "LapDistPct"]).to_pandas()
        t, pos = ch.SessionTime.to_numpy(), ch.Lap.to_numpy() + ch.LapDistPct.to_numpy(np.float64)
        moving = np.concatenate([[True], np.diff(pos) > 0])
        t, pos = t[moving], pos[moving]
        for r in meta["lap_table"]:
            if not r["valid"]:
                continue
            for c in truth_of(team_dir, meta)["corners"]:
                a, b = r["lap"] + c["start_pct"], r["lap"] + c["end_pct"] + (c["end_pct"] < c["start_pct"])
                ta, tb = np.interp([a, b], pos, t)
                rows.append({"track": meta["track"], "driver": meta["driver"], "session_id": meta["id"],
                             "lap": r["lap"], "corner": c["name"], "time_s": tb - ta})
    return pd.DataFrame(rows)


# -- the questions against the independent answers ----------------------------------------------------

def test_leaderboard_matches_the_lap_tables_and_sector_times(data: Path) -> None:
    exp = expected_laps(data)
    got = team.leaderboard(data)
    valid = exp[exp.valid & exp.complete]
    assert len(got) == exp.groupby(["track", "car", "driver"]).ngroups == DRIVERS * 2  # every driver on both tracks
    for r in got.itertuples():
        mine = exp[(exp.track == r.track) & (exp.car == r.car) & (exp.driver == r.driver)]
        v = valid[(valid.track == r.track) & (valid.car == r.car) & (valid.driver == r.driver)]
        assert r.laps == int(mine.complete.sum()) and r.valid_laps == len(v)
        assert r.best_lap_s == pytest.approx(v.time_s.min(), abs=1e-6)
        assert r.median_lap_s == pytest.approx(v.time_s.median(), abs=1e-6)
        best = v.loc[v.time_s.idxmin()]
        assert (r.best_session, r.best_lap_index) == (best.session_id, best.lap_index)
        assert r.last_driven == mine.start.max()
        optimal = sum(v[f"s{i + 1}_s"].min() for i in range(int(v.n_sectors.iloc[0])))
        assert r.optimal_lap_s == pytest.approx(optimal, abs=2e-3)
        assert r.optimal_lap_s <= r.best_lap_s + 1e-6
        lead = valid[(valid.track == r.track) & (valid.car == r.car)].time_s.min()
        assert r.gap_s == pytest.approx(r.best_lap_s - lead, abs=1e-6)
    assert (got.groupby(["track", "car"]).best_lap_s.is_monotonic_increasing).all()
    assert list(got[got.track == TRACK].position) == list(range(1, len(got[got.track == TRACK]) + 1))
    only = team.leaderboard(data, track=TRACK, car=CAR)
    pd.testing.assert_frame_equal(only, got[got.track == TRACK].reset_index(drop=True), check_like=False)


def test_progress_is_one_drivers_sessions_in_time_order(data: Path) -> None:
    exp = expected_laps(data)
    name = sorted(exp.driver.unique())[1]
    got = team.progress(data, name)
    mine = exp[exp.driver == name]
    assert list(got.session_id) == list(mine.drop_duplicates("session_id").sort_values("start").session_id)
    for r in got.itertuples():
        s = mine[mine.session_id == r.session_id]
        v = s[s.valid & s.complete]
        assert (r.laps, r.valid_laps) == (int(s.complete.sum()), len(v))
        assert r.best_lap_s == pytest.approx(v.time_s.min(), abs=1e-6)
        assert r.median_lap_s == pytest.approx(v.time_s.median(), abs=1e-6)
        assert r.session_type == s.session_type.iloc[0] and r.start == s.start.iloc[0]
    with pytest.raises(TeamError, match="drivers in the index: .*" + sorted(exp.driver.unique())[0]):
        team.progress(data, "Nobody Here")


def test_corners_match_the_segment_times_in_the_session_files(team_dir: Path, data: Path) -> None:
    exp = expected_corners(team_dir)
    exp = exp[exp.track == TRACK]
    got = team.corners(data, track=TRACK, car=CAR)
    assert set(zip(got.corner, got.driver, strict=True)) == set(zip(exp.corner, exp.driver, strict=True))
    order = [c["name"] for c in truth_of(team_dir, footer(next(p for p in session_files(data)
                                                                    if f"track={TRACK}" in str(p))))["corners"]]
    assert list(dict.fromkeys(got.corner)) == order  # corners in lap order
    for r in got.itertuples():
        e = exp[(exp.corner == r.corner) & (exp.driver == r.driver)].time_s
        assert r.laps == len(e)
        assert r.best_s == pytest.approx(e.min(), abs=0.005)
        assert r.median_s == pytest.approx(e.median(), abs=0.005)
        team_best = exp[exp.corner == r.corner].time_s.min()
        assert r.team_best_s == pytest.approx(team_best, abs=0.005)
        assert r.median_gap_s == pytest.approx(r.median_s - r.team_best_s, abs=1e-6)
        assert r.segments_match  # the simulated track ships a corner file: the same segments in every session
    for name, mine in got.groupby("driver"):
        assert sorted(mine.loss_rank) == list(range(1, len(mine) + 1))
        e = exp[exp.driver == name].groupby("corner").time_s.median() - exp.groupby("corner").time_s.min()
        top2 = e.sort_values(ascending=False)
        if top2.iloc[0] - top2.iloc[1] > 0.01:  # a clear worst corner: the same one
            assert mine[mine.loss_rank == 1].corner.iloc[0] == top2.index[0]
    for corner, rows in got.groupby("corner"):
        e = exp[exp.corner == corner].groupby("driver").time_s.min().sort_values()
        if e.iloc[1] - e.iloc[0] > 0.01:
            assert rows.team_best_driver.iloc[0] == e.index[0]


def test_consistency_is_the_spread_of_segment_times(team_dir: Path, data: Path) -> None:
    exp = expected_corners(team_dir)
    got = team.consistency(data)
    assert len(got) == exp.groupby(["track", "driver", "corner"]).ngroups
    for r in got.itertuples():
        e = exp[(exp.track == r.track) & (exp.driver == r.driver) & (exp.corner == r.corner)].time_s
        assert r.laps == len(e)
        assert r.sd_s == pytest.approx(e.std(ddof=1), abs=0.005)
        assert r.range_s == pytest.approx(e.max() - e.min(), abs=0.01)
    one = team.consistency(data, track=TRACK, driver=got.driver.iloc[0])
    assert set(one.driver) == {got.driver.iloc[0]} and set(one.track) == {TRACK}


def test_setups_give_pace_per_setup_with_track_temperature(data: Path) -> None:
    exp = expected_laps(data)
    v = exp[exp.valid & exp.complete & (exp.track == TRACK)]
    got = team.setups(data, track=TRACK, car=CAR)
    assert sorted(got.setup_name) == sorted(v.setup_name.unique())
    assert got.setup_hash.nunique() == len(got)  # different setups, different hashes
    for r in got.itertuples():
        e = v[v.setup_name == r.setup_name]
        assert r.valid_laps == len(e) and r.drivers == e.driver.nunique()
        assert r.driver_names == ", ".join(sorted(e.driver.unique()))
        assert r.best_lap_s == pytest.approx(e.time_s.min(), abs=1e-6)
        assert r.best_driver == e.loc[e.time_s.idxmin(), "driver"]
        assert r.median_lap_s == pytest.approx(e.time_s.median(), abs=1e-6)
        assert r.track_temp_mean_c == pytest.approx(e.track_temp_c.mean(), abs=0.01)
        assert (r.track_temp_min_c, r.track_temp_max_c) == pytest.approx((e.track_temp_c.min(), e.track_temp_c.max()),
                                                                         abs=0.01)
    assert got.best_lap_s.is_monotonic_increasing


def test_lap_search_filters_like_a_best_lap_search(data: Path) -> None:
    exp = expected_laps(data)
    allv = team.laps(data, valid_only=True)
    v = exp[exp.valid]
    assert list(allv.time_s) == pytest.approx(sorted(v.time_s), abs=1e-6)
    name = sorted(exp.driver.unique())[0]
    fuel = np.sort(v.fuel_start_l.unique())
    lo, hi = (fuel[1] + fuel[2]) / 2, (fuel[-3] + fuel[-2]) / 2  # thresholds between laps, never on one
    temps = np.sort(v.track_temp_c.unique())
    t_lo = (temps[0] + temps[1]) / 2
    got = team.laps(data, driver=name, valid_only=True, fuel=(lo, hi), track_temp=(t_lo, 99.0))
    want = v[(v.driver == name) & (v.fuel_start_l >= lo) & (v.fuel_start_l <= hi) & (v.track_temp_c >= t_lo)]
    assert sorted(zip(got.session_id, got.lap_index, strict=True)) == \
        sorted(zip(want.session_id, want.lap_index, strict=True))
    assert got.time_s.is_monotonic_increasing
    assert team.laps(data, limit=2).shape[0] == 2
    incomplete = team.laps(data, track=TRACK)
    assert incomplete.time_s.isna().sum() == int((~exp[exp.track == TRACK].complete).sum())
    assert incomplete.time_s.iloc[-1] != incomplete.time_s.iloc[-1]  # incomplete laps (no time) last
    qual = exp[exp.session_type == "Qualify"]
    assert len(team.laps(data, session_type="Qualify")) == len(qual)
    with pytest.raises(TeamError, match="fuel_start_l: LOW 9 is above HIGH 1"):
        team.laps(data, fuel=(9, 1))


def test_simulated_team_has_distinct_drivers_skills_and_habits(team_dir: Path, data: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    cat = Store(data).sessions()
    assert len(cat) == DRIVERS * SESSIONS and cat.driver.nunique() == DRIVERS
    truths = [truth_of(team_dir, footer(Path(p))) for p in cat.path]
    skills = {t["noise"]["lateral_skill"] for t in truths}
    assert len(skills) >= DRIVERS  # each driver has a skill (and gains a little per session)
    lb = team.leaderboard(data)
    assert lb.groupby("track").best_lap_s.apply(lambda s: s.max() - s.min()).min() > 0.2
    again = Path(str(data) + "-again")
    from pitbox.sim.team import simulate_team

    capsys.readouterr()
    assert main(["simulate", "team", "--drivers", str(DRIVERS), "--sessions", "1", "--laps", "1", "--seed", str(SEED),
                 "--tracks", TRACK, "--no-in-lap", "--data", str(again), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in first["drivers"]] == ["Ana Costa", "Ben Okafor", "Chloe Martin"]
    assert first["index"]["indexed"] == DRIVERS and {s["status"] for s in first["sessions"]} == {"imported"}
    r2 = simulate_team(again, DRIVERS, 1, 1, SEED, tracks=[TRACK], in_lap=False, index=False)
    assert [s["sessions"] for s in first["sessions"]] == [s["sessions"] for s in r2.sessions]  # same seed, same ids
    assert {s["status"] for s in r2.sessions} == {"present"}
    assert main(["simulate"]) == 2 and "--out: expected the .ibt path" in capsys.readouterr().err
    shutil.rmtree(again)


# -- engines ----------------------------------------------------------------------------------------------

def all_answers(data: object, engine: str = "duckdb", scheduler: object = None) -> dict[str, pd.DataFrame]:
    kw = {"engine": engine, "scheduler": scheduler}
    return {
        "leaderboard": team.leaderboard(data, **kw),
        "leaderboard_demo": team.leaderboard(data, track=TRACK, **kw),
        "progress": team.progress(data, "Ana Costa", **kw),
        "corners": team.corners(data, track=TRACK, car=CAR, **kw),
        "consistency": team.consistency(data, **kw),
        "setups": team.setups(data, track=TRACK, car=CAR, **kw),
        "laps": team.laps(data, valid_only=True, **kw),
        "laps_filtered": team.laps(data, driver="Ben Okafor", fuel=(0, 45), track_temp=(0, 60), **kw),
    }


@pytest.mark.slow
def test_duckdb_and_a_dask_cluster_give_identical_frames(data: Path, client) -> None:
    duck = all_answers(data)
    dask_cluster = all_answers(data, "dask", client)
    for name, frame in duck.items():
        assert len(frame), name
        pd.testing.assert_frame_equal(frame, dask_cluster[name], check_exact=True, obj=name)
    # an fsspec URL of the same store (file://); Dask's local threads are in the broken-file test
    url = data.resolve().as_uri()
    pd.testing.assert_frame_equal(team.leaderboard(url), duck["leaderboard"])
    pd.testing.assert_frame_equal(team.leaderboard(url, engine="dask", scheduler=client), duck["leaderboard"])


@pytest.mark.slow
def test_cli_with_a_dask_scheduler_address(data: Path, client, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["team", "leaderboard", "--data", str(data), "--engine", "dask", "--scheduler",
                 client.scheduler.address, "--json"]) == 0
    got = pd.DataFrame(json.loads(capsys.readouterr().out))
    want = team.leaderboard(data)
    assert list(got.driver) == list(want.driver)
    assert got.best_lap_s.tolist() == pytest.approx(want.best_lap_s.tolist(), abs=1e-9)


def test_every_question_on_the_cli_with_json_is_the_python_frame(data: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["leaderboard", "--track", TRACK], team.leaderboard(data, track=TRACK)),
        (["progress", "Ana Costa"], team.progress(data, "Ana Costa")),
        (["corners", "--track", TRACK, "--car", CAR], team.corners(data, track=TRACK, car=CAR)),
        (["consistency", "--driver", "Ben Okafor"], team.consistency(data, driver="Ben Okafor")),
        (["setups", "--track", TRACK, "--car", CAR], team.setups(data, track=TRACK, car=CAR)),
        (["laps", "--driver", "Ben Okafor", "--valid-only", "--fuel", "0", "45", "--track-temp", "0", "60",
          "--session-type", "Practice", "--limit", "3"],
         team.laps(data, driver="Ben Okafor", valid_only=True, fuel=(0, 45), track_temp=(0, 60),
                   session_type="Practice", limit=3)),
    ]
    for args, want in cases:
        capsys.readouterr()
        assert main(["team", *args, "--data", str(data), "--json"]) == 0, args
        got = json.loads(capsys.readouterr().out)
        assert len(want) and len(got) == len(want), args
        assert list(got[0]) == list(want.columns), args
        for rec, row in zip(got, want.to_dict("records"), strict=True):
            for col, value in row.items():
                if isinstance(value, pd.Timestamp):
                    assert pd.Timestamp(rec[col]) == value, (args, col)
                elif isinstance(value, float) and value != value:
                    assert rec[col] is None, (args, col)
                elif isinstance(value, float):
                    assert rec[col] == pytest.approx(value, abs=1e-9), (args, col)
                else:
                    assert rec[col] == (None if value is pd.NA else value), (args, col)
        assert main(["team", *args, "--data", str(data)]) == 0  # and as a table for people
        assert want.columns[0] in capsys.readouterr().out


def test_a_store_on_an_fsspec_filesystem_gives_the_same_answers(data: Path, client) -> None:
    """A store that is not a local folder (fsspec's in-memory filesystem standing in for s3://):
    DuckDB reads it through the registered fsspec filesystem, Dask (local threads) through
    pyarrow's, even while a distributed Client (whose workers cannot see this filesystem) is
    the process' default."""
    fsspec = pytest.importorskip("fsspec")
    assert client.status == "running"
    mem = fsspec.filesystem("memory")
    root = "/pitbox-team-test"
    for p in sorted(index_root(data).rglob("*.parquet")):
        mem.pipe(f"{root}/{p.relative_to(data).as_posix()}", p.read_bytes())
    try:
        url = f"memory://{root}"
        local = {"leaderboard": team.leaderboard(data), "corners": team.corners(data, track=TRACK, car=CAR),
                 "laps": team.laps(data, driver="Ana Costa", valid_only=True)}
        for engine in ("duckdb", "dask"):
            got = {"leaderboard": team.leaderboard(url, engine=engine),
                   "corners": team.corners(url, track=TRACK, car=CAR, engine=engine),
                   "laps": team.laps(url, driver="Ana Costa", valid_only=True, engine=engine)}
            for name, frame in local.items():
                pd.testing.assert_frame_equal(got[name], frame, check_exact=True, obj=f"{engine} {name}")
        with pytest.raises(TeamError, match="no corners index for track=nowhere"):
            team.corners(url, track="nowhere", car=CAR)
    finally:
        mem.rm(root, recursive=True)


def test_unknown_engine_and_missing_partition_are_clear_errors(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TeamError, match="engine 'spark'"):
        team.leaderboard(data, engine="spark")
    with pytest.raises(TeamError, match="--scheduler is for --engine dask"):
        team.leaderboard(data, scheduler="tcp://127.0.0.1:1")
    assert main(["team", "corners", "--data", str(data), "--track", "nowhere", "--car", CAR]) == 2
    err = capsys.readouterr().err
    assert "no corners index for track=nowhere car=pitboxsim_gt" in err and "track=pitboxsim_demo/car=pitboxsim_gt" in err
    assert "Traceback" not in err


# -- the index ---------------------------------------------------------------------------------------------

def test_rebuilding_the_index_gives_byte_identical_answers(copy: Path) -> None:
    before = {k: v.to_json(orient="split", date_format="iso", double_precision=15) for k, v in all_answers(copy).items()}
    files = {p.relative_to(copy): p.read_bytes() for p in sorted(index_root(copy).rglob("*.parquet"))}
    shutil.rmtree(index_root(copy))
    assert team.leaderboard(copy).empty  # no index: no answer (the sessions are untouched)
    report = rebuild(copy)
    assert len(report.indexed) == DRIVERS * SESSIONS and not report.skipped
    after = {k: v.to_json(orient="split", date_format="iso", double_precision=15) for k, v in all_answers(copy).items()}
    assert after == before
    assert {p.relative_to(copy): p.read_bytes() for p in sorted(index_root(copy).rglob("*.parquet"))} == files


def index_rows(data: Path, dataset: str = "laps") -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in index_root(data).glob(f"{dataset}/*/*/*.parquet"))


def test_a_session_imported_twice_is_indexed_once(copy: Path, team_dir: Path) -> None:
    before = index_rows(copy)
    ibt = sorted((team_dir / "ibt").glob("*.ibt"))[0]
    results = import_paths([ibt], copy)
    assert results[0].status == "present"
    index_sessions(copy, [Store(copy).resolve(results[0].sessions[0])])  # indexing again replaces its rows
    index_sessions(copy, [Store(copy).resolve(results[0].sessions[0])])
    assert index_rows(copy) == before
    st = status(copy)
    assert st["indexed"] == st["sessions"] == DRIVERS * SESSIONS and not st["missing"] and not st["orphans"]


def test_import_indexes_new_sessions_and_broken_or_foreign_files_are_reported_and_skipped(
        tmp_path: Path, team_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    ibts = sorted((team_dir / "ibt").glob("*.ibt"))[:2]
    assert main(["import", str(ibts[0]), "--data", str(data), "--no-index"]) == 0
    st = status(data)
    assert st["indexed"] == 0 and len(st["missing"]) == 1  # --no-index: stored only
    assert main(["import", *map(str, ibts), "--data", str(data)]) == 0
    st = status(data)
    assert st["indexed"] == 1 and len(st["missing"]) == 1  # the import indexed the session it stored
    assert main(["index", "update", "--data", str(data)]) == 0  # and update catches up
    assert status(data)["indexed"] == 2
    # a damaged session file, and a Parquet file that is not a session, in the archive
    bad = data / "track=pitboxsim_demo" / "car=pitboxsim_gt" / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.table({"x": [1, 2]}), data / "track=pitboxsim_demo" / "car=pitboxsim_gt" / "foreign.parquet")
    capsys.readouterr()
    assert main(["index", "rebuild", "--data", str(data)]) == 0
    out = capsys.readouterr()
    assert "2 sessions indexed" in out.out and "broken.parquet" in out.err and "foreign.parquet" in out.err
    st = status(data)
    assert {Path(x["file"]).name for x in st["not_sessions"]} == {"broken.parquet", "foreign.parquet"}
    # damaged and foreign files inside the index itself
    good = team.leaderboard(data)
    laps_file = sorted(index_root(data).glob("laps/*/*/*.parquet"))[0]
    other = laps_file.parent / "2019.parquet"
    pq.write_table(pa.table({"driver": ["Intruder"], "lap": [1]}), other)  # foreign: not our columns
    (laps_file.parent / "notes.parquet").write_bytes(b"junk")  # not an index file name: never read
    got = team.leaderboard(data)
    pd.testing.assert_frame_equal(got, good)
    assert set(got.attrs["skipped_files"]) == {str(other)}
    laps_file.write_bytes(laps_file.read_bytes()[:200])  # a truncated index file
    for engine in ("duckdb", "dask"):
        partial = team.leaderboard(data, engine=engine)
        assert str(laps_file) in partial.attrs["skipped_files"]
        assert len(partial) == len(good) - 1  # that file's sessions are missing, the rest answer
    assert main(["index", "status", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "notes.parquet" in out and "not an index file" in out
    assert main(["index", "update", "--data", str(data)]) == 0  # the truncated file is written anew
    pd.testing.assert_frame_equal(team.leaderboard(data), good)


def test_partition_values_that_look_like_numbers_stay_strings(tmp_path: Path, data: Path, client) -> None:
    from pitbox.analysis import export_csv, load_session

    s = load_session(session_files(data)[0], data)
    lap = int(s.laps[s.laps.valid].lap_index.iloc[0])
    csv_path = export_csv(s.lap(lap), tmp_path / "lap.csv")
    store = tmp_path / "data"
    team.import_laps(csv_path, store, track="2024-05-01", car="0123", driver="Zoe 007", date="2025-03-01T12:00:00")
    for engine, sched in (("duckdb", None), ("dask", client)):
        lb = team.leaderboard(store, track="2024-05-01", car="0123", engine=engine, scheduler=sched)
        assert lb.track.tolist() == ["2024-05-01"] and lb.car.tolist() == ["0123"], engine
        assert isinstance(lb.car.iloc[0], str) and isinstance(lb.track.iloc[0], str)
        laps = team.laps(store, car="0123", engine=engine, scheduler=sched)
        assert set(laps.car) == {"0123"} and set(laps.track) == {"2024-05-01"}


def test_analysis_failure_indexes_the_laps_without_corners_and_says_why(tmp_path: Path, data: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from pitbox.analysis import export_csv, load_session

    s = load_session(session_files(data)[0], data)
    lap = int(s.laps[s.laps.valid].lap_index.iloc[0])
    tel = pd.read_csv(export_csv(s.lap(lap), tmp_path / "lap.csv"))
    # only distance and speed: the laps import, but no corner can be found without lateral data
    pd.DataFrame({"d": tel["distance [m]"], "v": tel["Speed [m/s]"]}).to_csv(tmp_path / "plain.csv", index=False)
    store = tmp_path / "data"
    assert main(["import-laps", str(tmp_path / "plain.csv"), "--data", str(store), "--map", "distance_m=d",
                 "--map", "speed_ms=v", "--track", "plain", "--car", "c", "--driver", "D",
                 "--track-length", f"{s.track_length_m:.3f}"]) == 0
    st = status(store)
    assert st["indexed"] == 1 and len(st["corner_problems"]) == 1
    assert "failed" in next(iter(st["corner_problems"].values()))
    assert team.leaderboard(store).valid_laps.tolist() == [1]
    capsys.readouterr()
    assert main(["index", "status", "--data", str(store)]) == 0
    assert "corners:" in capsys.readouterr().out


def test_live_recording_linked_to_its_ibt_is_indexed_once(tmp_path: Path) -> None:
    from test_watch import W13, record_live

    from pitbox.recorder.watch import Watcher

    src = W13
    if not src.is_file():
        pytest.skip("real iRacing files not found (see shared/data/real/SOURCES.md)")
    folder, data = tmp_path / "telemetry", tmp_path / "data"
    folder.mkdir()
    (live_path,) = record_live(tmp_path, src)
    live_id = footer(live_path)["id"]
    st = status(data)
    assert st["indexed"] == 1 and not st["missing"]  # the recorder's finalizer indexed it
    shutil.copy(src, folder / src.name)
    assert Watcher(folder, data, stable_s=0).scan()[0].status == "imported"
    st = status(data)
    (sid,) = Store(data).sessions().id
    assert st["sessions"] == st["indexed"] == 1 and not st["orphans"]
    (laps_file,) = index_root(data).glob("laps/*/*/*.parquet")
    assert live_id != sid and set(json.loads(pq.read_schema(laps_file).metadata[b"pitbox_index"])["sessions"]) == {sid}
    assert set(pq.ParquetFile(laps_file).read().column("session_id").to_pylist()) <= {sid}


# -- laps from other tools ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from pitbox.analysis import export_csv, export_motec, load_session

    out = tmp_path_factory.mktemp("exported")
    s = load_session(session_files(data)[0], data)
    lap = s.lap(int(s.laps[s.laps.valid].lap_index.iloc[0]))
    return {"session": s, "lap": lap, "csv": export_csv(lap, out / "lap.csv"),
            "motec": export_motec(lap, out / "lap_motec.csv"), "dir": out}


def imported_lap(store: Path, sid: str) -> tuple[pd.DataFrame, pd.Series]:
    laps = Store(store).laps(sid)
    (row,) = [r for _, r in laps.iterrows() if r.complete]
    return laps, row


def open_session(sid: str, store: Path):
    from pitbox.analysis import load_session

    return load_session(sid, store)


def test_our_csv_and_motec_exports_come_back_with_their_lap(exported: dict, tmp_path: Path) -> None:
    s, lap = exported["session"], exported["lap"]
    store = tmp_path / "data"
    r1 = team.import_laps(exported["csv"], store, track=s.track, car=s.car, driver=s.driver,
                          track_config=s.track_config, date="2025-02-01T10:00:00")
    # MoTeC names track, car, driver and date itself (not the layout, which finds the track's corner file)
    r2 = team.import_laps(exported["motec"], store, track_config=s.track_config)
    assert r1.status == r2.status == "imported"
    assert team.import_laps(exported["motec"], store, track_config=s.track_config).status == "present"
    cat = Store(store).sessions().set_index("id")
    m2 = cat.loc[r2.sessions[0]]
    assert (m2.track, m2.car, m2.driver) == (s.track, s.car, s.driver)
    assert pd.Timestamp(m2.start) == pd.Timestamp(s.meta["start"])
    original = lap.telemetry(["Speed", "Throttle", "Brake", "Gear"])
    original = original[(original.time_s >= 0) & (original.time_s <= lap.time_s)].reset_index(drop=True)
    for r in (r1, r2):
        _, row = imported_lap(store, r.sessions[0])
        assert row.valid and row.time_s == pytest.approx(lap.time_s, abs=1e-3)  # the lap time comes back
        back = open_session(r.sessions[0], store).lap(int(row.lap_index)).telemetry(["Speed", "Throttle", "Brake", "Gear"])
        samples = back.iloc[1:-1].reset_index(drop=True)  # without the two rows on the line crossings
        assert len(samples) == len(original)  # every sample comes back, none invented
        np.testing.assert_allclose(samples.time_s, original.time_s, atol=1e-3)
        np.testing.assert_allclose(samples.distance_m, original.distance_m, atol=0.05)
        for ch, tol in (("Speed", 1e-4), ("Throttle", 1e-5), ("Brake", 1e-5), ("Gear", 0)):
            np.testing.assert_allclose(samples[ch], original[ch], atol=tol, err_msg=ch)
    lb = team.leaderboard(store)  # one driver: the same lap imported from two formats
    assert lb.valid_laps.tolist() == [2] and lb.best_lap_s.tolist() == pytest.approx([lap.time_s], abs=1e-3)
    corners = team.corners(store, track=s.track, car=s.car)  # imported laps have corners too, on the
    assert set(corners.laps) == {2} and corners.segments_match.all()  # track's corner file segments
    assert len(corners) == corners.corner.nunique() > 3


def test_generic_csv_and_json_with_a_column_map_rebuild_time_from_distance_and_speed(exported: dict,
                                                                                    tmp_path: Path) -> None:
    s, lap = exported["session"], exported["lap"]
    tel = pd.read_csv(exported["csv"])
    generic = pd.DataFrame({"Dist (m)": tel["distance [m]"], "Vel": tel["Speed [m/s]"] * 3.6,
                            "Thr%": tel["Throttle [0-1]"] * 100, "Brk": tel["Brake [0-1]"],
                            "Steer": np.degrees(tel["SteeringWheelAngle [rad]"]), "G": tel["Gear []"],
                            "Pct": tel["LapDistPct [0-1]"]})
    generic.to_csv(tmp_path / "other.csv", index=False)
    cmap = {"distance_m": "Dist (m)", "speed_kmh": "Vel", "throttle_pct": "Thr%", "brake": "Brk",
            "steering_deg": "Steer", "gear": "G", "lap_dist_pct": "Pct"}
    store = tmp_path / "data"
    r = team.import_laps(tmp_path / "other.csv", store, column_map=cmap, track=s.track, car=s.car, driver="Other Tool",
                         date="2025-02-03")
    _, row = imported_lap(store, r.sessions[0])
    # no time column: rebuilt from distance and speed, within 20 ms over a whole lap
    assert row.time_s == pytest.approx(lap.time_s, abs=0.02)
    doc = {"meta": {"track": s.track, "car": s.car, "driver": "Json Tool", "date": "2025-02-04T09:00:00Z"},
           "samples": {"t": tel["time [s]"].tolist(), "d": tel["distance [m]"].tolist(),
                       "v": tel["Speed [m/s]"].tolist(), "pct": tel["LapDistPct [0-1]"].tolist()}}
    (tmp_path / "lap.json").write_text(json.dumps(doc))
    r = team.import_laps(tmp_path / "lap.json", store, column_map={"time_s": "t", "distance_m": "d", "speed_ms": "v",
                                                                    "lap_dist_pct": "pct"})
    _, row = imported_lap(store, r.sessions[0])
    assert row.time_s == pytest.approx(lap.time_s, abs=1e-3)
    assert Store(store).meta(r.sessions[0])["source_kind"] == "json"
    assert set(team.leaderboard(store).driver) == {"Other Tool", "Json Tool"}


def test_bad_lap_files_name_the_file_and_column(exported: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    tel = pd.read_csv(exported["csv"])
    p = tmp_path / "x.csv"
    pd.DataFrame({"dist": tel["distance [m]"], "spd": tel["Speed [m/s]"]}).to_csv(p, index=False)
    store = tmp_path / "data"
    with pytest.raises(LapFileError, match=r"x\.csv: column 'speed' \(for speed_ms\) not found; the columns are: dist, spd"):
        team.import_laps(p, store, column_map={"distance_m": "dist", "speed_ms": "speed"}, track="t", car="c",
                         driver="d", track_length_m=3000)
    with pytest.raises(LapFileError, match=r"x\.csv: a CSV file from another tool needs a column map"):
        team.import_laps(p, store, track="t", car="c", driver="d")
    with pytest.raises(LapFileError, match=r"x\.csv: cannot tell the lap length: give --track-length"):
        team.import_laps(p, store, column_map={"distance_m": "dist", "speed_ms": "spd"}, track="t", car="c", driver="d")
    with pytest.raises(LapFileError, match=r"lap\.csv: car, driver not named in the file: give --car --driver"):
        team.import_laps(exported["csv"], store, track="t")
    pd.DataFrame({"dist": tel["distance [m]"], "spd": 0.0}).to_csv(p, index=False)
    with pytest.raises(LapFileError, match=r"x\.csv: lap 1: speed column: sample 1 is 0\.0 m/s"):
        team.import_laps(p, store, column_map={"distance_m": "dist", "speed_ms": "spd"}, track="t", car="c",
                         driver="d", track_length_m=3000)
    (tmp_path / "bad.json").write_text("{not json")
    capsys.readouterr()
    assert main(["import-laps", str(tmp_path / "bad.json"), "--data", str(store), "--map", "distance_m=d"]) == 1
    err = capsys.readouterr().err
    assert "bad.json: not JSON" in err and "Traceback" not in err
    assert not Store(store).files()  # nothing half-imported
