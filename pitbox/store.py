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

import base64
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
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pitbox.digest import FileDigests, iter_sources
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
from pitbox.ibt.reader import TelemetryFile, open_telemetry
from pitbox.laps import LAP_COLUMNS, LAP_TABLE_VERSION, lap_records, lap_rows, lap_table

if TYPE_CHECKING:
    import pandas as pd

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
    """One channel as an Arrow array: fixed-size lists for arrays, types preserved.

    Built from the numpy buffer itself (``Array.from_buffers``, no copy except the bit packing
    of bools): ``pa.array`` would do the same but first asks whether the values come from
    pandas, which imports pandas (~0.5 s), and the import path never needs it."""
    flat = np.ascontiguousarray(values).reshape(-1)
    elem = v.arrow_type.value_type if v.count > 1 else v.arrow_type
    if elem == pa.bool_():
        data = pa.py_buffer(np.packbits(flat.view(np.uint8) != 0, bitorder="little"))
    else:
        data = pa.py_buffer(flat)
    arr = pa.Array.from_buffers(elem, len(flat), [None, data])
    return pa.FixedSizeListArray.from_arrays(arr, v.count) if v.count > 1 else arr


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


def lap_channel_names(tf: TelemetryFile) -> list[str]:
    """The channels the lap table and the session split read (``SessionTime`` [s],
    ``LapDistPct`` [0-1], ``Speed`` [m/s] …), each checked to be a scalar of the type iRacing
    gives it; :class:`IbtFormatError` when one of the first three is missing or any is not."""
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
    return names


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


