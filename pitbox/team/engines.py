"""The two engines the team questions run on: DuckDB (embedded, default) and Dask.

Both run the same three kinds of scan over a list of index files, so a question is written
once (:meth:`Engine.run` takes several; Dask computes them in one go):

* :func:`frame`: the rows that pass ``where``, only ``columns`` (projection);
* :func:`agg`: ``GROUP BY keys`` with ``min``, ``max``, ``count``, ``true`` (how many rows are
  true), ``mean``, ``median`` and ``std`` (sample standard deviation);
* :func:`first`: per group, the first row in an order (the best lap and who drove it).

``where`` is a list of ``(column, op, value)`` with op ``==``, ``!=``, ``<``, ``<=``, ``>``,
``>=`` or ``in``; DuckDB gets it as SQL with parameters, Dask as pyarrow ``filters`` (pushed
down to the row groups). Partition pruning happens before either engine sees a file: the
question lists only the ``track=…/car=…`` folders it needs. Both engines read ``track`` and
``car`` from those folder names as strings (DuckDB ``hive_types_autocast = false``, Dask a
string partitioning schema), so ``car=0123`` stays ``"0123"`` and a date-like track stays text.

A file that an engine cannot read (damaged, or a foreign file with the wrong columns) is
found by reading each file with pyarrow, reported (``log.warning`` and ``skipped``), and left
out; the scan then runs again on the rest.

Nothing here is imported at CLI start-up; DuckDB and Dask are imported when an engine is made.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pitbox.team.errors import TeamError

log = logging.getLogger(__name__)

Where = Sequence[tuple[str, str, Any]]
Aggs = dict[str, tuple[str, str]]

_SQL_OPS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "in": "IN"}
_SQL_AGGS = {"min": "min({})", "max": "max({})", "count": "count({})", "mean": "avg({})",
             "median": "median({})", "std": "stddev_samp({})", "true": "CAST(count_if({}) AS BIGINT)"}
_DASK_AGGS = {"min": "min", "max": "max", "count": "count", "mean": "mean", "median": "median",
              "std": "std", "true": "sum"}


def _check(where: Where, aggs: Aggs | None = None) -> None:
    for col, op, _ in where:
        if op not in _SQL_OPS:
            raise TeamError(f"filter on {col!r}: operator {op!r}: expected one of {', '.join(_SQL_OPS)}")
    for out, (_, func) in (aggs or {}).items():
        if func not in _SQL_AGGS:
            raise TeamError(f"aggregate {out!r}: function {func!r}: expected one of {', '.join(_SQL_AGGS)}")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Scan:
    """One scan of a question: ``frame`` (rows and columns), ``agg`` (grouped aggregates) or
    ``first`` (the first row of each group in ``order``)."""

    kind: str
    keys: tuple[str, ...] = ()
    aggs: tuple[tuple[str, str, str], ...] = ()  #: (output, column, function)
    order: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    where: tuple[tuple[str, str, Any], ...] = ()

    @property
    def out(self) -> list[str]:
        if self.kind == "agg":
            return [*self.keys, *(o for o, _, _ in self.aggs)]
        if self.kind == "first":
            return list(dict.fromkeys([*self.keys, *self.order, *self.columns]))
        return list(dict.fromkeys(self.columns))

    @property
    def needed(self) -> list[str]:
        """The columns this scan reads from the files."""
        cols = [*self.keys, *(c for _, c, _ in self.aggs)] if self.kind == "agg" else self.out
        return list(dict.fromkeys([*cols, *(c for c, _, _ in self.where)]))


def frame(columns: Sequence[str], where: Where = ()) -> Scan:
    """The rows that pass ``where``, only ``columns``."""
    _check(where)
    return Scan("frame", columns=tuple(columns), where=tuple(where))


def agg(keys: Sequence[str], aggs: Aggs, where: Where = ()) -> Scan:
    """``GROUP BY keys`` with ``{output: (column, function)}``."""
    _check(where, aggs)
    return Scan("agg", keys=tuple(keys), aggs=tuple((o, c, f) for o, (c, f) in aggs.items()), where=tuple(where))


def first(keys: Sequence[str], order: Sequence[str], columns: Sequence[str], where: Where = ()) -> Scan:
    """Per group of ``keys``, the row that comes first in ``order`` (ascending, nulls last)."""
    _check(where)
    return Scan("first", keys=tuple(keys), order=tuple(order), columns=tuple(columns), where=tuple(where))


class Engine:
    """Base: file bookkeeping and the retry without unreadable files."""

    name = "?"

    def __init__(self, filesystem: Any = None):
        self.fs = filesystem  #: an fsspec filesystem for URLs, None for local paths
        self.skipped: dict[str, str] = {}

    def _scan(self, files: list[str], scans: list[Scan]) -> list[pd.DataFrame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def run(self, files: Sequence[str], *scans: Scan) -> list[pd.DataFrame]:
        """Every scan over ``files``, one frame each (on Dask, computed together)."""
        files = [f for f in files if f not in self.skipped]
        empty = [pd.DataFrame(columns=s.out) for s in scans]
        if not files:
            return empty
        try:
            return self._scan(files, list(scans))
        except Exception as exc:  # noqa: BLE001 - find the file the engine could not read
            needed = list(dict.fromkeys(c for s in scans for c in s.needed))
            bad = self._find_unreadable(files, needed)
            if not bad:
                raise TeamError(f"{self.name}: the query failed: {type(exc).__name__}: {exc}") from exc
            good = [f for f in files if f not in bad]
            return empty if not good else self._scan(good, list(scans))

    def _find_unreadable(self, files: list[str], columns: list[str]) -> set[str]:
        import pyarrow.parquet as pq

        from pitbox.team.index import PARTITION_KEYS

        columns = [c for c in columns if c not in PARTITION_KEYS]
        bad = set()
        for f in files:
            try:
                pq.read_table(f, columns=columns, filesystem=self.fs)
            except Exception as exc:  # noqa: BLE001 - any reason a file cannot be read is reported
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("skipping %s: not a readable index file: %s", f, reason)
                self.skipped[f] = reason
                bad.add(f)
        return bad


_DUCKDB: dict[Any, Any] = {}


def _duckdb(filesystem: Any) -> Any:
    """One in-memory DuckDB database per process (and per fsspec filesystem): opening one
    costs ~70 ms, a cursor on it almost nothing."""
    import duckdb

    key = None if filesystem is None else id(filesystem)
    db = _DUCKDB.get(key)
    if db is None:
        db = duckdb.connect()
        if filesystem is not None:
            db.register_filesystem(filesystem)
        _DUCKDB[key] = db
    return db


class DuckDBEngine(Engine):
    """DuckDB, embedded: a cursor (its own connection) per question on the process' database."""

    name = "duckdb"

    def __init__(self, filesystem: Any = None):
        super().__init__(filesystem)
        self.con = _duckdb(filesystem).cursor()

    def close(self) -> None:
        self.con.close()

    def _source(self, files: list[str]) -> str:
        paths = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        return f"read_parquet([{paths}], hive_partitioning = true, hive_types_autocast = false)"

    @staticmethod
    def _where(where: Where) -> tuple[str, list[Any]]:
        parts, params = [], []
        for col, op, value in where:
            if op == "in":
                values = list(value)
                parts.append(f"{_q(col)} IN ({', '.join('?' * len(values))})" if values else "FALSE")
                params.extend(values)
            else:
                parts.append(f"{_q(col)} {_SQL_OPS[op]} ?")
                params.append(value)
        return (" WHERE " + " AND ".join(parts)) if parts else "", params

    def _df(self, sql: str, params: list[Any]) -> pd.DataFrame:
        return self.con.execute(sql, params).df()  # .df() reads the whole result (no open cursor left)

    def _scan(self, files: list[str], scans: list[Scan]) -> list[pd.DataFrame]:
        return [self._df(*self._sql(files, sc)) for sc in scans]

    def _sql(self, files: list[str], sc: Scan) -> tuple[str, list[Any]]:
        w, params = self._where(sc.where)
        src = self._source(files)
        if sc.kind == "frame":
            return f"SELECT {', '.join(map(_q, sc.out))} FROM {src}{w}", params
        if sc.kind == "agg":
            sel = [*map(_q, sc.keys), *(f"{_SQL_AGGS[f].format(_q(c))} AS {_q(o)}" for o, c, f in sc.aggs)]
            group = f" GROUP BY {', '.join(map(_q, sc.keys))}" if sc.keys else ""
            return f"SELECT {', '.join(sel)} FROM {src}{w}{group}", params
        part = f"PARTITION BY {', '.join(map(_q, sc.keys))} " if sc.keys else ""
        order = ", ".join(_q(c) + " ASC NULLS LAST" for c in sc.order)
        return (f"SELECT {', '.join(map(_q, sc.out))} FROM (SELECT *, row_number() OVER ({part}ORDER BY {order}) "
                f"AS _rn FROM {src}{w}) WHERE _rn = 1"), params


