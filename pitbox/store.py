"""The Parquet session store: a Hive-partitioned dataset, one file per session.

Layout: ``<data>/track=<track>/car=<car>/<session id>.parquet`` (pyarrow, DuckDB and Dask
read it as it is). Each file holds every channel of one session (one ``SessionNum`` of one
driver in one car), zstd-compressed, in row groups of :data:`ROW_GROUP_ROWS` rows; its
footer metadata key ``pitbox`` holds JSON with the schema version, source name and sha256,
the full session YAML, track, car, driver, session type, start time, tick rate, the
truncated flag, each channel's unit and description, and the lap table. Columns are written
without dictionary encoding and float columns with BYTE_STREAM_SPLIT (see
:func:`parquet_options`): telemetry floats rarely repeat, so this is ~3x faster to write and
~2x smaller than pyarrow's defaults.

Safety: files are written beside their final name as ``.<name>.part`` (ignored by dataset
readers) and renamed into place; an import never touches another session's file; the
catalogue (``_catalogue.json``) is a cache rebuilt from the file footers whenever stale.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pitbox.errors import (
    IbtFormatError,
    LapNotFound,
    MissingChannel,
    PitboxError,
    SessionNotFound,
    StoreError,
    TruncatedWarning,
)
from pitbox.ibt.layout import VarHeader, VarType
from pitbox.ibt.reader import TelemetryFile, open_telemetry, sha256_file
from pitbox.laps import LAP_COLUMNS, LAP_TABLE_VERSION, lap_table

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ROW_GROUP_ROWS = 16384
META_KEY = b"pitbox"
CATALOGUE_NAME = "_catalogue.json"
LAP_CHANNELS = ("SessionTime", "SessionTick", "SessionNum", "Lap", "LapDistPct", "LapLastLapTime",
                "OnPitRoad", "PlayerTrackSurface", "PlayerCarMyIncidentCount", "Speed")
_REAL = (VarType.FLOAT, VarType.DOUBLE)
_COUNTER = (VarType.INT, VarType.BITFIELD)
#: What each lap channel must be (a scalar of these types); the first three must be present.
LAP_CHANNEL_TYPES: dict[str, tuple[VarType, ...]] = {
    "SessionTime": _REAL, "Lap": _COUNTER, "LapDistPct": _REAL, "SessionTick": _COUNTER, "SessionNum": _COUNTER,
    "LapLastLapTime": _REAL, "OnPitRoad": (VarType.BOOL, *_COUNTER), "PlayerTrackSurface": _COUNTER,
    "PlayerCarMyIncidentCount": _COUNTER, "Speed": _REAL,
}
#: More runs of ``SessionNum`` than this in one file means the channel is garbage.
MAX_SESSIONS_PER_FILE = 64


def slug(value: object) -> str:
    """A folder-safe partition value: lower case, ``[a-z0-9._-]``, spaces as ``-``."""
    s = re.sub(r"[^a-z0-9._-]+", "-", str(value).strip().lower()).strip("-.")
    return s or "unknown"


# -- reading channels into Arrow -------------------------------------------------------

def arrow_column(v: VarHeader, values: np.ndarray) -> pa.Array:
    """One channel as an Arrow array: fixed-size lists for arrays, types preserved."""
    if v.count > 1:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=v.arrow_type.value_type), v.count)
    return pa.array(values, type=v.arrow_type)


def arrow_schema(variables: Sequence[VarHeader], meta: dict[str, Any] | None = None) -> pa.Schema:
    fields = [
        pa.field(v.name, v.arrow_type, nullable=False,
                 metadata={"unit": v.unit, "desc": v.desc, "irsdk_type": v.type.name.lower()})
        for v in variables
    ]
    md = {META_KEY: json.dumps(meta, default=str).encode()} if meta is not None else None
    return pa.schema(fields, metadata=md)


def record_batch(variables: Sequence[VarHeader], cols: dict[str, np.ndarray], schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([arrow_column(v, cols[v.name]) for v in variables], schema=schema)


# -- session metadata from the YAML ----------------------------------------------------

def _section(parent: object, key: str) -> dict[str, Any]:
    """``parent[key]`` when both are mappings, else ``{}`` (a damaged YAML may hold anything)."""
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def _entries(parent: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = parent.get(key)
    return [d for d in value if isinstance(d, dict)] if isinstance(value, list) else []


def _text(parent: dict[str, Any], key: str, default: str = "") -> str:
    """A scalar YAML value as text; anything else (lists, maps, aliases) gives ``default``."""
    value = parent.get(key)
    return str(value) if isinstance(value, (str, int, float)) and str(value) else default


def _driver(info: dict[str, Any]) -> dict[str, Any]:
    di = _section(info, "DriverInfo")
    idx = di.get("DriverCarIdx")
    for d in _entries(di, "Drivers"):
        if d.get("CarIdx") == idx:
            return d
    return {}


def _session_type(info: dict[str, Any], num: int) -> str:
    for s in _entries(_section(info, "SessionInfo"), "Sessions"):
        if s.get("SessionNum") == num:
            return _text(s, "SessionType")
    return ""


def session_meta(tf: TelemetryFile | None, info: dict[str, Any], session_num: int) -> dict[str, Any]:
    wi = _section(info, "WeekendInfo")
    drv = _driver(info)
    return {
        "track": _text(wi, "TrackName", "unknown"),
        "track_config": _text(wi, "TrackConfigName"),
        "track_display": _text(wi, "TrackDisplayName"),
        "track_length": _text(wi, "TrackLength"),
        "car": _text(drv, "CarPath", "unknown"),
        "car_name": _text(drv, "CarScreenName"),
        "driver": _text(drv, "UserName", "unknown"),
        "session_type": _session_type(info, session_num),
        "session_num": session_num,
        "iracing_build": _text(wi, "BuildVersion"),
        "simulated": _text(wi, "source") == "simulated",
    }


# -- import ----------------------------------------------------------------------------

@dataclass
class ImportResult:
    """What happened to one source file."""

    source: Path
    status: str  #: "imported", "present" or "failed"
    sessions: list[str] = field(default_factory=list)
    truncated: bool = False
    error: str | None = None
    written: list[Path] = field(default_factory=list)  #: session files this import wrote


def _session_ranges(session_num: np.ndarray | None, n: int) -> list[tuple[int, int, int]]:
    """(start, stop, SessionNum) for each run of one SessionNum."""
    if session_num is None or n == 0:
        return [(0, n, 0)]
    cut = np.flatnonzero(np.diff(session_num) != 0) + 1
    edges = np.concatenate([[0], cut, [n]])
    return [(int(a), int(b), int(session_num[a])) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _lap_inputs(tf: TelemetryFile) -> dict[str, np.ndarray]:
    """The channels the lap table and session split need, each checked to be a scalar of
    the type iRacing gives it (``SessionTime`` [s], ``LapDistPct`` [0-1], ``Speed`` [m/s] …)."""
    names = []
    for i, (name, types) in enumerate(LAP_CHANNEL_TYPES.items()):
        v = tf.channels.get(name)
        if v is None:
            if i < 3:
                raise IbtFormatError(tf.path, f"channel {name}", "present (the lap table needs SessionTime, Lap, LapDistPct)",
                                     "missing")
            continue
        if v.count != 1 or v.type not in types:
            raise IbtFormatError(tf.path, f"variable header {name}", f"a scalar {' or '.join(t.name.lower() for t in types)}",
                                 f"{v.type.name.lower()}[{v.count}]")
        names.append(name)
    chunks = list(tf.iter_chunks(ROW_GROUP_ROWS, names))  # bounded memory: never the whole file at once
    return {n: np.concatenate([c[n] for c in chunks]) for n in names} if chunks else tf.read(names)


def _start_time(tf: TelemetryFile, t: np.ndarray, row: int) -> datetime:
    """Wall-clock start of ``row``: the file's start date plus the ``SessionTime`` elapsed
    (or ``row / tick_rate`` when ``SessionTime`` goes back or is not a sane number)."""
    base = tf.disk.session_start_date if tf.disk is not None else 0
    offset = row / tf.tick_rate
    if len(t) and np.all(np.diff(t[: row + 1]) >= 0):
        elapsed = float(t[row] - t[0])
        offset = elapsed if 0 <= elapsed <= 1e8 else offset
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=base + offset)


def parquet_options(variables: Sequence[VarHeader]) -> dict[str, Any]:
    """``pyarrow.parquet.ParquetWriter`` options of a session file: zstd, no dictionary
    encoding, BYTE_STREAM_SPLIT for float columns, statistics for ``SessionTime`` and ``Lap``."""
    floats = [v.name for v in variables if v.type in (VarType.FLOAT, VarType.DOUBLE)]
    return {"compression": "zstd", "use_dictionary": False, "use_byte_stream_split": floats,
            "write_statistics": ["SessionTime", "Lap"]}


def _write_parquet(tf: TelemetryFile, start: int, stop: int, schema: pa.Schema, dest: Path) -> None:
    """Rows ``start:stop`` as one session file, one row group per :data:`ROW_GROUP_ROWS` rows.

    The next row group is read (in a helper thread) while the current one is written; the
    file is written as ``.<name>.part`` and renamed into place only when complete.
    """
    tmp = dest.with_name(f".{dest.name}.part")

    def batch(a: int) -> pa.RecordBatch:
        return record_batch(tf.variables, tf.read(None, a, min(a + ROW_GROUP_ROWS, stop)), schema)

    starts = range(start, stop, ROW_GROUP_ROWS)
    try:
        with ThreadPoolExecutor(1) as reader, pq.ParquetWriter(tmp, schema, **parquet_options(tf.variables)) as w:
            ahead = reader.submit(batch, starts[0]) if starts else None
            for i in range(len(starts)):
                current = ahead.result()
                ahead = reader.submit(batch, starts[i + 1]) if i + 1 < len(starts) else None
                w.write_batch(current, row_group_size=ROW_GROUP_ROWS)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{dest}: cannot write session file: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def import_file(path: str | os.PathLike[str], data: str | os.PathLike[str], *, source_name: str | None = None,
                source_kind: str | None = None) -> ImportResult:
    """Import one ``.ibt`` (or live dump) into the store; idempotent.

    Raises :class:`IbtFormatError` for a damaged file and :class:`StoreError` when the store
    cannot be written. A file whose last rows are missing imports its complete rows,
    warns (:class:`TruncatedWarning`) and is marked truncated. ``source_name`` and
    ``source_kind`` replace the file's name and kind in the metadata (for an ``.ibt`` made
    from another tool's export, e.g. ``"lap4.csv"``, ``"csv"``).
    """
    src = Path(path)
    data = Path(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncatedWarning)
        tf = open_telemetry(src)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    with tf, ThreadPoolExecutor(1) as pool:
        hashing = pool.submit(sha256_file, src)  # hashlib and file reads release the GIL
        info = tf.session_info
        if tf.n_rows == 0:
            raise IbtFormatError(src, "rows", "at least one complete row", "0 rows")
        small = _lap_inputs(tf)
        t = small["SessionTime"]
        result = ImportResult(src, "present", truncated=tf.truncated)
        ranges = _session_ranges(small.get("SessionNum"), tf.n_rows)
        if len(ranges) > MAX_SESSIONS_PER_FILE:
            raise IbtFormatError(src, "channel SessionNum", f"at most {MAX_SESSIONS_PER_FILE} runs of one session number",
                                 f"{len(ranges)} runs")
        tables = [lap_table({k: v[a:b] for k, v in small.items()}, tf.tick_rate) for a, b, _ in ranges]
        sha = hashing.result()  # the lap tables were built while the hash finished
        for (a, b, num), laps in zip(ranges, tables, strict=True):
            base = session_meta(tf, info, num)
            start = _start_time(tf, t, a)
            sid = f"{start:%Y%m%d-%H%M%S}-{sha[:8]}-{num}"
            dest = data / f"track={slug(base['track'])}" / f"car={slug(base['car'])}" / f"{sid}.parquet"
            result.sessions.append(sid)
            if dest.exists():
                continue
            complete = laps[laps.valid]
            meta = {
                "schema_version": SCHEMA_VERSION, "id": sid, **base,
                "start": start.isoformat(), "tick_rate": tf.tick_rate, "samples": b - a,
                "truncated": tf.truncated, "source_name": source_name or src.name, "source_sha256": sha,
                "source_kind": source_kind or tf.kind, "source_rows": [a, b], "row_group_rows": ROW_GROUP_ROWS,
                "laps": int(laps.complete.sum()), "valid_laps": int(len(complete)),
                "best_lap_s": float(complete.time_s.min()) if len(complete) else None,
                "lap_table": json.loads(laps.to_json(orient="records")), "lap_table_version": LAP_TABLE_VERSION,
                "units": {v.name: v.unit for v in tf.variables},
                "session_yaml": tf.session_info_text,
            }
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{dest.parent}: cannot create folder: {exc.strerror or exc}") from None
            _write_parquet(tf, a, b, arrow_schema(tf.variables, meta), dest)
            result.status = "imported"
            result.written.append(dest)
    return result


def iter_sources(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files named, and ``.ibt`` files below folders named (recursively, sorted)."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.suffix.lower() == ".ibt" and q.is_file())
        else:
            yield p


def import_paths(paths: Iterable[str | os.PathLike[str]], data: str | os.PathLike[str], progress: bool = False,
                 after_store: Callable[..., object] | None = None) -> list[ImportResult]:
    """Import every file; a failure is recorded and the other files still import.

    ``after_store(data, written, progress=progress)`` is called once every session file is
    safely in place, with the files this run wrote: ``pitbox import`` passes
    :func:`pitbox.team.index.index_after_store`, which adds them to the team index and never
    raises (the store stays below the team archive: it imports nothing from it).
    """
    sources = list(iter_sources(paths))
    if progress:
        from tqdm import tqdm

        sources_iter: Iterable[Path] = tqdm(sources, unit="file", desc="import")
    else:
        sources_iter = sources
    out = []
    for src in sources_iter:
        try:
            out.append(import_file(src, data))
        except (PitboxError, OSError) as exc:
            out.append(ImportResult(src, "failed", error=str(exc)))
    if any(r.status == "imported" for r in out):
        Store(data).refresh()
    written = [p for r in out for p in r.written]
    if after_store is not None and written:
        after_store(data, written, progress=progress)
    return out


# -- reading the store -----------------------------------------------------------------

def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``pitbox`` metadata of one session file (reads the footer only)."""
    try:
        md = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise StoreError(f"{path}: not a readable Parquet session file: {exc}") from None
    if META_KEY not in md:
        raise StoreError(f"{path}: no 'pitbox' metadata: expected a file written by pitbox import")
    meta = json.loads(md[META_KEY])
    if meta.get("schema_version", 0) > SCHEMA_VERSION:
        raise StoreError(f"{path}: schema_version {meta['schema_version']}: expected {SCHEMA_VERSION} or older; upgrade pitbox")
    return meta