class SessionFileWriter:
    """One session file written before its metadata is known.

    The rows go to ``.<stem>.parquet.part`` beside the final name as they are decoded; the
    ``pitbox`` metadata (which holds the source's sha256 and the lap table, known only once
    every row was seen) is added to the footer when the file is finished, together with the
    Arrow schema that carries it (``ARROW:schema``, the key under which pyarrow keeps the
    schema). The file is byte for byte the one that ``ParquetWriter(path, schema_with_meta)``
    writes (tested), and :meth:`publish` renames it into place.
    """

    def __init__(self, folder: Path, stem: str, variables: Sequence[VarHeader], schema: pa.Schema):
        self.tmp = folder / f".{stem}.parquet.part"
        self.schema = schema
        self.finished = False
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.tmp, schema, **parquet_options(variables))
        except OSError as exc:
            raise StoreError(f"{self.tmp}: cannot write session file: {exc.strerror or exc}") from None

    def write(self, batch: pa.RecordBatch) -> None:
        assert self._writer is not None
        try:
            self._writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
        except OSError as exc:
            self.abort()
            raise StoreError(f"{self.tmp}: cannot write session file: {exc.strerror or exc}") from None

    def finish(self, meta: dict[str, Any]) -> None:
        """Add the ``pitbox`` metadata to the footer and close the file (still the ``.part``)."""
        assert self._writer is not None
        full = self.schema.with_metadata({META_KEY: json.dumps(meta, default=str).encode()})
        md = full.metadata
        try:
            self._writer.add_key_value_metadata(
                {META_KEY: md[META_KEY], b"ARROW:schema": base64.b64encode(full.serialize().to_pybytes())})
            self._writer.close()
        except OSError as exc:
            self.abort()
            raise StoreError(f"{self.tmp}: cannot write session file: {exc.strerror or exc}") from None
        self._writer = None
        self.finished = True

    def publish(self, dest: Path) -> None:
        """Rename the finished file to ``dest`` (raises :class:`StoreError`)."""
        try:
            os.replace(self.tmp, dest)
        except OSError as exc:
            self.abort()
            raise StoreError(f"{dest}: cannot write session file: {exc.strerror or exc}") from None

    def abort(self) -> None:
        """Close and remove the part file (never raises)."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the file is removed anyway
                pass
            self._writer = None
        self.tmp.unlink(missing_ok=True)


@dataclass
class _Block:
    """Rows ``start:stop`` of one run of ``SessionNum``, decoded, as one row group."""

    start: int
    stop: int
    num: int
    first: bool  #: the first block of its session
    last: bool  #: the last block of its session
    batch: pa.RecordBatch
    lap_cols: dict[str, np.ndarray]


def _blocks(tf: TelemetryFile, schema: pa.Schema, lap_names: Sequence[str]) -> Iterator[_Block]:
    """The file's rows in session order: one block per :data:`ROW_GROUP_ROWS` rows counted
    from each session's first row (the row groups of its file), a session being one run of
    ``SessionNum`` (the whole file when the channel is missing)."""
    n = tf.n_rows
    dec = tf.decoder()
    has_num = "SessionNum" in lap_names
    pos, session_start, num = 0, 0, None
    while pos < n:
        stop = min(pos + ROW_GROUP_ROWS - (pos - session_start) % ROW_GROUP_ROWS, n)
        rows = tf.read_rows(pos, stop)
        stop = pos + len(rows)
        if stop <= pos:
            return
        first = num is None
        if first:
            num = int(rows["SessionNum"][0]) if has_num else 0
        last = stop >= n
        if has_num:
            change = np.flatnonzero(rows["SessionNum"] != num)
            if len(change):
                rows, stop, last = rows[: change[0]], pos + int(change[0]), True
        cols = dec.decode(rows)
        yield _Block(pos, stop, int(num), first, last, record_batch(tf.variables, cols, schema),
                     {k: np.array(cols[k]) for k in lap_names})  # copies: a column may be a view of a channel group
        pos = stop
        if last:
            session_start, num = pos, None


def _concat(parts: list[dict[str, np.ndarray]], names: Sequence[str]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in names}


def import_file(path: str | os.PathLike[str], data: str | os.PathLike[str], digests: FileDigests | None = None, *,
                source_name: str | None = None, source_kind: str | None = None) -> ImportResult:
    """Import one ``.ibt`` (or live dump) into the store; idempotent.

    Raises :class:`IbtFormatError` for a damaged file and :class:`StoreError` when the store
    cannot be written. A file whose last rows are missing imports its complete rows,
    warns (:class:`TruncatedWarning`) and is marked truncated. ``digests``: a
    :class:`~pitbox.digest.FileDigests` already hashing ``path`` (else hashing starts now).
    ``source_name`` and ``source_kind`` replace the file's name and kind in the metadata (for
    an ``.ibt`` made from another tool's export, e.g. ``"lap4.csv"``, ``"csv"``).

    How it is fast (docs/store.md): the file is read once, in row groups, each decoded in a
    helper thread while the one before is written; the sha256 is computed in another thread
    meanwhile; the lap table comes from the decoded row groups and the metadata goes into the
    footer when the file is finished, so nothing waits for the hash or the lap table before
    the write starts. Session files are renamed into place only once the whole source was read.
    """
    src = Path(path)
    data = Path(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncatedWarning)
        tf = open_telemetry(src)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    if digests is None:
        digests = FileDigests([src])
    with tf:
        if tf.n_rows == 0:
            raise IbtFormatError(src, "rows", "at least one complete row", "0 rows")
        lap_names = lap_channel_names(tf)
        schema = arrow_schema(tf.variables)
        result = ImportResult(src, "present", truncated=tf.truncated)
        done: list[tuple[SessionFileWriter, Path]] = []
        writer: SessionFileWriter | None = None
        try:
            with ThreadPoolExecutor(2) as pool:
                blocks = _blocks(tf, schema, lap_names)
                ahead = pool.submit(next, blocks, None)  # decoded in a helper thread while the one before is written
                info = tf.session_info
                times: list[np.ndarray] = []  # SessionTime of the rows seen, for the start times
                sessions = 0
                parts: list[dict[str, np.ndarray]] = []
                laps = None
                open_session = False
                while (block := ahead.result()) is not None:
                    ahead = pool.submit(next, blocks, None)
                    if block.first:
                        sessions += 1
                        if sessions > MAX_SESSIONS_PER_FILE:
                            raise IbtFormatError(src, "channel SessionNum",
                                                 f"at most {MAX_SESSIONS_PER_FILE} runs of one session number",
                                                 "more runs")
                        base = session_meta(tf, info, block.num)
                        start = _start_time(tf, np.concatenate([*times, block.lap_cols["SessionTime"][:1]]), block.start)
                        folder = data / f"track={slug(base['track'])}" / f"car={slug(base['car'])}"
                        stem = f"{start:%Y%m%d-%H%M%S}"
                        first_row = block.start
                        writer = None
                        if not _maybe_present(folder, stem, block.num, src, digests, result):
                            # the part file's name is this process's and this run's own (a file may hold the
                            # same session number twice; another process may import the same file)
                            writer = SessionFileWriter(folder, f"{stem}-{block.num}-{block.start}-{os.getpid()}",
                                                       tf.variables, schema)
                        parts = []
                        open_session = True
                    parts.append(block.lap_cols)
                    times.append(block.lap_cols["SessionTime"])
                    if block.last:  # the lap table is built while the last row group is written
                        laps = pool.submit(lambda p=parts: lap_rows(_concat(p, lap_names), tf.tick_rate))
                    if writer is not None:
                        writer.write(block.batch)
                    if not block.last:
                        continue
                    assert laps is not None
                    open_session = False
                    rows = laps.result()
                    sha = digests.get(src)
                    sid = f"{stem}-{sha[:8]}-{block.num}"
                    dest = folder / f"{sid}.parquet"
                    if sid in result.sessions:  # a session number seen again in the same second: stored once
                        if writer is not None:
                            writer.abort()
                            writer = None
                        continue
                    result.sessions.append(sid)
                    if writer is None:
                        continue
                    if dest.exists():  # imported meanwhile by another process
                        writer.abort()
                        writer = None
                        continue
                    writer.finish(_session_file_meta(tf, src, base, sid, start, sha, first_row, block.stop, rows,
                                                     source_name, source_kind))
                    done.append((writer, dest))
                    writer = None
                if open_session:
                    raise IbtFormatError(src, "rows", f"{tf.n_rows} complete rows", "fewer (the file shrank while it was read)")
            for w, dest in done:
                w.publish(dest)
                result.status = "imported"
                result.written.append(dest)
        except BaseException:
            if writer is not None:
                writer.abort()
            for w, _ in done:
                if w.tmp.exists():
                    w.abort()
            raise
    return result


def _maybe_present(folder: Path, stem: str, num: int, src: Path, digests: FileDigests, result: ImportResult) -> bool:
    """Whether this session of ``src`` is in the store already. A session file starting at
    the same second is looked for first, so that the hash is waited for only then."""
    if not any(folder.glob(f"{stem}-*-{num}.parquet")):
        return False
    return (folder / f"{stem}-{digests.get(src)[:8]}-{num}.parquet").exists()


def _session_file_meta(tf: TelemetryFile, src: Path, base: dict[str, Any], sid: str, start: datetime, sha: str,
                       a: int, b: int, rows: list[dict[str, Any]], source_name: str | None = None,
                       source_kind: str | None = None) -> dict[str, Any]:
    """The ``pitbox`` footer metadata of one imported session (rows ``a:b`` of ``tf``)."""
    valid = [r["time_s"] for r in rows if r["valid"]]
    return {
        "schema_version": SCHEMA_VERSION, "id": sid, **base,
        "start": start.isoformat(), "tick_rate": tf.tick_rate, "samples": b - a,
        "truncated": tf.truncated, "source_name": source_name or src.name, "source_sha256": sha,
        "source_kind": source_kind or tf.kind, "source_rows": [a, b], "row_group_rows": ROW_GROUP_ROWS,
        "laps": sum(bool(r["complete"]) for r in rows), "valid_laps": len(valid),
        "best_lap_s": _nanmin(valid),
        "lap_table": lap_records(rows), "lap_table_version": LAP_TABLE_VERSION,
        "units": {v.name: v.unit for v in tf.variables},
        "session_yaml": tf.session_info_text,
    }


def _nanmin(values: list[float | None]) -> float | None:
    """The smallest value as pandas' ``min`` of the column gives it: None and NaN skipped,
    NaN when nothing is left, None when there are no values."""
    if not values:
        return None
    finite = [v for v in values if v is not None and v == v]
    return float(min(finite)) if finite else float("nan")


def import_paths(paths: Iterable[str | os.PathLike[str]], data: str | os.PathLike[str], progress: bool = False,
                 digests: FileDigests | None = None,
                 after_store: Callable[..., object] | None = None) -> list[ImportResult]:
    """Import every file; a failure is recorded and the other files still import.

    ``digests``: a :class:`~pitbox.digest.FileDigests` already hashing the sources (the CLI
    starts one before it loads numpy and pyarrow); else one is started here.
    ``after_store(data, written, progress=progress)`` is called once every session file is
    safely in place, with the files this run wrote: ``pitbox import`` passes
    :func:`pitbox.team.index.index_after_store`, which adds them to the team index and never
    raises (the store stays below the team archive: it imports nothing from it)."""
    sources = iter_sources(paths)
    if digests is None:
        digests = FileDigests(sources)
    if progress:
        from tqdm import tqdm

        sources_iter: Iterable[Path] = tqdm(sources, unit="file", desc="import")
    else:
        sources_iter = sources
    out = []
    for src in sources_iter:
        try:
            out.append(import_file(src, data, digests))
        except (PitboxError, OSError) as exc:
            out.append(ImportResult(src, "failed", error=str(exc)))
    if any(r.status == "imported" for r in out):
        Store(data).update_catalogue()
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
    import pandas as pd

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
        """Rebuild the catalogue from the file footers (reusing entries whose file is
        unchanged) and return it, one row per session, sorted by start."""
        import pandas as pd

        df = pd.DataFrame(self.update_catalogue(), columns=CATALOGUE_COLUMNS)
        return df.sort_values(["start", "id"], ignore_index=True)

    def update_catalogue(self) -> list[dict[str, Any]]:
        """Bring the cached catalogue (``_catalogue.json``) up to date with the session files,
        reading only the footers of files that changed; returns its rows (pandas-free: the
        import calls it)."""
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
        return [{**e["row"], "path": str(self.root / rel)} for rel, e in entries.items()]

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
