"""Where a session's channels come from: a Parquet file of the store, or an ``.ibt`` file.

Both give the same thing: session metadata, the parsed YAML, the lap table, channel units
and :meth:`Source.columns` returning plain numpy arrays (array channels reduced to one value
per row by :func:`pitbox.analysis.channels.as_scalar`). Columns are read once per session
and cached, so many laps of one session cost one read.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pitbox.analysis.channels import as_scalar
from pitbox.errors import MissingChannel, SessionNotFound, TruncatedWarning
from pitbox.ibt import session_yaml
from pitbox.laps import lap_table

log = logging.getLogger(__name__)


def parse_yaml_text(text: str) -> dict[str, Any]:
    """The session YAML text kept in the store, parsed with the reader's repairs."""
    sign = session_yaml.UTF8_SIGN.decode()
    raw = text.encode("utf-8") if text.startswith(sign) else text.encode("cp1252", errors="replace")
    return session_yaml.parse(raw)


class Source:
    """Channels, YAML and lap table of one session (abstract)."""

    id: str
    path: Path
    meta: dict[str, Any]
    info: dict[str, Any]
    laps: pd.DataFrame
    units: dict[str, str]
    kinds: dict[str, str]  #: channel -> "linear" or "step" (how to resample it)
    n_rows: int

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    @property
    def channel_names(self) -> list[str]:
        return list(self.units)

    def has(self, name: str) -> bool:
        return name in self.units

    def columns(self, names: Sequence[str], rows: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """Channels as 1-D numpy arrays, for all rows or ``rows=(start, stop)``.

        Raises :class:`MissingChannel` naming the session and the channel when one is missing.
        """
        missing = [n for n in names if n not in self.units]
        if missing:
            raise MissingChannel(f"{self.path} (session {self.id})", missing[0])
        todo = [n for n in dict.fromkeys(names) if n not in self._cache]
        if rows is not None and todo:  # a slice of channels not read yet: read only those rows
            a, b = max(rows[0], 0), min(rows[1], self.n_rows)
            part = {n: as_scalar(v, n) for n, v in self._read_rows(todo, a, b).items()}
            return {n: part[n] if n in part else self._cache[n][a:b] for n in names}
        if todo:
            for name, values in self._read(todo).items():
                self._cache[name] = as_scalar(values, name)
        if rows is None:
            return {n: self._cache[n] for n in names}
        a, b = max(rows[0], 0), min(rows[1], self.n_rows)
        return {n: self._cache[n][a:b] for n in names}

    def preload(self, names: Sequence[str]) -> None:
        """Read whole channels into the cache (many laps of one session then cost one read)."""
        self.columns([n for n in names if n in self.units])

    def _read(self, names: list[str]) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read_rows(self, names: list[str], a: int, b: int) -> dict[str, np.ndarray]:
        return {n: v[a:b] for n, v in self._read(names).items()}


def _kind(type_name: str) -> str:
    return "linear" if type_name in ("float", "double") else "step"


def _arrow_to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type):
        size = arr.type.list_size
        return arr.flatten().to_numpy(zero_copy_only=False).reshape(-1, size)
    return arr.to_numpy(zero_copy_only=False)


class StoreSource(Source):
    """A session file of the Parquet store."""

    def __init__(self, path: Path):
        from pitbox.store import read_meta, stored_lap_table

        super().__init__()
        self.path = Path(path)
        self.meta = read_meta(self.path)
        self.id = str(self.meta.get("id", self.path.stem))
        self._pf = pq.ParquetFile(self.path)
        schema = self._pf.schema_arrow
        self.units = {f.name: (f.metadata or {}).get(b"unit", b"").decode() for f in schema}
        self.kinds = {f.name: _kind((f.metadata or {}).get(b"irsdk_type", b"float").decode()) for f in schema}
        self.n_rows = self._pf.metadata.num_rows
        self.info = parse_yaml_text(self.meta.get("session_yaml", ""))
        self.laps = stored_lap_table(self.path, self.meta)

    def _read(self, names: list[str]) -> dict[str, np.ndarray]:
        table = self._pf.read(columns=names)
        return {n: _arrow_to_numpy(table.column(n)) for n in names}

    def _read_rows(self, names: list[str], a: int, b: int) -> dict[str, np.ndarray]:
        md = self._pf.metadata
        starts = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
        g0 = max(int(np.searchsorted(starts, a, "right")) - 1, 0)
        g1 = min(int(np.searchsorted(starts, b, "left")), md.num_row_groups)
        table = self._pf.read_row_groups(list(range(g0, max(g1, g0 + 1))), columns=names)
        table = table.slice(a - int(starts[g0]), b - a)
        return {n: _arrow_to_numpy(table.column(n)) for n in names}


