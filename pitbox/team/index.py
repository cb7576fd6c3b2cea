"""The lap and corner index beside the sessions: small Parquet datasets in the store's layout.

Layout (Hive partitions like the sessions, one file per year of session starts)::

    <data>/_index/laps/track=<track>/car=<car>/<YYYY>.parquet      one row per lap
    <data>/_index/corners/track=<track>/car=<car>/<YYYY>.parquet   one row per lap and corner
    <data>/_index/lock                                                 held while files change

``track`` and ``car`` are the store's folder names (:func:`pitbox.store.slug`) and live only in
the folder names, as Hive partitions do. They are strings: a reader must say so, or it may
guess (``car=0123`` read as the number 123 by pyarrow and Dask, a date-like track read as a
DATE by DuckDB); the team engines declare them as strings (DuckDB
``hive_types_autocast = false``, Dask/pyarrow a string partitioning schema). Every file of a
dataset has the same schema (:data:`LAPS_SCHEMA`, :data:`CORNERS_SCHEMA` without the two
partition columns); its footer metadata (key ``pitbox_index``) holds the index version and,
for laps files, one status entry per session (so a session without laps, or whose corners
failed, is still known to be indexed).

Rules:

* The index is derived data: :func:`rebuild` writes it again from the session files, and
  nothing in it is the only copy of anything. A session is indexed once: its rows are
  replaced whenever it is indexed again (same file, keyed by session id).
* Files are replaced atomically (written as ``.<name>.part`` beside, then renamed) under an
  exclusive lock on ``_index/lock``; a reader always sees whole files.
* Indexing never makes an import or a recording fail: :func:`index_after_store` logs what
  went wrong; an analysis failure indexes the session's laps without corners and the reason
  shows in :func:`status`.
* Corners come from :func:`pitbox.analysis.analyse` against the session's fastest valid lap;
  a session without a valid lap uses its fastest complete lap (its corner rows are then all
  invalid, so team answers never use them); a session without a complete lap has no corners.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pitbox.errors import PitboxError, StoreError
from pitbox.laps import LAP_TABLE_VERSION

log = logging.getLogger(__name__)

INDEX_DIR = "_index"
INDEX_VERSION = 1
META_KEY = b"pitbox_index"
DATASETS = ("laps", "corners")
#: Sectors kept per lap (``s1_s`` … ``s16_s``); a track with more has no sector columns.
MAX_SECTORS = 16
#: How long an indexer waits for another process holding the index lock [s].
LOCK_TIMEOUT_S = 120.0
#: Index file names: the year of the sessions' start, or "unknown".
FILE_RE = re.compile(r"^(\d{4}|unknown)\.parquet$")
#: Setup items that are measurements or consumables, not choices (left out of the setup hash).
SETUP_NOT_CHOSEN = re.compile(r"(^|\.)(UpdateCount|LastHotPressure|LastTemps\w*|TreadRemaining|FuelLevel)$")

_STR, _F64, _I32, _BOOL = pa.string(), pa.float64(), pa.int32(), pa.bool_()
_TS = pa.timestamp("us", tz="UTC")
SECTOR_COLUMNS = [f"s{i}_s" for i in range(1, MAX_SECTORS + 1)]

#: One row per lap of the lap table (every lap, complete or not).
LAPS_SCHEMA = pa.schema([
    ("track", _STR), ("car", _STR), ("session_id", _STR), ("lap_index", _I32), ("lap", _I32),
    ("driver", _STR), ("car_name", _STR), ("track_config", _STR), ("session_type", _STR),
    ("date", _STR), ("start", _TS), ("simulated", _BOOL), ("source_kind", _STR),
    ("time_s", _F64), ("complete", _BOOL), ("valid", _BOOL), ("reason", _STR), ("incidents", _I32),
    ("iracing_time_s", _F64), ("n_sectors", _I32), *[(c, _F64) for c in SECTOR_COLUMNS],
    ("fuel_start_l", _F64), ("fuel_end_l", _F64), ("fuel_used_l", _F64),
    ("air_temp_c", _F64), ("track_temp_c", _F64), ("wetness", _STR),
    ("setup_hash", _STR), ("setup_name", _STR),
])

#: One row per complete lap and corner, from :func:`pitbox.analysis.analyse`.
CORNERS_SCHEMA = pa.schema([
    ("track", _STR), ("car", _STR), ("session_id", _STR), ("lap_index", _I32), ("lap", _I32),
    ("driver", _STR), ("session_type", _STR), ("date", _STR), ("start", _TS), ("setup_hash", _STR),
    ("corner", _STR), ("corner_order", _I32), ("seg_start_m", _F64), ("seg_end_m", _F64),
    ("segment_source", _STR), ("segment_time_s", _F64), ("brake_point_m", _F64),
    ("min_speed_kmh", _F64), ("min_speed_at_m", _F64), ("throttle_pickup_m", _F64),
    ("exit_speed_kmh", _F64), ("entry_speed_kmh", _F64), ("coasting_s", _F64), ("delta_s", _F64),
    ("valid", _BOOL), ("lap_valid", _BOOL), ("reference_lap_index", _I32), ("reference_valid", _BOOL),
])

SCHEMAS = {"laps": LAPS_SCHEMA, "corners": CORNERS_SCHEMA}
#: Columns that are the partition folders (``track=…/car=…``), not stored in the files.
PARTITION_KEYS = ("track", "car")
PARTITION_SCHEMA = pa.schema([(k, _STR) for k in PARTITION_KEYS])
FILE_SCHEMAS = {ds: pa.schema([f for f in schema if f.name not in PARTITION_KEYS]) for ds, schema in SCHEMAS.items()}
SORT_KEYS = {"laps": [("session_id", "ascending"), ("lap_index", "ascending")],
             "corners": [("session_id", "ascending"), ("lap_index", "ascending"), ("corner_order", "ascending")]}


def index_root(data: str | os.PathLike[str]) -> Path:
    """``<data>/_index``."""
    return Path(data) / INDEX_DIR


def file_key(meta: dict[str, Any]) -> tuple[str, str, str]:
    """(track, car, year) of a session's index files, from its ``pitbox`` metadata."""
    from pitbox.store import slug

    start = str(meta.get("start") or "")
    year = start[:4] if re.match(r"^\d{4}-", start) else "unknown"
    return slug(meta.get("track", "unknown")), slug(meta.get("car", "unknown")), year


