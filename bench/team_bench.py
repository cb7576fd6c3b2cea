"""Team archive benchmark: the leaderboard and the per-corner comparison over 1,000+ sessions,
on DuckDB (the index, embedded), on Dask (LocalCluster with 1 and 2 worker processes), and
against the peer: a plain pandas loop that opens every session file.

The archive: ``pitbox simulate team`` (5 drivers x 210 sessions = 1,050 sessions of 2 timed
laps on the three simulated tracks, one a week per driver, imported and indexed), cached in
``bench/out/team-archive-…/`` (git-ignored) with ``build.json`` saying how it was built; a
second run reuses it.

What is timed, each the best of ``--repeat`` runs in this process after one untimed warm-up
(the first call, with its imports, is printed too):

====================  ==============================================================================
step                  what it does
====================  ==============================================================================
duckdb                ``pitbox.team.leaderboard(data)`` / ``corners(data, track, car)``: partition
                      pruning (folder listing), DuckDB scans with column projection, pandas for
                      the final joins; a fresh DuckDB connection each call
duckdb CLI            the whole ``pitbox team … --json`` process (interpreter, imports, query, JSON)
dask 1w / dask 2w     the same calls with ``engine="dask"`` on a ``LocalCluster`` of 1 or 2 worker
                      processes (1 thread each, memory limit set, no dashboard); cluster start-up
                      printed apart
peer (pandas loop)    for every session file (the corner question: every file of that track and
                      car, found by the same folder pruning): its footer (lap table, YAML) with
                      pyarrow, the columns it needs (SessionTime, Lap, LapDistPct; for corners also
                      Speed, Brake, Throttle), sector or corner-segment times by ``np.interp`` at
                      the sector starts / the track's corner file, then pandas ``groupby``
====================  ==============================================================================

Bytes read: ``rchar`` of ``/proc/<pid>/io`` (every byte read through a system call, page
cache included) of this process, and of the Dask workers, around the timed call; and the
bytes of the column chunks the engine needs in the files it opens (from the Parquet
metadata). Goals (docs/benchmarks.md): leaderboard under 1 s and corners under 2 s on
DuckDB, at least 20x faster than the peer; Dask gives the same frames.

Run: ``.venv/bin/python bench/team_bench.py [--sessions 210] [--drivers 5] [--repeat 5] [--jobs 2]``
(``--quick``: 60 sessions, one repeat, to check that it runs end to end).
Also measured: what indexing adds to an import (a short session, and a 1-hour one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
TRACK, CAR = "pitboxsim_demo", "pitboxsim_gt"


# -- the archive ------------------------------------------------------------------------------------

def archive(drivers: int, sessions: int, laps: int, seed: int, jobs: int) -> tuple[Path, dict[str, Any]]:
    folder = OUT / f"team-archive-d{drivers}-s{sessions}-l{laps}-seed{seed}"
    done = folder / "build.json"
    if done.exists():
        return folder / "data", json.loads(done.read_text())
    from pitbox.sim.team import simulate_team

    print(f"building {folder.relative_to(ROOT)}: {drivers} drivers x {sessions} sessions x {laps} timed laps "
          f"(no in lap), {jobs} processes …", file=sys.stderr)
    t0 = time.perf_counter()
    r = simulate_team(folder / "data", drivers, sessions, laps, seed, in_lap=False, jobs=jobs,
                      progress=sys.stderr.isatty())
    info = {"command": f"pitbox simulate team --drivers {drivers} --sessions {sessions} --laps {laps} --seed {seed} "
                       f"--no-in-lap --jobs {jobs} --data {folder / 'data'}",
            "sessions": len(r.sessions), "indexed": len(r.index.indexed) if r.index else 0,
            "corner_problems": len(r.index.corner_problems) if r.index else None,
            "seconds": round(time.perf_counter() - t0, 1), "uptime": uptime(),
            "built": time.strftime("%Y-%m-%d %H:%M")}
    done.write_text(json.dumps(info, indent=1))
    return folder / "data", info


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def rchar(pid: int | str = "self") -> int:
    """Bytes read through system calls by a process (Linux ``/proc/<pid>/io``)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def chunk_bytes(files: list[str], columns: list[str]) -> int:
    """Compressed bytes of ``columns`` in ``files`` plus their footers: what a reader that
    projects those columns must read."""
    import pyarrow.parquet as pq

    total = 0
    for f in files:
        md = pq.ParquetFile(f).metadata
        total += md.serialized_size
        names = [md.schema.column(i).path.split(".")[0] for i in range(md.num_columns)]
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            total += sum(rg.column(i).total_compressed_size for i, n in enumerate(names) if n in columns)
    return total