_CLIENTS: dict[str, Any] = {}


def dask_client(scheduler: Any) -> Any:
    """A ``distributed.Client`` for a scheduler address (kept for the next question), a Client
    given as it is, or None (Dask's local threads)."""
    if scheduler is None:
        return None
    if not isinstance(scheduler, str):
        return scheduler
    client = _CLIENTS.get(scheduler)
    if client is None or client.status not in ("running", "connecting"):
        try:
            from distributed import Client
        except ImportError:
            raise TeamError("--engine dask needs dask[distributed]: pip install 'pitbox[cluster]'") from None
        try:
            client = Client(scheduler, timeout=30, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise TeamError(f"--scheduler {scheduler}: cannot reach the Dask scheduler: {exc}") from None
        _CLIENTS[scheduler] = client
    return client


def close_clients() -> None:
    """Close the Dask clients opened for scheduler addresses (the CLI does this on exit)."""
    while _CLIENTS:
        _, client = _CLIENTS.popitem()
        try:
            client.close()
        except Exception as exc:  # noqa: BLE001 - a scheduler already gone
            log.info("closing the Dask client: %s", exc)


class DaskEngine(Engine):
    """Dask DataFrames, on a ``dask.distributed`` cluster (``scheduler``) or local threads."""

    name = "dask"

    def __init__(self, filesystem: Any = None, scheduler: Any = None):
        super().__init__(filesystem)
        try:
            import dask.dataframe  # noqa: F401
        except ImportError:
            raise TeamError("--engine dask needs dask: pip install 'pitbox[cluster]'") from None
        self.client = dask_client(scheduler)

    def _read(self, files: list[str], columns: list[str], where: Where) -> Any:
        import dask.dataframe as dd

        from pitbox.team.index import PARTITION_SCHEMA

        filters = [(c, "in" if op == "in" else op, list(v) if op == "in" else v) for c, op, v in where]
        kwargs: dict[str, Any] = {"filesystem": self.fs} if self.fs is not None else {}
        return dd.read_parquet(files, columns=list(dict.fromkeys(columns)), filters=filters or None,
                               dataset={"partitioning": {"flavor": "hive", "schema": PARTITION_SCHEMA}}, **kwargs)

    def _scan(self, files: list[str], scans: list[Scan]) -> list[pd.DataFrame]:
        import contextlib

        import dask

        # Without a client: local threads for everything, also the file-part gathering Dask does
        # while it builds the graph (else a distributed Client that is the process' default would
        # run it on its workers, which may not see this filesystem)
        local = dask.config.set(scheduler="threads") if self.client is None else contextlib.nullcontext()
        with local:
            return self._scan_graph(files, scans)

    def _scan_graph(self, files: list[str], scans: list[Scan]) -> list[pd.DataFrame]:
        from dask.dataframe.utils import make_meta

        lazy = []
        for sc in scans:
            cols = sc.out if sc.kind != "agg" else list(dict.fromkeys([*sc.keys, *(c for _, c, _ in sc.aggs)]))
            ddf = self._read(files, cols, sc.where)
            if sc.kind == "frame":
                lazy.append(ddf)
            elif sc.kind == "agg":
                spec = {o: (c, _DASK_AGGS[f]) for o, c, f in sc.aggs}
                if any(f == "median" for _, _, f in sc.aggs):
                    # a median needs every value of a group in one place: the filtered rows (small
                    # next to the sessions) go to one partition, grouped there by pandas, no shuffle
                    one = ddf.repartition(npartitions=1)
                    lazy.append(one.map_partitions(_grouped, list(sc.keys), spec))
                else:  # a tree reduction over the partitions
                    lazy.append(ddf.groupby(list(sc.keys), sort=False).agg(split_out=1, **spec))
            else:
                lazy.append(ddf.map_partitions(_first_rows, list(sc.keys), list(sc.order), meta=make_meta(ddf)))
        results = self._compute(lazy)
        out = []
        for sc, df in zip(scans, results, strict=True):
            if sc.kind == "agg" and not any(f == "median" for _, _, f in sc.aggs):
                df = df.reset_index()
            elif sc.kind == "first":
                df = _first_rows(df, list(sc.keys), list(sc.order))
            out.append(df.reset_index(drop=True))
        return out

    def _compute(self, lazy: list[Any]) -> list[pd.DataFrame]:
        if self.client is not None:
            return list(self.client.compute(lazy, sync=True))
        import dask

        with warnings.catch_warnings(), dask.config.set({"dataframe.shuffle.method": "tasks"}):
            # dask's parquet reader calls reset_index(inplace=True), which pandas 3.1 deprecates
            warnings.filterwarnings("ignore", message="The inplace keyword", module="pandas")
            warnings.filterwarnings("ignore", message="The inplace keyword", module="dask")
            return list(dask.compute(*lazy, scheduler="threads"))


def _grouped(df: pd.DataFrame, keys: list[str], spec: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """pandas ``groupby(keys).agg(**spec)`` with the keys as columns."""
    return df.groupby(keys, sort=False, observed=True).agg(**spec).reset_index()


def _first_rows(df: pd.DataFrame, keys: list[str], order: list[str]) -> pd.DataFrame:
    """The first row of each group in ``order`` (one partition, and again over them all)."""
    return df.sort_values(order, kind="stable", na_position="last").drop_duplicates(keys)


def make_engine(engine: str, filesystem: Any = None, scheduler: Any = None) -> Engine:
    """``"duckdb"`` or ``"dask"`` (``scheduler``: a ``tcp://host:8786`` address or a Client)."""
    if engine == "duckdb":
        if scheduler is not None:
            raise TeamError("--scheduler is for --engine dask; DuckDB runs embedded")
        return DuckDBEngine(filesystem)
    if engine == "dask":
        return DaskEngine(filesystem, scheduler)
    raise TeamError(f"engine {engine!r}: expected 'duckdb' or 'dask'")