def index_file(data: str | os.PathLike[str], dataset: str, key: tuple[str, str, str]) -> Path:
    track, car, year = key
    return index_root(data) / dataset / f"track={track}" / f"car={car}" / f"{year}.parquet"


def setup_hash(items: dict[str, Any]) -> str:
    """12 hex digits identifying a car setup (the YAML's ``CarSetup`` flattened), leaving out
    what is measured or used up rather than chosen (last hot pressures and temperatures,
    tread remaining, fuel level); ``""`` when the session has no setup."""
    chosen = {k: str(v) for k, v in items.items() if not SETUP_NOT_CHOSEN.search(k)}
    if not chosen:
        return ""
    return hashlib.sha256(json.dumps(sorted(chosen.items())).encode()).hexdigest()[:12]


# -- the rows of one session ---------------------------------------------------------------

@dataclass
class SessionRows:
    """What one session contributes to the index."""

    session_id: str
    key: tuple[str, str, str]
    laps: pd.DataFrame
    corners: pd.DataFrame
    status: dict[str, Any]


def _number(text: object) -> float:
    try:
        return float(str(text).split()[0])
    except (ValueError, IndexError):
        return float("nan")


def _lap_means(session: Any, laps: pd.DataFrame, names: Sequence[str]) -> np.ndarray | None:
    """Mean of the first available channel of ``names`` over each lap's rows (None: none)."""
    have = session.available(list(names))
    if not have:
        return None
    values = session.channels([have[0]])[have[0]].astype(np.float64)
    out = np.full(len(laps), np.nan)
    for i, (a, b) in enumerate(zip(laps.start_row.astype(int), laps.end_row.astype(int), strict=True)):
        if b > a:
            out[i] = float(np.nanmean(values[a:b]))
    return out


