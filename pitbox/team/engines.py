"""The two engines the team questions run on: DuckDB (embedded, default) and Dask.

Both offer the same three scans over a list of index files, so a question is written once:

* :meth:`Engine.frame`: the rows that pass ``where``, only ``columns`` (projection);
* :meth:`Engine.agg`: ``GROUP BY keys`` with ``min``, ``max``, ``count``, ``true`` (how many
  rows are true), ``mean``, ``median`` and ``std`` (sample standard deviation);
* :meth:`Engine.first`: per group, the first row in an order (the best lap and who drove it).

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


class Engine:
    """Base: file bookkeeping and the retry without unreadable files."""

    name = "?"

    def __init__(self, filesystem: Any = None):
        self.fs = filesystem  #: an fsspec filesystem for URLs, None for local paths
        self.skipped: dict[str, str] = {}

    # -- subclasses ---------------------------------------------------------------------------
    def _frame(self, files: list[str], columns: list[str], where: Where) -> pd.DataFrame:
        raise NotImplementedError

    def _agg(self, files: list[str], keys: list[str], aggs: Aggs, where: Where) -> pd.DataFrame:
        raise NotImplementedError

    def _first(self, files: list[str], keys: list[str], order: list[str], columns: list[str],
               where: Where) -> pd.DataFrame:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # -- public scans ------------------------------------------------------------------------------
    def frame(self, files: Sequence[str], columns: Sequence[str], where: Where = ()) -> pd.DataFrame:
        _check(where)
        cols = list(dict.fromkeys(columns))
        return self._run(files, cols + [c for c, _, _ in where], lambda fs: self._frame(fs, cols, where),
                         cols)

    def agg(self, files: Sequence[str], keys: Sequence[str], aggs: Aggs, where: Where = ()) -> pd.DataFrame:
        _check(where, aggs)
        needed = list(keys) + [c for c, _ in aggs.values()] + [c for c, _, _ in where]
        return self._run(files, needed, lambda fs: self._agg(fs, list(keys), aggs, where), [*keys, *aggs])

    def first(self, files: Sequence[str], keys: Sequence[str], order: Sequence[str], columns: Sequence[str],
              where: Where = ()) -> pd.DataFrame:
        _check(where)
        out = list(dict.fromkeys([*keys, *order, *columns]))
        needed = out + [c for c, _, _ in where]
        return self._run(files, needed, lambda fs: self._first(fs, list(keys), list(order), out, where), out)

    def _run(self, files: Sequence[str], needed: list[str], scan: Any, out_cols: list[str]) -> pd.DataFrame:
        files = [f for f in files if f not in self.skipped]
        if not files:
            return pd.DataFrame(columns=out_cols)
        try:
            return scan(files)
        except Exception as exc:  # noqa: BLE001 - find the file the engine could not read
            bad = self._find_unreadable(files, list(dict.fromkeys(needed)))
            if not bad:
                raise TeamError(f"{self.name}: the query failed: {type(exc).__name__}: {exc}") from exc
            good = [f for f in files if f not in bad]
            return pd.DataFrame(columns=out_cols) if not good else scan(good)

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
                log.warning("skipping %s: not a readable index file with columns %s: %s", f, ", ".join(columns), reason)
                self.skipped[f] = reason
                bad.add(f)
        return bad


class DuckDBEngine(Engine):
    """DuckDB, embedded: one in-memory connection per question."""

    name = "duckdb"

    def __init__(self, filesystem: Any = None):
        super().__init__(filesystem)
        import duckdb

        self.con = duckdb.connect()
        if filesystem is not None:
            self.con.register_filesystem(filesystem)

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

    def _frame(self, files: list[str], columns: list[str], where: Where) -> pd.DataFrame:
        w, params = self._where(where)
        return self._df(f"SELECT {', '.join(map(_q, columns))} FROM {self._source(files)}{w}", params)

    def _agg(self, files: list[str], keys: list[str], aggs: Aggs, where: Where) -> pd.DataFrame:
        w, params = self._where(where)
        sel = [*map(_q, keys), *(f"{_SQL_AGGS[f].format(_q(c))} AS {_q(out)}" for out, (c, f) in aggs.items())]
        group = f" GROUP BY {', '.join(map(_q, keys))}" if keys else ""
        return self._df(f"SELECT {', '.join(sel)} FROM {self._source(files)}{w}{group}", params)

    def _first(self, files: list[str], keys: list[str], order: list[str], columns: list[str],
               where: Where) -> pd.DataFrame:
        w, params = self._where(where)
        part = f"PARTITION BY {', '.join(map(_q, keys))} " if keys else ""
        sql = (f"SELECT {', '.join(map(_q, columns))} FROM (SELECT *, row_number() OVER ({part}ORDER BY "
               f"{', '.join(_q(c) + ' ASC NULLS LAST' for c in order)}) AS _rn FROM {self._source(files)}{w}) "
               f"WHERE _rn = 1")
        return self._df(sql, params)


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

    def _compute(self, obj: Any) -> pd.DataFrame:
        if self.client is not None:
            return self.client.compute(obj, sync=True)
        with warnings.catch_warnings():
            # dask's parquet reader calls reset_index(inplace=True), which pandas 3.1 deprecates
            warnings.filterwarnings("ignore", message="The inplace keyword", module="pandas")
            warnings.filterwarnings("ignore", message="The inplace keyword", module="dask")
            return obj.compute(scheduler="threads")

    def _frame(self, files: list[str], columns: list[str], where: Where) -> pd.DataFrame:
        return self._compute(self._read(files, columns, where)).reset_index(drop=True)

    def _agg(self, files: list[str], keys: list[str], aggs: Aggs, where: Where) -> pd.DataFrame:
        cols = list(dict.fromkeys([*keys, *(c for c, _ in aggs.values())]))
        ddf = self._read(files, cols, where)
        spec = {out: (c, _DASK_AGGS[f]) for out, (c, f) in aggs.items()}
        needs_shuffle = any(f == "median" for _, f in aggs.values())
        g = ddf.groupby(keys, sort=False)
        res = g.agg(shuffle_method="tasks", **spec) if needs_shuffle else g.agg(split_out=1, **spec)
        return self._compute(res).reset_index()

    def _first(self, files: list[str], keys: list[str], order: list[str], columns: list[str],
               where: Where) -> pd.DataFrame:
        ddf = self._read(files, columns, where)

        def best(df: pd.DataFrame) -> pd.DataFrame:
            return df.sort_values(order, kind="stable", na_position="last").drop_duplicates(keys)

        part = self._compute(ddf.map_partitions(best))
        return best(part).reset_index(drop=True)


def make_engine(engine: str, filesystem: Any = None, scheduler: Any = None) -> Engine:
    """``"duckdb"`` or ``"dask"`` (``scheduler``: a ``tcp://host:8786`` address or a Client)."""
    if engine == "duckdb":
        if scheduler is not None:
            raise TeamError("--scheduler is for --engine dask; DuckDB runs embedded")
        return DuckDBEngine(filesystem)
    if engine == "dask":
        return DaskEngine(filesystem, scheduler)
    raise TeamError(f"engine {engine!r}: expected 'duckdb' or 'dask'")