# -- the peer: a plain pandas loop over the session files -----------------------------------------------

def _footer(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(path).metadata[b"pitbox"])


def peer_leaderboard(data: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Best valid lap, optimal lap from best sectors, median, laps, last driven per track, car
    and driver, from every session file."""
    import pyarrow.parquet as pq
    import yaml

    from pitbox.store import stored_lap_table

    files = sorted(str(p) for p in data.glob("track=*/car=*/*.parquet"))
    cols = ["SessionTime", "Lap", "LapDistPct"]
    laps = []
    for f in files:
        meta = _footer(Path(f))
        info = yaml.safe_load(meta["session_yaml"])
        starts = sorted(float(s["SectorStartPct"]) for s in info["SplitTimeInfo"]["Sectors"])
        table = stored_lap_table(f, meta)  # the footer's, rebuilt if stored by older rules
        ch = pq.read_table(f, columns=cols).to_pandas()
        t = ch.SessionTime.to_numpy()
        pos = ch.Lap.to_numpy() + ch.LapDistPct.to_numpy(np.float64)
        sectors = np.full((len(table), len(starts)), np.nan)
        for i, r in enumerate(table.itertuples()):
            if r.complete:
                a, b = max(r.start_row - 1, 0), min(r.end_row + 1, len(t))
                sectors[i] = np.diff(np.interp(r.lap + np.array([*starts, 1.0]), pos[a:b], t[a:b]))
        table[[f"s{i}" for i in range(len(starts))]] = sectors
        table["track"], table["car"], table["driver"] = meta["track"], meta["car"], meta["driver"]
        table["session_id"], table["start"] = meta["id"], pd.Timestamp(meta["start"])
        laps.append(table)
    df = pd.concat(laps, ignore_index=True)
    keys = ["track", "car", "driver"]
    valid = df[df.valid & df.complete]
    out = df[df.complete].groupby(keys).agg(laps=("lap", "size"), last_driven=("start", "max"))
    v = valid.groupby(keys)
    out = out.join(v.time_s.agg(best_lap_s="min", median_lap_s="median", valid_laps="size"))
    sector_cols = [c for c in df.columns if c.startswith("s") and c[1:].isdigit()]
    out["optimal_lap_s"] = v[sector_cols].min().sum(axis=1, min_count=1)
    best = valid.sort_values(["time_s", "session_id"]).drop_duplicates(keys).set_index(keys)
    out["best_session"] = best.session_id
    return out.reset_index(), files, cols


def peer_corners(data: Path, track: str, car: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Per corner and driver: best and median segment time, the team's best, and medians of
    brake point, minimum speed, throttle pickup and exit speed, from every session file of the
    track and car (the corner ranges from the track's corner file)."""
    import pyarrow.parquet as pq
    import yaml

    from pitbox.store import stored_lap_table

    corner_file = yaml.safe_load((ROOT / "pitbox" / "data" / "tracks" / f"{track}.corners.yaml").read_text())
    ranges = [(c["name"], c["start_pct"], c["end_pct"]) for c in corner_file["corners"]]
    files = sorted(str(p) for p in data.glob(f"track={track}/car={car}/*.parquet"))
    cols = ["SessionTime", "Lap", "LapDistPct", "LapDist", "Speed", "Brake", "Throttle"]
    rows = []
    for f in files:
        meta = _footer(Path(f))
        ch = pq.read_table(f, columns=cols).to_pandas()
        t, lap_no = ch.SessionTime.to_numpy(), ch.Lap.to_numpy()
        pos = lap_no + ch.LapDistPct.to_numpy(np.float64)
        length = float(np.median(ch.LapDist[(ch.LapDistPct > 0.05) & (ch.LapDistPct < 0.95)]
                                 / ch.LapDistPct[(ch.LapDistPct > 0.05) & (ch.LapDistPct < 0.95)]))
        speed, brake, thr = ch.Speed.to_numpy(), ch.Brake.to_numpy(), ch.Throttle.to_numpy()
        for r in stored_lap_table(f, meta).to_dict("records"):
            if not r["valid"]:
                continue
            for name, a_pct, b_pct in ranges:
                a, b = r["lap"] + a_pct, r["lap"] + b_pct + (b_pct < a_pct)
                if b > pos[-1] + 1e-9:
                    continue  # the recording ends before the segment does (as the analysis rules)
                ta, tb = np.interp([a, b], pos, t)
                seg = (pos >= a) & (pos <= b)
                if seg.sum() < 3:
                    continue
                idx = np.flatnonzero(seg)
                k = idx[np.argmin(speed[idx])]
                braking = idx[brake[idx] > 0.05]
                pickup = idx[(idx > k) & (thr[idx] > 0.95)]
                rows.append({"corner": name, "driver": meta["driver"], "time_s": tb - ta,
                             "min_speed_kmh": speed[k] * 3.6,
                             "brake_point_m": (pos[braking[0]] - r["lap"]) % 1 * length if len(braking) else np.nan,
                             "throttle_pickup_m": (pos[pickup[0]] - r["lap"]) % 1 * length if len(pickup) else np.nan,
                             "exit_speed_kmh": float(np.interp(b, pos, speed)) * 3.6})
    df = pd.DataFrame(rows)
    out = df.groupby(["corner", "driver"]).agg(laps=("time_s", "size"), best_s=("time_s", "min"),
                                               median_s=("time_s", "median"),
                                               brake_point_m=("brake_point_m", "median"),
                                               min_speed_kmh=("min_speed_kmh", "median"),
                                               throttle_pickup_m=("throttle_pickup_m", "median"),
                                               exit_speed_kmh=("exit_speed_kmh", "median")).reset_index()
    out["team_best_s"] = out.groupby("corner").best_s.transform("min")
    out["median_gap_s"] = out.median_s - out.team_best_s
    return out, files, cols


# -- timing ------------------------------------------------------------------------------------------------

def timed(fn: Callable[[], Any], repeat: int, pids: Callable[[], list[int]] | None = None
          ) -> dict[str, Any]:
    """First call, then the best of ``repeat``: wall and CPU seconds, and rchar bytes."""
    def one() -> tuple[float, float, int, Any]:
        others = pids() if pids else []
        r0 = rchar() + sum(rchar(p) for p in others)
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        t1, c1 = time.perf_counter(), time.process_time()
        return t1 - t0, c1 - c0, rchar() + sum(rchar(p) for p in others) - r0, result

    first_run = one()
    runs = [one() for _ in range(repeat)] or [first_run]
    best = min(runs, key=lambda r: r[0])
    return {"first_s": first_run[0], "best_s": best[0], "cpu_s": best[1], "rchar": best[2], "result": first_run[3]}


def cli_seconds(args: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pitbox.cli", *args], check=True, capture_output=True, cwd=ROOT)
        best = min(best, time.perf_counter() - t0)
    return best


def index_cost(repeat: int) -> list[dict[str, Any]]:
    """What indexing adds to an import: ``import_file`` (the session file safely in place) and
    then ``index_sessions`` for it, for a short simulated session and a 1-hour one."""
    import tempfile

    from pitbox.sim.api import simulate_to_channels
    from pitbox.store import import_file
    from pitbox.team.index import index_sessions

    out = []
    for label, laps in (("short session (3 timed laps, 5 min)", 3), ("1-hour session (40 timed laps)", 40)):
        with tempfile.TemporaryDirectory(prefix="pitbox-bench-") as tmp:
            ibt = simulate_to_channels(TRACK, laps, seed=5).write(Path(tmp) / "s.ibt").ibt_path
            best_imp, best_idx = float("inf"), float("inf")
            for k in range(repeat + 1):
                data = Path(tmp) / f"data{k}"
                t0 = time.perf_counter()
                r = import_file(ibt, data)
                t1 = time.perf_counter()
                index_sessions(data, r.written)
                t2 = time.perf_counter()
                if k:  # the first run warms the imports up
                    best_imp, best_idx = min(best_imp, t1 - t0), min(best_idx, t2 - t1)
            out.append({"what": label, "import_s": best_imp, "index_s": best_idx})
    return out


def fmt_bytes(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--drivers", type=int, default=5)
    p.add_argument("--sessions", type=int, default=210, help="sessions per driver (default 210: 1,050 in all)")
    p.add_argument("--laps", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="processes to build the archive with")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--skip-dask", action="store_true")
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--skip-index-cost", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="a check that the script runs end to end: 5 drivers x 12 sessions (60), one repeat, "
                        "no index cost (the goals are for 1,000+ sessions)")
    args = p.parse_args(argv)
    if args.quick:
        args.sessions, args.repeat, args.skip_index_cost = 12, 1, True

    import pitbox.team as team
    from pitbox.team.questions import index_files

    data, info = archive(args.drivers, args.sessions, args.laps, args.seed, args.jobs)
    n_sessions = len(list(data.glob("track=*/car=*/*.parquet")))
    print(f"archive: {data.relative_to(ROOT)}: {n_sessions} sessions, {fmt_bytes(dir_bytes(data))} "
          f"(index {fmt_bytes(dir_bytes(data / '_index'))}, "
          f"{len(list((data / '_index').rglob('*.parquet')))} index files)")
    print(f"built by: {info['command']} in {info['seconds']} s ({info.get('uptime', '')})")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load now: {uptime()}")

    questions = {
        "leaderboard": (lambda **kw: team.leaderboard(data, **kw), ["laps"], None, None),
        "corners": (lambda **kw: team.corners(data, track=TRACK, car=CAR, **kw), ["corners"], TRACK, CAR),
    }
    lap_cols = ["driver", "complete", "start", "time_s", "valid", "n_sectors", "session_id", "lap_index",
                "s1_s", "s2_s", "s3_s"]
    corner_cols = ["corner", "driver", "segment_time_s", "brake_point_m", "min_speed_kmh", "throttle_pickup_m",
                   "exit_speed_kmh", "seg_start_m", "seg_end_m", "valid"]
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for q, (fn, (dataset,), track, car) in questions.items():
        files = index_files(data, dataset, track, car)[1]
        r = timed(lambda fn=fn: fn(), args.repeat)
        r["files"] = len(files)
        r["projected"] = chunk_bytes(files, lap_cols if dataset == "laps" else corner_cols)
        results[(q, "duckdb")] = r
        cli = ["team", q, "--data", str(data), "--json"] + (["--track", TRACK, "--car", CAR] if q == "corners" else [])
        results[(q, "duckdb CLI")] = {"best_s": cli_seconds(cli, max(1, args.repeat // 2)), "files": len(files)}

    if not args.skip_dask:
        from distributed import Client, LocalCluster

        for n in (1, 2):
            t0 = time.perf_counter()
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit="2GiB",
                              dashboard_address=None) as cluster, Client(cluster) as client:
                start = time.perf_counter() - t0
                pids = list(client.run(os.getpid).values())
                for q, (fn, _, _, _) in questions.items():
                    r = timed(lambda fn=fn, client=client: fn(engine="dask", scheduler=client), max(1, args.repeat // 2),
                              lambda pids=pids: pids)
                    r["cluster_start_s"] = start
                    r["files"] = results[(q, "duckdb")]["files"]
                    results[(q, f"dask {n}w")] = r
                    pd.testing.assert_frame_equal(r["result"], results[(q, "duckdb")]["result"])
        print("dask gives the same frames as duckdb: yes (pandas.testing.assert_frame_equal, exact)")

    if not args.skip_peer:
        for q, fn in (("leaderboard", lambda: peer_leaderboard(data)), ("corners", lambda: peer_corners(data, TRACK, CAR))):
            r = timed(fn, 0)  # one run: it takes minutes
            frame, files, cols = r["result"]
            r["files"], r["projected"] = len(files), chunk_bytes(files, cols)
            results[(q, "peer (pandas loop)")] = r
        lb, peer = results[("leaderboard", "duckdb")]["result"], results[("leaderboard", "peer (pandas loop)")]["result"][0]
        m = lb.merge(peer, on=["track", "car", "driver"], suffixes=("", "_peer"))
        print(f"peer check, leaderboard: {len(m)}/{len(lb)} rows matched; best lap max |diff| "
              f"{(m.best_lap_s - m.best_lap_s_peer).abs().max():.2e} s, optimal lap max |diff| "
              f"{(m.optimal_lap_s - m.optimal_lap_s_peer).abs().max():.2e} s, same best session: "
              f"{bool((m.best_session == m.best_session_peer).all())}")
        co, peer = results[("corners", "duckdb")]["result"], results[("corners", "peer (pandas loop)")]["result"][0]
        m = co.merge(peer, on=["corner", "driver"], suffixes=("", "_peer"))
        print(f"peer check, corners: {len(m)}/{len(co)} rows matched; laps equal: {bool((m.laps == m.laps_peer).all())}; "
              f"best max |diff| {(m.best_s - m.best_s_peer).abs().max() * 1000:.2f} ms, median max |diff| "
              f"{(m.median_s - m.median_s_peer).abs().max() * 1000:.2f} ms")

    print()
    print("| question | engine | files opened | seconds (best) | first call s | CPU s | bytes read (rchar) "
          "| column chunks needed | peer / this |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (q, engine), r in results.items():
        peer = results.get((q, "peer (pandas loop)"))
        ratio = "" if not peer else ("—" if engine.startswith("peer") else f"{peer['best_s'] / r['best_s']:.0f}x")
        first = f"{r['first_s']:.3f}" if "first_s" in r and not engine.startswith("peer") else "—"
        cpu = f"{r['cpu_s']:.3f}" if "cpu_s" in r else "—"
        got = fmt_bytes(r["rchar"]) if "rchar" in r else "—"
        need = fmt_bytes(r["projected"]) if "projected" in r else "—"
        print(f"| {q} | {engine} | {r.get('files', '')} | {r['best_s']:.3f} | {first} | {cpu} | {got} | {need} | {ratio} |")
    for n in (1, 2):
        r = results.get(("leaderboard", f"dask {n}w"))
        if r:
            print(f"dask {n} worker(s): LocalCluster start {r['cluster_start_s']:.2f} s (not in the table)")
    duck_lb, duck_co = results[("leaderboard", "duckdb")]["best_s"], results[("corners", "duckdb")]["best_s"]
    print(f"\ngoal leaderboard < 1 s on DuckDB: {'met' if duck_lb < 1 else 'NOT met'} ({duck_lb:.3f} s); "
          f"corners < 2 s: {'met' if duck_co < 2 else 'NOT met'} ({duck_co:.3f} s)")
    if not args.skip_peer:
        for q in ("leaderboard", "corners"):
            ratio = results[(q, "peer (pandas loop)")]["best_s"] / results[(q, "duckdb")]["best_s"]
            print(f"goal {q} >= 20x faster than the peer: {'met' if ratio >= 20 else 'NOT met'} ({ratio:.0f}x)")

    if not args.skip_index_cost:
        print("\nWhat indexing adds to an import (best of 3 after a warm-up; the session file is in place first):")
        print("| session | import_file s | index_sessions s | added |")
        print("| --- | ---: | ---: | ---: |")
        for r in index_cost(3):
            print(f"| {r['what']} | {r['import_s']:.3f} | {r['index_s']:.3f} | +{r['index_s'] / r['import_s'] * 100:.0f} % |")
    print(f"\nload at the end: {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