def _laps_frame(session: Any, meta: dict[str, Any], key: tuple[str, str, str],
                status: dict[str, Any]) -> pd.DataFrame:
    """The laps rows: the lap table plus sectors, fuel, conditions and setup."""
    from pitbox.analysis import car_setup, conditions, fuel_per_lap, sector_times

    laps = session.laps.reset_index(drop=True)
    n = len(laps)
    start = pd.Timestamp(meta["start"]) if meta.get("start") else pd.NaT
    if start is not pd.NaT and start.tzinfo is None:
        start = start.tz_localize("UTC")
    info_di = session.info.get("DriverInfo") or {}
    problems: list[str] = []
    df = pd.DataFrame({
        "track": key[0], "car": key[1], "session_id": session.id,
        "lap_index": laps.lap_index.astype("int32"), "lap": laps.lap.astype("int32"),
        "driver": str(meta.get("driver") or "unknown"), "car_name": str(meta.get("car_name") or ""),
        "track_config": str(meta.get("track_config") or ""), "session_type": str(meta.get("session_type") or ""),
        "date": str(meta.get("start") or "")[:10], "start": pd.Series([start] * n, dtype="datetime64[us, UTC]"),
        "simulated": bool(meta.get("simulated")), "source_kind": str(meta.get("source_kind") or ""),
        "time_s": laps.time_s.astype("float64"), "complete": laps.complete.astype(bool),
        "valid": laps.valid.astype(bool), "reason": laps.reason.fillna("").astype(str),
        "incidents": laps.incidents.fillna(0).astype("int32"), "iracing_time_s": laps.iracing_time_s.astype("float64"),
    }, index=range(n))
    df["n_sectors"] = np.int32(0)
    for c in SECTOR_COLUMNS:
        df[c] = np.nan
    try:
        st = sector_times(session)
        names = [c for c in st.columns if re.fullmatch(r"s\d+_s", c)]
        if len(names) > MAX_SECTORS:
            problems.append(f"{len(names)} sectors: only tracks with up to {MAX_SECTORS} keep sector times")
            df["n_sectors"] = np.int32(len(names))
        elif names:
            df["n_sectors"] = np.int32(len(names))
            by_lap = st.set_index("lap_index")
            for c in names:
                df[c] = df.lap_index.map(by_lap[c]).astype("float64")
    except Exception as exc:  # noqa: BLE001 - a damaged session still indexes its lap table
        problems.append(f"sectors: {type(exc).__name__}: {exc}")
    fuel_cols = ("fuel_start_l", "fuel_end_l", "fuel_used_l")
    for c in fuel_cols:
        df[c] = np.nan
    try:
        fuel = fuel_per_lap(session).set_index("lap_index")
        for c in fuel_cols:
            df[c] = df.lap_index.map(fuel[c]).astype("float64")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"fuel: {type(exc).__name__}: {exc}")
    try:
        cond = conditions(session)
    except Exception as exc:  # noqa: BLE001
        cond = {}
        problems.append(f"conditions: {type(exc).__name__}: {exc}")
    for col, chans, yaml_key in (("air_temp_c", ("AirTemp",), "air_temp_c"),
                                 ("track_temp_c", ("TrackTempCrew", "TrackTemp"), "track_temp_c")):
        try:
            measured = _lap_means(session, laps, chans)
        except Exception as exc:  # noqa: BLE001
            measured = None
            problems.append(f"{col}: {type(exc).__name__}: {exc}")
        fallback = cond.get(yaml_key)
        df[col] = measured if measured is not None else (np.nan if fallback is None else float(fallback))
    df["wetness"] = str(cond.get("wetness_measured") or cond.get("wetness") or "")
    try:
        df["setup_hash"] = setup_hash(car_setup(session))
    except Exception as exc:  # noqa: BLE001
        df["setup_hash"] = ""
        problems.append(f"setup: {type(exc).__name__}: {exc}")
    df["setup_name"] = str(info_di.get("DriverSetupName") or "")
    if problems:
        status["laps_status"] = "partial: " + "; ".join(problems)
    return df[LAPS_SCHEMA.names]


