"""Analysis benchmark: PitBox against plain pyirsdk + pandas code doing the same work.

A one-hour practice session is simulated on the demo circuit (``pitbox.sim``, 43 timed
laps at 60 Hz, ~216,000 rows, a few faults) and imported into a store under ``bench/out/``
(both reused when already there). Then, each timed several times in this process:

=====================  =====================================================================
step                   what is timed
=====================  =====================================================================
pitbox analyse         ``pitbox.analysis.analyse(session)`` on a fresh ``Session``: the lap
                       table, channels read, every complete lap on the 1 m grid, its delta
                       to the fastest valid lap with closure and alignment error, corners
                       detected and named, per-corner metrics of every lap. Twice: from the
                       ``.ibt`` (``load_session(path)``) and from the store (Parquet)
peer analyse           pandas + numpy: lap table from the ``Lap`` steps (crossing
                       interpolated in ``LapDistPct``), every lap's time on a 1 m grid and
                       its delta to the fastest lap, per-corner brake point, minimum speed
                       and segment time in the same corner segments (taken from the corner
                       file, no detection). Twice: from the ``.ibt`` (pyirsdk
                       ``IBT.get_all`` of the channels needed) and from what a pandas user
                       stores (every scalar channel as one Parquet file written by
                       ``DataFrame.to_parquet``, built untimed; the six channels read back)
pitbox one lap         ``load_session(id).lap(k).telemetry(10 channels)`` on a fresh
                       ``Session``: footer, lap table, the row groups of one lap
peer one lap           pyirsdk: ``get_all("Lap")`` to find the lap's rows, then ``get(row,
                       name)`` for 10 channels over those rows; and from the pandas Parquet
                       file: 11 columns read, the lap's rows selected
=====================  =====================================================================

Both sides of a row start from the same input: the ``.ibt`` file, or what each stores.

Goals (docs/analysis.md): analyse a 1-hour session in under 2 s; one lap's ten channels
from the store in under 50 ms.

Run: ``.venv/bin/python bench/analysis_bench.py [--laps 43] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
TEN = ["Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear", "RPM", "LatAccel", "LongAccel", "Lat", "Lon"]
PEER_CHANNELS = ["SessionTime", "Lap", "LapDistPct", "Speed", "Brake", "Throttle"]


def build(laps: int) -> tuple[Path, Path, str]:
    """The simulated session (.ibt), its store and the session id (reused when present)."""
    from pitbox.sim import simulate_session
    from pitbox.store import import_file

    OUT.mkdir(parents=True, exist_ok=True)
    ibt = OUT / f"analysis_bench_{laps}laps.ibt"
    if not ibt.exists():
        faults = [f"{lap}:{c}:{f}:{s}" for lap, c, f, s in
                  [(5, "T3", "brake_early", 20), (12, "T6", "late_throttle", 25), (20, "T1", "lockup", 1.0),
                   (31, "T5", "low_min_speed", 8), (38, "T8", "brake_late", 20)] if lap <= laps]
        simulate_session(track="pitboxsim_demo", laps=laps, faults=faults, seed=2024, out=ibt)
    data = OUT / "analysis_store"
    sid = import_file(ibt, data).sessions[0]
    return ibt, data, sid


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


# -- PitBox ------------------------------------------------------------------------------

def pitbox_analyse(data: Path, sid: str) -> object:
    import pitbox.analysis as pa

    return pa.analyse(pa.load_session(sid, data))


def pitbox_one_lap(data: Path, sid: str, lap_index: int) -> pd.DataFrame:
    import pitbox.analysis as pa

    return pa.load_session(sid, data).lap(lap_index).telemetry(TEN)


# -- plain pyirsdk + pandas ----------------------------------------------------------------

def _ibt(path: Path):
    import irsdk

    ib = irsdk.IBT()
    ib.open(str(path))
    return ib


def peer_lap_table(df: pd.DataFrame) -> pd.DataFrame:
    lap = df.Lap.to_numpy()
    i = np.flatnonzero(np.diff(lap) == 1)
    p0, p1 = df.LapDistPct.to_numpy()[i], df.LapDistPct.to_numpy()[i + 1] + 1.0
    t = df.SessionTime.to_numpy()
    cross = t[i] + (1.0 - p0) / (p1 - p0) * (t[i + 1] - t[i])
    laps = pd.DataFrame({"lap": lap[i + 1][:-1], "start_s": cross[:-1], "end_s": cross[1:],
                         "start_row": i[:-1] + 1, "end_row": i[1:] + 1})
    laps["time_s"] = laps.end_s - laps.start_s
    return laps


def peer_store(ibt: Path) -> Path:
    """What a pyirsdk + pandas user stores: every scalar channel, one Parquet file (reused)."""
    out = OUT / f"{ibt.stem}.pandas.parquet"
    if not out.exists():
        ib = _ibt(ibt)
        try:
            names = [n for n in ib.var_headers_names if ib._var_headers_dict[n].count == 1]
            pd.DataFrame({n: ib.get_all(n) for n in names}).to_parquet(out)
        finally:
            ib.close()
    return out


def peer_read_ibt(ibt: Path, names: list[str]) -> pd.DataFrame:
    ib = _ibt(ibt)
    try:
        return pd.DataFrame({n: ib.get_all(n) for n in names})
    finally:
        ib.close()


def peer_analyse(source: Path, corners: list[tuple[str, float, float]], length: float) -> pd.DataFrame:
    if source.suffix == ".parquet":
        df = pd.read_parquet(source, columns=PEER_CHANNELS)
    else:
        df = peer_read_ibt(source, PEER_CHANNELS)
    laps = peer_lap_table(df)
    grid = np.arange(0.0, length, 1.0)
    times = {}
    for _, r in laps.iterrows():
        seg = df.iloc[int(r.start_row) - 1 : int(r.end_row) + 1]
        d = seg.LapDistPct.to_numpy() * length
        d[0] -= length  # the sample before the line
        d[-1] += length  # the sample after it
        times[r.lap] = np.interp(grid, d, seg.SessionTime.to_numpy() - r.start_s)
    ref = laps.loc[laps.time_s.idxmin(), "lap"]
    deltas = {lap: t - times[ref] for lap, t in times.items()}
    rows = []
    for _, r in laps.iterrows():
        seg = df.iloc[int(r.start_row) : int(r.end_row)].copy()
        seg["d"] = seg.LapDistPct * length
        for name, a, b in corners:
            w = seg[(seg.d >= a) & (seg.d < b)] if b > a else seg[(seg.d >= a) | (seg.d < b - length)]
            braking = w[w.Brake >= 0.05]
            rows.append({"lap": r.lap, "corner": name, "brake_point_m": braking.d.iloc[0] if len(braking) else None,
                         "min_speed_kmh": w.Speed.min() * 3.6,
                         "segment_time_s": float(np.interp(b % length, grid, times[r.lap]) -
                                                 np.interp(a, grid, times[r.lap])) if b > a else np.nan,
                         "delta_end_s": deltas[r.lap][-1]})
    return pd.DataFrame(rows)


def peer_one_lap_parquet(store: Path, lap_number: int) -> pd.DataFrame:
    df = pd.read_parquet(store, columns=["Lap", *TEN])
    return df[df.Lap == lap_number][TEN].reset_index(drop=True)


def peer_one_lap(ibt: Path, lap_number: int) -> pd.DataFrame:
    ib = _ibt(ibt)
    try:
        lap = np.asarray(ib.get_all("Lap"))
        rows = np.flatnonzero(lap == lap_number)
        return pd.DataFrame({n: [ib.get(int(i), n) for i in rows] for n in TEN})
    finally:
        ib.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--laps", type=int, default=43, help="timed laps (43 on the demo circuit = 1 hour)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    ibt, data, sid = build(args.laps)
    import pitbox.analysis as pa
    from pitbox.analysis.corners import file_corners, load_track_file

    s = pa.load_session(sid, data)
    rows = s.source.n_rows
    length = s.track_length_m
    entry = load_track_file(s.track, s.track_config)
    corners = [(c["name"], c["start_m"], c["end_m"]) for c in file_corners(entry, length)]
    lap_index = int(s.laps.pitbox.pick_fastest().lap_index)
    lap_number = int(s.laps.set_index("lap_index").lap[lap_index])
    print(f"session {sid}: {rows} rows ({rows / 60 / 3600:.2f} h at 60 Hz), {len(s.laps)} laps, "
          f"{len(corners)} corners; one lap = lap_index {lap_index}")

    store = peer_store(ibt)
    results = []
    t_ours, _ = timed(lambda: pa.analyse(pa.load_session(ibt)), args.repeat)
    t_peer, _ = timed(lambda: peer_analyse(ibt, corners, length), max(1, args.repeat // 2))
    results.append(("analyse 1 h, both from the .ibt", t_ours, t_peer, "< 2 s"))
    t_ours, a = timed(lambda: pitbox_analyse(data, sid), args.repeat)
    t_peer, _ = timed(lambda: peer_analyse(store, corners, length), args.repeat)
    results.append(("analyse 1 h, each from its store", t_ours, t_peer, "< 2 s"))
    t_ours1, tel = timed(lambda: pitbox_one_lap(data, sid, lap_index), args.repeat * 3)
    t_peer1, ptel = timed(lambda: peer_one_lap(ibt, lap_number), args.repeat)
    results.append(("one lap, 10 ch: store vs .ibt", t_ours1, t_peer1, "< 50 ms"))
    t_peer2, ptel2 = timed(lambda: peer_one_lap_parquet(store, lap_number), args.repeat * 3)
    results.append(("one lap, 10 ch: each from its store", t_ours1, t_peer2, "< 50 ms"))
    assert len(tel) >= len(ptel) and np.allclose(tel.Speed.iloc[1:-1].to_numpy(), ptel.Speed.to_numpy(), atol=0)
    assert np.array_equal(ptel.Speed.to_numpy(), ptel2.Speed.to_numpy())

    print(f"\n{'step':36} {'PitBox':>10} {'pyirsdk/pandas':>15} {'ratio':>7}  goal")
    for name, ours, peer, goal in results:
        print(f"{name:36} {ours * 1e3:8.1f} ms {peer * 1e3:12.1f} ms {peer / ours:6.1f}x  {goal}")
    print(f"\nPitBox analyse: {len(a.traces)} laps, {len(a.corners)} corners, {len(a.table)} corner rows; "
          f"max closure {max(abs(d.closure_s) for d in a.deltas.values()) * 1e3:.4f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