def _ibt_ranges(tf: Any) -> list[tuple[int, int, int]]:
    """(start, stop, SessionNum) for each run of rows with one ``SessionNum``."""
    if "SessionNum" not in tf.channels or tf.n_rows == 0:
        return [(0, tf.n_rows, 0)]
    num = tf.read(["SessionNum"])["SessionNum"]
    edges = np.concatenate([[0], np.flatnonzero(np.diff(num) != 0) + 1, [len(num)]])
    return [(int(a), int(b), int(num[a])) for a, b in zip(edges[:-1], edges[1:], strict=True)]


class IbtSource(Source):
    """One session (one ``SessionNum``) of an ``.ibt`` file read directly, without importing it.

    ``session_num=None`` takes the session with the most complete laps.
    """

    def __init__(self, path: Path, session_num: int | None = None):
        from pitbox.ibt.reader import open_telemetry
        from pitbox.store import LAP_CHANNELS, session_meta

        super().__init__()
        self.path = Path(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncatedWarning)
            tf = open_telemetry(self.path)
        with tf:
            self.info = tf.session_info
            ranges = _ibt_ranges(tf)
            small_names = [c for c in LAP_CHANNELS if c in tf.channels]
            small = tf.read(small_names)
            best: tuple[int, int, int, pd.DataFrame] | None = None
            for a, b, num in ranges:
                if session_num is not None and num != session_num:
                    continue
                laps = lap_table({k: v[a:b] for k, v in small.items()}, tf.tick_rate)
                if best is None or int(laps.complete.sum()) > int(best[3].complete.sum()):
                    best = (a, b, num, laps)
            if best is None:
                raise SessionNotFound(f"{self.path}: no SessionNum {session_num}: expected one of {[r[2] for r in ranges]}")
            a, b, num, laps = best
            self._rows = (a, b)
            self.n_rows = b - a
            self.meta = {**session_meta(tf, self.info, num), "tick_rate": tf.tick_rate,
                         "source_name": self.path.name, "samples": b - a}
            self.id = f"{self.path.stem}#{num}" if len(ranges) > 1 else self.path.stem
            self.meta["id"] = self.id
            self.units = {v.name: v.unit for v in tf.variables}
            self.kinds = {v.name: _kind(v.type.name.lower()) for v in tf.variables}
            self.laps = laps

    def _read(self, names: list[str]) -> dict[str, np.ndarray]:
        return self._read_rows(names, 0, self.n_rows)

    def _read_rows(self, names: list[str], a: int, b: int) -> dict[str, np.ndarray]:
        from pitbox.ibt.reader import open_telemetry

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncatedWarning)
            tf = open_telemetry(self.path)
        with tf:
            return tf.read(names, self._rows[0] + a, self._rows[0] + b)


def open_source(session: str | os.PathLike[str], data: str | os.PathLike[str] | None = None,
                session_num: int | None = None) -> Source:
    """A store session (id, unique id prefix or ``.parquet`` path) or an ``.ibt`` file."""
    p = Path(session)
    if p.suffix.lower() == ".ibt":
        if not p.is_file():
            raise SessionNotFound(f"{p}: no such .ibt file")
        return IbtSource(p, session_num)
    from pitbox.store import Store

    return StoreSource(Store(data).resolve(session))