def _corner_frame(session: Any, data: Any, laps_df: pd.DataFrame, status: dict[str, Any]) -> pd.DataFrame:
    """The corners rows, from the offline analysis (see the module docs for the reference)."""
    from pitbox.analysis import analyse

    table = session.laps
    ref = None
    if not (table.valid & table.complete & table.time_s.notna()).any():
        complete = table[table.complete & table.time_s.notna()]
        if complete.empty:
            status["corners_status"] = "none: no complete lap"
            return _empty("corners")
        ref = int(complete.loc[complete.time_s.idxmin(), "lap_index"])
        status["corners_status"] = "reference: fastest complete lap (no valid lap)"
    try:
        a = analyse(session, reference=ref, data=data)
    except Exception as exc:  # noqa: BLE001 - an analysis failure never stops indexing
        log.warning("session %s: corners not indexed: %s: %s", session.id, type(exc).__name__, exc)
        status["corners_status"] = f"failed: {type(exc).__name__}: {exc}"
        return _empty("corners")
    t = a.table
    if t is None or len(t) == 0 or not a.corners:
        status["corners_status"] = "none: no corners found"
        return _empty("corners")
    order = {c.name: i for i, c in enumerate(a.corners)}
    geom = {c.name: (float(getattr(c, "seg_start_m", np.nan)), float(getattr(c, "seg_end_m", np.nan)))
            for c in a.corners}
    first = laps_df.iloc[0] if len(laps_df) else None
    lap_valid = table.set_index("lap_index").valid
    n = len(t)

    def col(name: str) -> np.ndarray:
        return pd.to_numeric(t[name], errors="coerce").to_numpy(np.float64) if name in t else np.full(n, np.nan)

    df = pd.DataFrame({
        "track": laps_df.track.iloc[0] if first is not None else "", "car": laps_df.car.iloc[0] if first is not None else "",
        "session_id": session.id, "lap_index": t.lap_index.astype("int32").to_numpy(),
        "lap": t.lap_index.map(table.set_index("lap_index").lap).astype("int32").to_numpy(),
        "driver": first.driver if first is not None else "", "session_type": first.session_type if first is not None else "",
        "date": first.date if first is not None else "",
        "start": pd.Series([first.start if first is not None else pd.NaT] * n, dtype="datetime64[us, UTC]"),
        "setup_hash": first.setup_hash if first is not None else "",
        "corner": t.corner.astype(str).to_numpy(), "corner_order": t.corner.map(order).astype("int32").to_numpy(),
        "seg_start_m": t.corner.map(lambda c: geom[c][0]).to_numpy(np.float64),
        "seg_end_m": t.corner.map(lambda c: geom[c][1]).to_numpy(np.float64),
        "segment_source": str(getattr(a, "segment_source", "") or ""),
        **{c: col(c) for c in ("segment_time_s", "brake_point_m", "min_speed_kmh", "min_speed_at_m",
                                 "throttle_pickup_m", "exit_speed_kmh", "entry_speed_kmh", "coasting_s", "delta_s")},
        "valid": t.valid.astype(bool).to_numpy() if "valid" in t else np.zeros(n, bool),
        "lap_valid": t.lap_index.map(lap_valid).fillna(False).astype(bool).to_numpy(),
        "reference_lap_index": np.int32(a.reference.lap_index),
        "reference_valid": bool(a.reference.valid),
    }, index=range(n))
    status.setdefault("corners_status", "ok")
    return df[CORNERS_SCHEMA.names]


def _empty(dataset: str) -> pd.DataFrame:
    return SCHEMAS[dataset].empty_table().to_pandas()


def session_rows(path: str | os.PathLike[str], data: str | os.PathLike[str] | None = None) -> SessionRows:
    """The index rows of one session file. Raises :class:`StoreError` when the file is not a
    readable session; everything after that degrades (reported in ``status``)."""
    from pitbox.analysis import load_session
    from pitbox.store import read_meta

    path = Path(path)
    meta = read_meta(path)
    key = file_key(meta)
    sid = str(meta.get("id") or path.stem)
    st = path.stat()
    status: dict[str, Any] = {"path": path.name, "stamp": [st.st_size, st.st_mtime_ns], "version": INDEX_VERSION,
                              "lap_table_version": LAP_TABLE_VERSION}
    try:
        session = load_session(path, data)
        have = session.available(["SessionTime", "Lap", "LapDistPct", "FuelLevel"])
        session.channels(have)  # one read of the channels every lap needs (then cached)
    except PitboxError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow and numpy errors of a damaged file
        raise StoreError(f"{path}: cannot read the session: {type(exc).__name__}: {exc}") from None
    laps = _laps_frame(session, meta, key, status)
    corners = _corner_frame(session, data, laps, status)
    status.setdefault("laps_status", "ok")
    status.update(laps=int(len(laps)), corner_rows=int(len(corners)), session_id=sid)
    return SessionRows(sid, key, laps, corners, status)