def stored_lap_table(path: str | os.PathLike[str], meta: dict[str, Any]) -> pd.DataFrame:
    """A session file's lap table: the one in its footer, or, when the footer's was built by
    older rules (``lap_table_version`` below :data:`pitbox.laps.LAP_TABLE_VERSION`), rebuilt
    from the file's lap channels (the file itself is never rewritten)."""
    table = pd.DataFrame(meta.get("lap_table") or [], columns=LAP_COLUMNS)
    if int(meta.get("lap_table_version") or 1) < LAP_TABLE_VERSION and len(table):
        pf = pq.ParquetFile(path)
        fields = {f.name: f for f in pf.schema_arrow}
        names = [n for n in LAP_CHANNELS if n in fields and not pa.types.is_fixed_size_list(fields[n].type)]
        if {"SessionTime", "Lap", "LapDistPct"} <= set(names):
            cols = pf.read(columns=names)
            table = lap_table({n: cols.column(n).to_numpy() for n in names}, float(meta.get("tick_rate") or 60))
            log.info("%s: lap table rebuilt (stored by lap-table rules version %s, now %s)", path,
                     meta.get("lap_table_version") or 1, LAP_TABLE_VERSION)
    return table.astype({"time_s": "float64", "iracing_time_s": "float64"})


def _catalogue_row(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    row = {k: meta.get(k) for k in CATALOGUE_COLUMNS if k != "path"}
    if int(meta.get("lap_table_version") or 1) < LAP_TABLE_VERSION and meta.get("lap_table"):
        laps = stored_lap_table(path, meta)
        valid = laps[laps.valid.astype(bool)]
        row.update(laps=int(laps.complete.sum()), valid_laps=len(valid),
                   best_lap_s=float(valid.time_s.min()) if len(valid) else None)
    return row


CATALOGUE_COLUMNS = ["id", "track", "car", "driver", "session_type", "start", "samples", "laps",
                     "valid_laps", "best_lap_s", "truncated", "simulated", "source_name", "path"]


class Store:
    """A PitBox data folder. ``Store(data).sessions()`` lists what it holds."""

    def __init__(self, data: str | os.PathLike[str] | None = None):
        from pitbox.config import data_dir

        self.root = data_dir(data)

    def files(self) -> list[Path]:
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.rglob("*.parquet") if not any(part.startswith((".", "_")) for part in p.relative_to(self.root).parts))

    def _load_cache(self) -> dict[str, Any]:
        """The cached catalogue: ``{relative path: {"stamp": [size, mtime_ns], "row": {...}}}``;
        whatever else the file holds (damaged, hand-edited) is dropped and rebuilt."""
        try:
            cache = json.loads((self.root / CATALOGUE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(cache, dict):
            return {}
        return {k: v for k, v in cache.items() if isinstance(v, dict) and isinstance(v.get("row"), dict)}

    def refresh(self) -> pd.DataFrame:
        """Rebuild the catalogue from the file footers (reusing entries whose file is unchanged)."""
        cache = self._load_cache()
        entries: dict[str, Any] = {}
        for p in self.files():
            rel = p.relative_to(self.root).as_posix()
            st = p.stat()
            stamp = [st.st_size, st.st_mtime_ns]
            hit = cache.get(rel)
            if hit is not None and hit.get("stamp") == stamp:
                entries[rel] = hit
                continue
            try:
                meta = read_meta(p)
            except StoreError as exc:
                log.warning("skipping %s", exc)
                continue
            entries[rel] = {"stamp": stamp, "row": _catalogue_row(p, meta)}
        if entries != cache and self.root.exists():
            tmp = self.root / f".{CATALOGUE_NAME}.part"
            try:
                tmp.write_text(json.dumps(entries), encoding="utf-8")
                os.replace(tmp, self.root / CATALOGUE_NAME)
            except OSError as exc:  # a read-only store still lists its sessions
                log.info("catalogue not cached: %s", exc)
        rows = [{**e["row"], "path": str(self.root / rel)} for rel, e in entries.items()]
        df = pd.DataFrame(rows, columns=CATALOGUE_COLUMNS)
        return df.sort_values(["start", "id"], ignore_index=True)

    def sessions(self) -> pd.DataFrame:
        """One row per session: id, track, car, driver, start, samples, laps, best_lap_s, …"""
        return self.refresh()

    def resolve(self, session: str | os.PathLike[str]) -> Path:
        """A session id, a unique id prefix, or a path to a session file."""
        p = Path(session)
        if p.suffix == ".parquet" and p.is_file():
            return p
        cat = self.sessions()
        exact = cat[cat.id == str(session)]
        hits = exact if len(exact) else cat[cat.id.str.startswith(str(session))]
        if len(hits) == 1:
            return Path(hits.path.iloc[0])
        if len(hits) == 0:
            raise SessionNotFound(f"no session {str(session)!r} in {self.root}: expected an id or id prefix from 'pitbox sessions'")
        raise SessionNotFound(f"{str(session)!r} matches {len(hits)} sessions in {self.root}: give more of the id")

    def meta(self, session: str | os.PathLike[str]) -> dict[str, Any]:
        return read_meta(self.resolve(session))

    def laps(self, session: str | os.PathLike[str]) -> pd.DataFrame:
        """The session's lap table (from the footer; no rows read unless it was stored by
        older lap-table rules, see :func:`stored_lap_table`)."""
        path = self.resolve(session)
        return stored_lap_table(path, read_meta(path))

    def read(self, session: str | os.PathLike[str], columns: Sequence[str] | None = None,
             rows: tuple[int, int] | None = None) -> pd.DataFrame:
        """Channels of a session as a DataFrame (array channels as numpy arrays per cell).

        ``rows=(start, stop)`` reads only the row groups that hold those rows.
        """
        path = self.resolve(session)
        pf = pq.ParquetFile(path)
        if columns is not None:
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise MissingChannel(path, missing[0])
        if rows is None:
            table = pf.read(columns=columns)
        else:
            a, b = rows
            per = pf.metadata.row_group(0).num_rows if pf.metadata.num_row_groups else 1
            groups = list(range(a // per, min(-(-b // per), pf.metadata.num_row_groups)))
            table = pf.read_row_groups(groups, columns=columns).slice(a - groups[0] * per if groups else 0, b - a)
        return table.to_pandas()

    def read_lap(self, session: str | os.PathLike[str], lap_index: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        laps = self.laps(session)
        hit = laps[laps.lap_index == lap_index]
        if hit.empty:
            raise LapNotFound(f"session {session}: no lap_index {lap_index}: expected 0..{len(laps) - 1}")
        r = hit.iloc[0]
        return self.read(session, columns, rows=(int(r.start_row), int(r.end_row)))


__all__ = ["ImportResult", "IbtFormatError", "Store", "import_file", "import_paths", "read_meta", "slug",
           "stored_lap_table"]
