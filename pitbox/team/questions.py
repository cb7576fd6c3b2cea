"""The team questions, each a plain DataFrame, the same on DuckDB and on Dask.

Every function takes the store (``data``: a folder, or an fsspec URL such as
``s3://club/archive`` of a store on shared storage) and ``engine="duckdb"`` (embedded, the
default) or ``"dask"`` (``scheduler``: a ``tcp://host:8786`` address, a
``distributed.Client``, or None for Dask's local threads). Valid laps only count towards
bests, medians and spreads; a corner row counts when its lap is valid and its segment is
clean (the analysis' ``valid``).

Partition pruning: ``track`` and ``car`` pick the ``track=…/car=…`` folders before any file is
opened (both are matched as the store's folder names, :func:`pitbox.store.slug`, so
``"Lime Rock Park"`` finds ``track=lime-rock-park``). Column projection: each scan reads only
the columns it uses. The engines do the scans and the grouped minima, maxima, counts,
means, medians and spreads; pandas then joins the few grouped rows. Floating-point results
are rounded to 6 decimals (1 µs for times) so that both engines give identical frames.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pitbox.team import engines as S
from pitbox.team.errors import TeamError
from pitbox.team.index import FILE_RE, INDEX_DIR, MAX_SECTORS, SECTOR_COLUMNS

log = logging.getLogger(__name__)

ENGINES = ("duckdb", "dask")
#: Decimals kept in floating-point answers (1 µs for times in s).
DECIMALS = 6
Data = str | os.PathLike[str]


# -- where the index is, and which files a question reads --------------------------------------

def _is_url(data: Data) -> bool:
    return "://" in str(data)


def _location(data: Data | None) -> tuple[Any, str]:
    """(fsspec filesystem or None for a local folder, root path in that filesystem)."""
    if data is None or not _is_url(data):
        from pitbox.config import data_dir

        return None, str(data_dir(data))
    try:
        import fsspec
    except ImportError:
        raise TeamError(f"{data}: a URL needs fsspec (and the package of its protocol, e.g. s3fs)") from None
    try:
        fs, root = fsspec.core.url_to_fs(str(data))
    except (ImportError, ValueError) as exc:
        raise TeamError(f"{data}: cannot open this URL: {exc}") from None
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return None, root  # a file:// URL is a local folder
    return fs, root


def _slug(value: str | None) -> str | None:
    from pitbox.store import slug

    return None if value is None else slug(value)


def index_files(data: Data | None, dataset: str, track: str | None = None, car: str | None = None
                ) -> tuple[Any, list[str]]:
    """Partition pruning: the index files of ``dataset`` under ``track=…/car=…`` (None: all)."""
    fs, root = _location(data)
    t, c = _slug(track), _slug(car)
    pattern = f"{INDEX_DIR}/{dataset}/track={t or '*'}/car={c or '*'}/*.parquet"
    if fs is None:
        files = sorted(str(p) for p in Path(root).glob(pattern) if FILE_RE.match(p.name))
    else:
        files = sorted(fs.unstrip_protocol(p) for p in fs.glob(f"{root.rstrip('/')}/{pattern}")
                       if FILE_RE.match(p.rsplit("/", 1)[-1]))
    return fs, files


@contextmanager
def _engine(data: Data | None, engine: str, scheduler: Any):
    from pitbox.team.engines import make_engine

    fs, _ = _location(data)
    e = make_engine(engine, fs, scheduler)
    try:
        yield e
    finally:
        e.close()


# -- making frames identical on both engines ---------------------------------------------------------

def _finish(df: pd.DataFrame, columns: Sequence[str], sort: Sequence[str], engine: Any,
            ints: Sequence[str] = (), nullable_ints: Sequence[str] = ()) -> pd.DataFrame:
    """Columns in order, one dtype per kind, floats rounded, rows sorted, a fresh index."""
    df = df.reindex(columns=list(columns)).copy()
    for c in df.columns:
        s = df[c]
        if c in ints:
            df[c] = pd.to_numeric(s).fillna(0).astype("int64")
        elif c in nullable_ints:
            df[c] = pd.to_numeric(s).round().astype("Int64")
        elif isinstance(s.dtype, pd.DatetimeTZDtype) or c in ("start", "last_driven"):
            df[c] = pd.to_datetime(s, utc=True).astype("datetime64[us, UTC]")
        elif pd.api.types.is_bool_dtype(s.dtype):
            df[c] = s.astype(bool)
        elif pd.api.types.is_numeric_dtype(s.dtype):
            df[c] = s.astype("float64").round(DECIMALS)
        else:
            df[c] = s.astype(object).where(s.notna(), "").astype(str)
    if len(df) and sort:
        df = df.sort_values(list(sort), kind="stable", na_position="last")
    df = df.reset_index(drop=True)
    df.attrs["engine"] = engine.name
    if engine.skipped:
        df.attrs["skipped_files"] = dict(engine.skipped)
    return df


def _merge(left: pd.DataFrame, right: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if right.empty:
        return left.assign(**{c: np.nan for c in right.columns if c not in keys})
    for k in keys:  # the engines may give the keys different string dtypes
        left[k] = left[k].astype(object)
        right[k] = right[k].astype(object)
    return left.merge(right, on=keys, how="left")


# -- questions -----------------------------------------------------------------------------------------

LEADERBOARD_COLUMNS = ["track", "car", "driver", "position", "best_lap_s", "gap_s", "optimal_lap_s", "median_lap_s",
                       "valid_laps", "laps", "last_driven", "best_session", "best_lap_index"]


def leaderboard(data: Data | None = None, track: str | None = None, car: str | None = None,
                engine: str = "duckdb", scheduler: Any = None) -> pd.DataFrame:
    """Per track, car and driver: the best valid lap [s] (its session and lap index), the gap to
    the fastest driver [s], the optimal lap from the driver's best sectors [s] (NaN unless
    every sector has a valid time), the median valid lap [s], valid and complete laps driven,
    and when the driver last drove there. Ranked by best lap within each track and car."""
    keys = ["track", "car", "driver"]
    with _engine(data, engine, scheduler) as e:
        _, files = index_files(data, "laps", track, car)
        aggs = {"best_lap_s": ("time_s", "min"), "median_lap_s": ("time_s", "median"),
                "valid_laps": ("time_s", "count"), "n_sectors": ("n_sectors", "max"),
                **{f"best_{c}": (c, "min") for c in SECTOR_COLUMNS}}
        valid_only = [("valid", "==", True)]
        driven, valid, best = e.run(
            files, S.agg(keys, {"laps": ("complete", "true"), "last_driven": ("start", "max")}),
            S.agg(keys, aggs, valid_only),
            S.first(keys, ["time_s", "session_id", "lap_index"], ["session_id", "lap_index"], valid_only))
        best = best.rename(columns={"session_id": "best_session", "lap_index": "best_lap_index"})
        df = _merge(_merge(driven, valid, keys), best[[*keys, "best_session", "best_lap_index"]], keys)
        sectors = df[[f"best_{c}" for c in SECTOR_COLUMNS]].to_numpy(np.float64) if len(df) else np.zeros((0, MAX_SECTORS))
        n = pd.to_numeric(df.get("n_sectors"), errors="coerce").fillna(0).astype(int).to_numpy() if len(df) else []
        df["optimal_lap_s"] = [float(row[:k].sum()) if 0 < k <= MAX_SECTORS and np.isfinite(row[:k]).all() else np.nan
                               for row, k in zip(sectors, n, strict=True)]
        df["best_lap_s"] = pd.to_numeric(df.best_lap_s).round(DECIMALS)
        lead = df.groupby(["track", "car"]).best_lap_s.transform("min") if len(df) else df.best_lap_s
        df["gap_s"] = df.best_lap_s - lead
        df["position"] = df.groupby(["track", "car"]).best_lap_s.rank(method="min") if len(df) else df.best_lap_s
        return _finish(df, LEADERBOARD_COLUMNS, ["track", "car", "position", "driver"], e,
                       ints=["valid_laps", "laps"], nullable_ints=["position", "best_lap_index"])


def drivers(data: Data | None = None, engine: str = "duckdb", scheduler: Any = None) -> list[str]:
    """Every driver in the laps index, sorted."""
    with _engine(data, engine, scheduler) as e:
        _, files = index_files(data, "laps")
        (df,) = e.run(files, S.agg(["driver"], {"laps": ("lap_index", "count")}))
    return sorted(str(d) for d in df.driver)


PROGRESS_COLUMNS = ["track", "car", "session_id", "start", "session_type", "laps", "valid_laps", "best_lap_s",
                    "median_lap_s", "personal_best_s"]


def progress(data: Data | None = None, driver: str = "", track: str | None = None, car: str | None = None,
             engine: str = "duckdb", scheduler: Any = None) -> pd.DataFrame:
    """One driver's sessions in time order: complete and valid laps, best and median valid lap
    [s], and the personal best on that track and car so far [s]."""
    if not driver:
        raise TeamError("progress: give a DRIVER (see 'pitbox team leaderboard' for the names)")
    keys = ["track", "car", "session_id", "session_type", "start"]
    where = [("driver", "==", driver)]
    with _engine(data, engine, scheduler) as e:
        _, files = index_files(data, "laps", track, car)
        driven, valid = e.run(files, S.agg(keys, {"laps": ("complete", "true")}, where),
                              S.agg(keys, {"valid_laps": ("time_s", "count"), "best_lap_s": ("time_s", "min"),
                                           "median_lap_s": ("time_s", "median")}, [*where, ("valid", "==", True)]))
        if driven.empty:
            known = drivers(data, engine, scheduler) if files else []
            raise TeamError(f"no laps of driver {driver!r} in {data or 'the store'}"
                            + (f" for track={track}" if track else "") + (f" car={car}" if car else "")
                            + f"; drivers in the index: {', '.join(known) or 'none'}")
        driven["start"] = pd.to_datetime(driven.start, utc=True).astype("datetime64[us, UTC]")
        if len(valid):
            valid["start"] = pd.to_datetime(valid.start, utc=True).astype("datetime64[us, UTC]")
        df = _merge(driven, valid, keys).sort_values(["start", "session_id"], kind="stable")
        df["personal_best_s"] = df.groupby(["track", "car"]).best_lap_s.cummin()
        df["personal_best_s"] = df.groupby(["track", "car"]).personal_best_s.ffill()
        return _finish(df, PROGRESS_COLUMNS, ["start", "session_id"], e, ints=["laps", "valid_laps"])


def _need_files(data: Data | None, dataset: str, track: str, car: str, what: str) -> list[str]:
    if not track or not car:
        raise TeamError(f"{what}: give --track and --car (see 'pitbox team leaderboard')")
    _, files = index_files(data, dataset, track, car)
    if not files:
        _, any_files = index_files(data, dataset)
        have = sorted({tuple(Path(f).parts[-3:-1]) if "://" not in f else tuple(f.split("/")[-3:-1])
                       for f in any_files})
        raise TeamError(f"no {dataset} index for track={_slug(track)} car={_slug(car)} in {data or 'the store'}; "
                        f"indexed: {', '.join('/'.join(h) for h in have) or 'nothing (run pitbox index rebuild)'}")
    return files


CORNER_COLUMNS = ["corner", "driver", "laps", "best_s", "median_s", "team_best_s", "team_best_driver", "best_gap_s",
                  "median_gap_s", "loss_rank", "brake_point_m", "min_speed_kmh", "throttle_pickup_m", "exit_speed_kmh",
                  "seg_start_m", "seg_end_m", "segments_match"]
#: Corner segments of different sessions whose ends differ by more than this [m] are flagged.
SEGMENT_TOLERANCE_M = 1.0


def corners(data: Data | None = None, track: str = "", car: str = "", engine: str = "duckdb",
            scheduler: Any = None) -> pd.DataFrame:
    """Per corner (in lap order) and driver: valid laps, best and median segment time [s], the
    team's best segment time [s] and who drove it, each driver's gap of best and median to it
    [s], ``loss_rank`` (1 = the corner where this driver's median loses most to the team's
    best), and the driver's median brake point [m], minimum speed [km/h], throttle pickup [m]
    and exit speed [km/h]. ``segments_match`` is False when the sessions' segments of the
    corner differ (a track without a corner file: segments from each session's braking)."""
    files = _need_files(data, "corners", track, car, "corners")
    keys = ["corner", "driver"]
    aggs = {"laps": ("segment_time_s", "count"), "best_s": ("segment_time_s", "min"),
            "median_s": ("segment_time_s", "median"), "brake_point_m": ("brake_point_m", "median"),
            "min_speed_kmh": ("min_speed_kmh", "median"), "throttle_pickup_m": ("throttle_pickup_m", "median"),
            "exit_speed_kmh": ("exit_speed_kmh", "median"), "seg_start_lo": ("seg_start_m", "min"),
            "seg_start_hi": ("seg_start_m", "max"), "seg_end_lo": ("seg_end_m", "min"), "seg_end_hi": ("seg_end_m", "max")}
    with _engine(data, engine, scheduler) as e:
        (df,) = e.run(files, S.agg(keys, aggs, [("valid", "==", True)]))
        if df.empty:
            return _finish(df, CORNER_COLUMNS, [], e, ints=["laps"], nullable_ints=["loss_rank"])
        for c in aggs:
            if c != "laps":
                df[c] = pd.to_numeric(df[c]).astype("float64").round(DECIMALS)
        df["corner"] = df.corner.astype(object)
        df["driver"] = df.driver.astype(object)
        g = df.groupby("corner")
        df["team_best_s"] = g.best_s.transform("min")
        lead = df.sort_values(["best_s", "driver"], kind="stable").drop_duplicates("corner").set_index("corner").driver
        df["team_best_driver"] = df.corner.map(lead)
        df["best_gap_s"] = df.best_s - df.team_best_s
        df["median_gap_s"] = df.median_s - df.team_best_s
        df["seg_start_m"] = g.seg_start_lo.transform("min")
        df["seg_end_m"] = g.seg_end_lo.transform("min")
        df["segments_match"] = ((g.seg_start_hi.transform("max") - df.seg_start_m <= SEGMENT_TOLERANCE_M)
                                & (g.seg_end_hi.transform("max") - df.seg_end_m <= SEGMENT_TOLERANCE_M))
        order = df.groupby("corner").seg_start_m.min().sort_values(kind="stable")
        df["_order"] = df.corner.map({c: i for i, c in enumerate(order.index)})
        ranked = df.sort_values(["driver", "median_gap_s", "_order"], ascending=[True, False, True], kind="stable")
        df["loss_rank"] = ranked.groupby("driver").cumcount().reindex(df.index) + 1
        return _finish(df, [*CORNER_COLUMNS, "_order"], ["_order", "best_s", "driver"], e, ints=["laps"],
                       nullable_ints=["loss_rank"]).drop(columns="_order")


CONSISTENCY_COLUMNS = ["track", "car", "driver", "corner", "laps", "mean_s", "sd_s", "range_s", "brake_point_sd_m",
                       "min_speed_sd_kmh", "throttle_pickup_sd_m"]


def consistency(data: Data | None = None, track: str | None = None, car: str | None = None,
                driver: str | None = None, engine: str = "duckdb", scheduler: Any = None) -> pd.DataFrame:
    """Per track, car, driver and corner over valid laps: laps, mean segment time [s], its
    spread (sample standard deviation) [s] and range (slowest - fastest) [s], and the spread of
    the brake point [m], minimum speed [km/h] and throttle pickup [m]. NaN spreads: one lap."""
    keys = ["track", "car", "driver", "corner"]
    where: list[tuple[str, str, Any]] = [("valid", "==", True)]
    if driver:
        where.append(("driver", "==", driver))
    with _engine(data, engine, scheduler) as e:
        _, files = index_files(data, "corners", track, car)
        (df,) = e.run(files, S.agg(keys, {
            "laps": ("segment_time_s", "count"), "mean_s": ("segment_time_s", "mean"),
            "sd_s": ("segment_time_s", "std"), "lo": ("segment_time_s", "min"), "hi": ("segment_time_s", "max"),
            "brake_point_sd_m": ("brake_point_m", "std"), "min_speed_sd_kmh": ("min_speed_kmh", "std"),
            "throttle_pickup_sd_m": ("throttle_pickup_m", "std"), "_order": ("seg_start_m", "min")}, where))
        if len(df):
            df["range_s"] = pd.to_numeric(df.hi) - pd.to_numeric(df.lo)
            df.loc[pd.to_numeric(df.laps) < 2, ["sd_s", "brake_point_sd_m", "min_speed_sd_kmh", "throttle_pickup_sd_m"]] = np.nan
        return _finish(df, [*CONSISTENCY_COLUMNS, "_order"], ["track", "car", "driver", "_order", "corner"], e,
                       ints=["laps"]).drop(columns="_order")


SETUP_COLUMNS = ["setup_name", "setup_hash", "drivers", "driver_names", "valid_laps", "best_lap_s", "best_driver",
                 "median_lap_s", "track_temp_mean_c", "track_temp_min_c", "track_temp_max_c"]


def setups(data: Data | None = None, track: str = "", car: str = "", engine: str = "duckdb",
           scheduler: Any = None) -> pd.DataFrame:
    """Pace by setup on one track and car, over valid laps: drivers who used it, valid laps,
    best lap [s] and who drove it, median lap [s], and the track temperature of those laps
    beside it (mean, min, max) [°C]. ``setup_hash`` identifies the setup's chosen values (see
    :func:`pitbox.team.index.setup_hash`); ``setup_name`` is the ``.sto`` name iRacing gives."""
    files = _need_files(data, "laps", track, car, "setups")
    keys = ["setup_hash", "setup_name"]
    where = [("valid", "==", True)]
    with _engine(data, engine, scheduler) as e:
        df, who, best = e.run(files, S.agg(keys, {
            "valid_laps": ("time_s", "count"), "best_lap_s": ("time_s", "min"), "median_lap_s": ("time_s", "median"),
            "track_temp_mean_c": ("track_temp_c", "mean"), "track_temp_min_c": ("track_temp_c", "min"),
            "track_temp_max_c": ("track_temp_c", "max")}, where),
            S.agg([*keys, "driver"], {"n": ("time_s", "count")}, where),
            S.first(keys, ["time_s", "session_id", "lap_index"], ["driver"], where))
        if len(df):
            who = who.astype({k: object for k in [*keys, "driver"]}).sort_values("driver", kind="stable")
            names = who.groupby(keys).driver.agg(lambda s: ", ".join(map(str, s))).rename("driver_names").reset_index()
            counts = who.groupby(keys).driver.count().rename("drivers").reset_index()
            df = _merge(_merge(df, counts, keys), names, keys)
            df = _merge(df, best[[*keys, "driver"]].rename(columns={"driver": "best_driver"}), keys)
        return _finish(df, SETUP_COLUMNS, ["best_lap_s", "setup_name", "setup_hash"], e, ints=["drivers", "valid_laps"])


LAP_COLUMNS = ["track", "car", "driver", "session_id", "lap_index", "lap", "session_type", "date", "time_s", "valid",
               "reason", "n_sectors", *SECTOR_COLUMNS, "fuel_start_l", "fuel_used_l", "track_temp_c", "air_temp_c",
               "setup_name", "setup_hash"]


def _range(name: str, value: Sequence[float] | None) -> list[tuple[str, str, Any]]:
    if value is None:
        return []
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TeamError(f"{name}: expected two numbers LOW HIGH, found {value!r}") from None
    if lo > hi:
        raise TeamError(f"{name}: LOW {lo:g} is above HIGH {hi:g}")
    return [(name, ">=", lo), (name, "<=", hi)]


def laps(data: Data | None = None, driver: str | None = None, car: str | None = None, track: str | None = None,
         session_type: str | None = None, valid_only: bool = False, track_temp: Sequence[float] | None = None,
         fuel: Sequence[float] | None = None, limit: int | None = None, engine: str = "duckdb",
         scheduler: Any = None) -> pd.DataFrame:
    """Laps that match the filters, fastest first (incomplete laps last): ``track_temp`` and
    ``fuel`` are (low, high) ranges of the lap's track temperature [°C] and the fuel at its
    start [l]; ``session_type`` as iRacing names it (Practice, Qualify, Race…). Sector columns
    are kept up to the most sectors any returned lap has."""
    where: list[tuple[str, str, Any]] = []
    if driver:
        where.append(("driver", "==", driver))
    if session_type:
        where.append(("session_type", "==", session_type))
    if valid_only:
        where.append(("valid", "==", True))
    where += _range("track_temp_c", track_temp) + _range("fuel_start_l", fuel)
    if limit is not None and limit < 1:
        raise TeamError(f"--limit {limit}: expected a positive number of laps")
    with _engine(data, engine, scheduler) as e:
        _, files = index_files(data, "laps", track, car)
        (df,) = e.run(files, S.frame(LAP_COLUMNS, where))
        out = _finish(df, LAP_COLUMNS, ["time_s", "session_id", "lap_index"], e,
                      ints=["lap_index", "lap", "n_sectors"])
    if limit is not None:
        out = out.head(limit)
    k = int(out.n_sectors.max()) if len(out) else 0
    return out.drop(columns=SECTOR_COLUMNS[k:]).reset_index(drop=True)


__all__ = ["ENGINES", "consistency", "corners", "drivers", "laps", "leaderboard", "progress", "setups"]