# -- writing files ---------------------------------------------------------------------------

class _IndexLock:
    """The exclusive lock on ``_index/lock`` (an OS lock: released if the process dies)."""

    def __init__(self, root: Path, timeout_s: float = LOCK_TIMEOUT_S):
        self.root = root
        self.timeout_s = timeout_s

    def __enter__(self) -> _IndexLock:
        from pitbox.recorder.segments import FolderLock

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.root}: cannot create the index folder: {exc.strerror or exc}") from None
        self.lock = FolderLock(self.root)
        deadline = time.monotonic() + self.timeout_s
        while not self.lock.try_acquire():  # another process is writing: poll (no event crosses processes)
            if time.monotonic() > deadline:
                raise StoreError(f"{self.root / 'lock'}: held by another process for over {self.timeout_s:.0f} s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _read_index_file(path: Path) -> tuple[pa.Table | None, dict[str, Any]]:
    """An index file's table and its ``pitbox_index`` metadata; (None, {}) when unreadable."""
    try:
        table = pq.ParquetFile(path).read()  # one file: no partition columns guessed from its folders
        meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    except (OSError, pa.ArrowException, ValueError) as exc:
        log.warning("%s: unreadable index file, written anew: %s", path, exc)
        return None, {}
    return table, meta if isinstance(meta, dict) else {}


def _write_file(path: Path, dataset: str, table: pa.Table, meta: dict[str, Any]) -> None:
    schema = FILE_SCHEMAS[dataset].with_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
    table = table.select(FILE_SCHEMAS[dataset].names).cast(FILE_SCHEMAS[dataset]).replace_schema_metadata(schema.metadata)
    if table.num_rows:
        table = table.sort_by(SORT_KEYS[dataset])
    tmp = path.with_name(f".{path.name}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{path}: cannot write the index file: {exc.strerror or exc}") from None


def _to_table(dataset: str, frames: list[pd.DataFrame]) -> pa.Table:
    schema = FILE_SCHEMAS[dataset]
    frames = [f for f in frames if len(f)]
    if not frames:
        return schema.empty_table()
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)


def _merge(data: Path, dataset: str, key: tuple[str, str, str], rows: list[SessionRows],
           drop: set[str], replace_all: bool = False) -> None:
    """Replace the rows (and statuses) of ``rows``' sessions and drop ``drop`` in one file."""
    path = index_file(data, dataset, key)
    old, meta = (None, {}) if replace_all or not path.exists() else _read_index_file(path)
    ids = {r.session_id for r in rows} | drop
    sessions: dict[str, Any] = {} if replace_all else dict(meta.get("sessions") or {})
    for sid in ids:
        sessions.pop(sid, None)
    if dataset == "laps":
        sessions.update({r.session_id: r.status for r in rows})
    parts = []
    if old is not None and old.num_rows:
        keep = pc.invert(pc.is_in(old.column("session_id"), value_set=pa.array(sorted(ids), pa.string())))
        parts.append(old.filter(keep).select(FILE_SCHEMAS[dataset].names).cast(FILE_SCHEMAS[dataset]))
    new = _to_table(dataset, [getattr(r, dataset) for r in rows])
    if new.num_rows:
        parts.append(new)
    table = pa.concat_tables(parts) if parts else FILE_SCHEMAS[dataset].empty_table()
    if table.num_rows == 0 and not sessions:
        if path.exists():
            path.unlink()
        return
    _write_file(path, dataset, table, {"version": INDEX_VERSION, "dataset": dataset,
                                       **({"sessions": sessions} if dataset == "laps" else {})})


def _write_rows(data: Path, rows: list[SessionRows], drop: dict[tuple[str, str, str], set[str]] | None = None,
                replace_all: bool = False) -> None:
    """Write the files that ``rows`` (and the sessions in ``drop``) touch, under the lock."""
    drop = drop or {}
    by_key: dict[tuple[str, str, str], list[SessionRows]] = {}
    for r in rows:
        by_key.setdefault(r.key, []).append(r)
    with _IndexLock(index_root(data)):
        for key in sorted(set(by_key) | set(drop)):
            for dataset in DATASETS:
                _merge(data, dataset, key, by_key.get(key, []), drop.get(key, set()), replace_all)


# -- indexing sessions -------------------------------------------------------------------------

@dataclass
class IndexReport:
    """What an indexing run did. ``skipped``: (file, reason) of files that are not sessions."""

    indexed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    corner_problems: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"indexed": len(self.indexed), "removed": self.removed,
                "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
                "corner_problems": [{"session": s, "status": r} for s, r in self.corner_problems],
                "seconds": round(self.seconds, 3)}


def _rows_or_error(path: Path, data: Path) -> SessionRows | tuple[str, str]:
    try:
        return session_rows(path, data)
    except (PitboxError, OSError) as exc:
        return (str(path), str(exc))


def _compute_rows(paths: Sequence[Path], data: Path, progress: bool, jobs: int, desc: str
                  ) -> tuple[list[SessionRows], list[tuple[str, str]]]:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="session", desc=desc)
    results: list[SessionRows | tuple[str, str]] = []
    try:
        if jobs > 1 and len(paths) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(min(jobs, len(paths))) as pool:
                for r in pool.map(_rows_or_error, paths, [data] * len(paths), chunksize=4):
                    results.append(r)
                    if bar is not None:
                        bar.update()
        else:
            for p in paths:
                results.append(_rows_or_error(p, data))
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()
    rows = [r for r in results if isinstance(r, SessionRows)]
    bad = [r for r in results if not isinstance(r, SessionRows)]
    for _, reason in bad:
        log.warning("not indexed: %s", reason)
    return rows, bad


def _report(rows: list[SessionRows], bad: list[tuple[str, str]], t0: float) -> IndexReport:
    probs = [(r.session_id, r.status.get("corners_status", "")) for r in rows
             if r.status.get("corners_status", "ok") != "ok"]
    return IndexReport([r.session_id for r in rows], [], bad, probs, time.perf_counter() - t0)


def index_sessions(data: str | os.PathLike[str], paths: Iterable[str | os.PathLike[str]], *,
                   progress: bool = False, jobs: int = 1) -> IndexReport:
    """Index (or index again) the given session files of the store ``data``.

    Files that are not readable sessions are skipped and listed in the report; ``jobs`` > 1
    analyses sessions in that many processes.
    """
    t0 = time.perf_counter()
    data = Path(data)
    rows, bad = _compute_rows([Path(p) for p in paths], data, progress, jobs, "index")
    if rows:
        _write_rows(data, rows)
    return _report(rows, bad, t0)


def _indexed(data: Path) -> tuple[dict[str, tuple[tuple[str, str, str], dict[str, Any]]], list[tuple[str, str]]]:
    """Every indexed session: id -> (file key, status); and the index files that could not be read."""
    out: dict[str, tuple[tuple[str, str, str], dict[str, Any]]] = {}
    bad: list[tuple[str, str]] = []
    for path, key in _index_files(data, "laps", bad):
        try:
            md = pq.read_schema(path).metadata or {}
            meta = json.loads(md.get(META_KEY, b"{}"))
            sessions = meta.get("sessions") if isinstance(meta, dict) else None
            if not isinstance(sessions, dict):
                raise ValueError("no pitbox_index metadata")
        except (OSError, pa.ArrowException, ValueError) as exc:
            bad.append((str(path), f"unreadable index file: {exc}"))
            continue
        for sid, st in sessions.items():
            out[sid] = (key, st if isinstance(st, dict) else {})
    return out, bad


def _index_files(data: Path, dataset: str, foreign: list[tuple[str, str]] | None = None
                 ) -> list[tuple[Path, tuple[str, str, str]]]:
    """The files of one index dataset with their keys; other files are listed in ``foreign``."""
    base = index_root(data) / dataset
    out = []
    if not base.is_dir():
        return out
    for p in sorted(base.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = p.relative_to(base).parts
        m = FILE_RE.match(p.name)
        if len(rel) == 3 and rel[0].startswith("track=") and rel[1].startswith("car=") and m:
            out.append((p, (rel[0][6:], rel[1][4:], m.group(1))))
        elif foreign is not None:
            foreign.append((str(p), "not an index file (expected track=…/car=…/YYYY.parquet)"))
    return out


def _stale(entry: dict[str, Any], st: os.stat_result) -> bool:
    """True when a session changed since it was indexed, or was indexed by older rules (index
    version, lap-table rules)."""
    return (entry.get("stamp") != [st.st_size, st.st_mtime_ns] or entry.get("version", 0) != INDEX_VERSION
            or entry.get("lap_table_version", 0) != LAP_TABLE_VERSION)


def _store_sessions(data: Path) -> tuple[dict[str, tuple[Path, dict[str, Any]]], list[tuple[str, str]]]:
    """Every session file of the store: id -> (path, meta); and the files that are not sessions."""
    from pitbox.store import Store, read_meta

    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    bad: list[tuple[str, str]] = []
    for p in Store(data).files():
        try:
            meta = read_meta(p)
        except StoreError as exc:
            bad.append((str(p), str(exc)))
            continue
        out[str(meta.get("id") or p.stem)] = (p, meta)
    return out, bad


def forget_sessions(data: str | os.PathLike[str], session_ids: Iterable[str]) -> list[str]:
    """Remove sessions from the index (e.g. a live recording linked to its ``.ibt``, which is
    now the session of that stint). Returns the ids that were indexed."""
    data = Path(data)
    ids = set(session_ids)
    indexed, _ = _indexed(data)
    drop: dict[tuple[str, str, str], set[str]] = {}
    for sid in ids & set(indexed):
        drop.setdefault(indexed[sid][0], set()).add(sid)
    if drop:
        _write_rows(data, [], drop)
    return sorted(ids & set(indexed))


def rebuild(data: str | os.PathLike[str], *, progress: bool = False, jobs: int = 1) -> IndexReport:
    """Write the whole index again from the session files (files that are not sessions are
    reported and skipped); every other Parquet file in the index's partition folders (stale,
    from an older layout, or not ours) is removed."""
    t0 = time.perf_counter()
    data = Path(data)
    sessions, bad_store = _store_sessions(data)
    paths = [p for p, _ in sorted(sessions.values(), key=lambda pm: str(pm[0]))]
    rows, bad = _compute_rows(paths, data, progress, jobs, "index rebuild")
    by_key: dict[tuple[str, str, str], list[SessionRows]] = {}
    for r in rows:
        by_key.setdefault(r.key, []).append(r)
    with _IndexLock(index_root(data)):
        keep: set[Path] = set()
        for key, group in sorted(by_key.items()):
            for dataset in DATASETS:
                _merge(data, dataset, key, group, set(), replace_all=True)
                keep.add(index_file(data, dataset, key))
        for dataset in DATASETS:  # everything else in the index is stale (or not ours): gone
            base = index_root(data) / dataset
            for path in sorted(base.glob("track=*/car=*/*.parquet")) if base.is_dir() else []:
                if path not in keep:
                    path.unlink(missing_ok=True)
            for folder in sorted(base.glob("track=*/car=*"), reverse=True) + sorted(base.glob("track=*")):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
    report = _report(rows, bad_store + bad, t0)
    return report


def update(data: str | os.PathLike[str], *, progress: bool = False, jobs: int = 1) -> IndexReport:
    """Bring the index in line with the store: index sessions it misses or that changed since
    (or were indexed by older rules: index version, lap-table rules), and remove sessions no
    longer in the store."""
    t0 = time.perf_counter()
    data = Path(data)
    sessions, bad_store = _store_sessions(data)
    indexed, _ = _indexed(data)
    todo = []
    for sid, (p, _) in sorted(sessions.items()):
        entry = indexed.get(sid)
        st = p.stat()
        if entry is None or _stale(entry[1], st):
            todo.append(p)
    gone: dict[tuple[str, str, str], set[str]] = {}
    for sid, (key, _) in indexed.items():
        if sid not in sessions:
            gone.setdefault(key, set()).add(sid)
    rows, bad = _compute_rows(todo, data, progress, jobs, "index update")
    if rows or gone:
        _write_rows(data, rows, gone)
    report = _report(rows, bad_store + bad, t0)
    report.removed = sorted(s for ids in gone.values() for s in ids)
    return report


def status(data: str | os.PathLike[str]) -> dict[str, Any]:
    """What the index holds against what the store holds: counts, sessions missing from the
    index or no longer in the store, sessions indexed without corners (and why), files that
    are not sessions or not index files."""
    data = Path(data)
    sessions, bad_store = _store_sessions(data)
    foreign: list[tuple[str, str]] = []
    files = {ds: _index_files(data, ds, foreign) for ds in DATASETS}
    indexed, bad_index = _indexed(data)
    no_corners = {sid: st.get("corners_status", "") for sid, (_, st) in indexed.items()
                  if st.get("corners_status", "ok") != "ok"}
    partial = {sid: st.get("laps_status", "") for sid, (_, st) in indexed.items()
               if st.get("laps_status", "ok") != "ok"}
    stale = [sid for sid, (p, _) in sessions.items() if sid in indexed and _stale(indexed[sid][1], p.stat())]
    return {
        "data": str(data), "index": str(index_root(data)), "version": INDEX_VERSION,
        "sessions": len(sessions), "indexed": len(set(indexed) & set(sessions)),
        "missing": sorted(set(sessions) - set(indexed)), "orphans": sorted(set(indexed) - set(sessions)),
        "stale": sorted(stale),
        "files": {ds: len(v) for ds, v in files.items()},
        "bytes": {ds: sum(p.stat().st_size for p, _ in v) for ds, v in files.items()},
        "corner_problems": dict(sorted(no_corners.items())), "laps_problems": dict(sorted(partial.items())),
        "not_sessions": [{"file": f, "reason": r} for f, r in bad_store],
        "bad_index_files": [{"file": f, "reason": r} for f, r in bad_index + foreign],
    }


# -- hooks for the import and recording paths -----------------------------------------------------

def index_after_store(data: str | os.PathLike[str], paths: Sequence[str | os.PathLike[str]],
                      progress: bool = False) -> IndexReport | None:
    """Index sessions that were just stored; never raises (a failure is logged, and
    ``pitbox index update`` or ``rebuild`` catches up later)."""
    paths = [Path(p) for p in paths if Path(p).exists()]
    if not paths:
        return None
    try:
        report = index_sessions(data, paths, progress=progress and len(paths) > 1)
    except Exception as exc:  # noqa: BLE001 - indexing must never fail an import or a recording
        log.warning("sessions stored but not indexed (run 'pitbox index update --data %s'): %s: %s",
                    data, type(exc).__name__, exc)
        return None
    for sid, reason in report.corner_problems:
        log.info("session %s indexed without usable corners: %s", sid, reason)
    return report


def forget_after_link(data: str | os.PathLike[str], session_ids: Sequence[str]) -> None:
    """Drop linked live recordings from the index; never raises."""
    try:
        forget_sessions(data, session_ids)
    except Exception as exc:  # noqa: BLE001
        log.warning("linked sessions %s still in the index (run 'pitbox index update'): %s", ", ".join(session_ids), exc)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pitbox.team.index --data DIR SESSION_FILE...``: index sessions from a script or
    a scheduled task (``--low-priority`` lowers the process's CPU priority first)."""
    parser = argparse.ArgumentParser(prog="python -m pitbox.team.index")
    parser.add_argument("--data", required=True)
    parser.add_argument("--low-priority", action="store_true", help="lower this process's CPU priority first")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    if args.low_priority and hasattr(os, "nice"):
        os.nice(10)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = index_sessions(args.data, args.paths)
    except PitboxError as exc:
        print(f"index: error: {exc}", file=sys.stderr)
        return 2
    for f, reason in report.skipped:
        print(f"not indexed: {f}: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
