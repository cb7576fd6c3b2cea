"""Turn a recording folder into a session file of the store, and recover interrupted ones.

:func:`finalize` reads a ``.recording/<id>/`` folder (see :mod:`pitbox.recorder.segments`),
decodes its raw rows with the one structured dtype, and writes
``<data>/track=…/car=…/<id>.parquet`` in the store's format (same schema, same ``pitbox``
metadata as an ``.ibt`` import, plus what a live recording adds: ``source_kind`` "live",
``dropped_ticks``, ``tick_gaps``, ``first_tick``/``last_tick``, ``session_time_range`` and the
YAML updates with their ticks). :func:`recover` finalizes every folder no running recorder
holds.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pitbox.errors import IbtFormatError, StoreError
from pitbox.ibt import session_yaml
from pitbox.laps import LAP_TABLE_VERSION, lap_table
from pitbox.recorder.history import diff_lines
from pitbox.recorder.segments import FolderLock, Recording, read_recording, recording_root, remove_folder
from pitbox.store import (
    LAP_CHANNEL_TYPES,
    SCHEMA_VERSION,
    Store,
    arrow_schema,
    record_batch,
    session_meta,
    slug,
)

log = logging.getLogger(__name__)

#: Rows per Parquet row group of a live session (live rows are ~8 KB, 8× an ``.ibt`` row).
LIVE_ROW_GROUP_ROWS = 4096
#: Channels read in the first pass (lap table, session identity, stint matching).
_SMALL = (*LAP_CHANNEL_TYPES, "SessionUniqueID", "IsOnTrack")


@dataclass
class _FirstPass:
    ticks: np.ndarray
    small: dict[str, np.ndarray]


def _first_pass(rec: Recording) -> _FirstPass:
    names = [v.name for v in rec.variables if v.name in _SMALL and v.count == 1]
    ticks, cols = [], {n: [] for n in names}
    for t, rows in rec.iter_rows():
        ticks.append(t)
        for n in names:
            cols[n].append(np.array(rows[n]))
    if not ticks:
        return _FirstPass(np.zeros(0, np.int64), {n: np.zeros(0) for n in names})
    return _FirstPass(np.concatenate(ticks), {n: np.concatenate(v) for n, v in cols.items()})


def _parse_yaml(raw: bytes, where: object) -> dict[str, Any]:
    try:
        return session_yaml.parse(raw, where)
    except IbtFormatError as exc:
        log.warning("%s", exc)
        return {}


def _yaml_meta(rec: Recording, fp: _FirstPass, session_num: int) -> dict[str, Any]:
    """``session_yaml`` (the YAML at the first tick), its metadata, and the later updates."""
    versions = rec.yamls
    if not versions:
        return {"session_yaml": "", "yaml_updates": [], **session_meta(None, {}, session_num)}  # type: ignore[arg-type]
    first_tick = int(fp.ticks[0]) if len(fp.ticks) else versions[0].tick
    start = max([v for v in versions if v.tick <= first_tick] or versions[:1], key=lambda v: v.seq)
    info = _parse_yaml(start.raw, rec.path / f"yaml {start.seq}")
    base = session_meta(None, info, session_num)  # type: ignore[arg-type]
    text = session_yaml.decode(start.raw)
    updates = []
    t = fp.small.get("SessionTime")
    for v in versions:
        if v.seq <= start.seq or (len(fp.ticks) and v.tick > int(fp.ticks[-1])):
            continue
        new = session_yaml.decode(v.raw)
        row = int(np.searchsorted(fp.ticks, v.tick)) if len(fp.ticks) else 0
        updates.append({"tick": v.tick, "row": row, "update": v.update,
                        "session_time": float(t[row]) if t is not None and row < len(t) else None,
                        "ops": diff_lines(text, new)})
        text = new
        if not base["session_type"]:  # the YAML of the session's start may predate its entry
            base["session_type"] = session_meta(None, _parse_yaml(v.raw, v.seq), session_num)["session_type"]  # type: ignore[arg-type]
    return {"session_yaml": session_yaml.decode(start.raw), "yaml_updates": updates, **base}


def _gaps(ticks: np.ndarray) -> list[list[int]]:
    """``[row, missing]`` for each row that follows missing ticks."""
    if len(ticks) < 2:
        return []
    d = np.diff(ticks) - 1
    idx = np.flatnonzero(d > 0)
    return [[int(i + 1), int(d[i])] for i in idx]


def session_path(data: Path, meta: dict[str, Any]) -> Path:
    return Path(data) / f"track={slug(meta['track'])}" / f"car={slug(meta['car'])}" / f"{meta['id']}.parquet"


def build_meta(rec: Recording, fp: _FirstPass, recovered: bool) -> dict[str, Any]:
    m = rec.meta
    tick_rate = int(m.get("tick_rate", 60))
    num = int(fp.small["SessionNum"][0]) if "SessionNum" in fp.small and len(fp.ticks) else 0
    ymeta = _yaml_meta(rec, fp, num)
    lap_in = {k: fp.small[k] for k in LAP_CHANNEL_TYPES if k in fp.small}
    laps = lap_table(lap_in, tick_rate) if {"SessionTime", "Lap", "LapDistPct"} <= set(lap_in) else None
    valid = laps[laps.valid] if laps is not None else None
    gaps = _gaps(fp.ticks)
    t = fp.small.get("SessionTime")
    closed = rec.closed or {}
    return {
        "schema_version": SCHEMA_VERSION, "id": m["id"], **{k: v for k, v in ymeta.items() if k != "yaml_updates"},
        "start": m["start"], "tick_rate": tick_rate, "samples": int(len(fp.ticks)),
        "truncated": bool(recovered), "recovered": bool(recovered),
        "end_reason": closed.get("reason", "recovered after the recorder stopped" if recovered else ""),
        "source_name": m.get("source_name", ""), "source_sha256": None,
        "source_kind": m.get("source_kind", "live"), "source_rows": None,
        "row_group_rows": LIVE_ROW_GROUP_ROWS,
        "first_tick": int(fp.ticks[0]), "last_tick": int(fp.ticks[-1]), "joined_at_tick": m.get("joined_at_tick"),
        "dropped_ticks": int(sum(g[1] for g in gaps)), "tick_gaps": gaps,
        "session_unique_id": int(fp.small["SessionUniqueID"][0]) if "SessionUniqueID" in fp.small else None,
        "session_time_range": [float(t[0]), float(t[-1])] if t is not None else None,
        "laps": int(laps.complete.sum()) if laps is not None else 0,
        "valid_laps": int(len(valid)) if valid is not None else 0,
        "best_lap_s": float(valid.time_s.min()) if valid is not None and len(valid) else None,
        "lap_table": json.loads(laps.to_json(orient="records")) if laps is not None else [],
        "lap_table_version": LAP_TABLE_VERSION,
        "units": {v.name: v.unit for v in rec.variables},
        "yaml_updates": ymeta["yaml_updates"],
        "sources": [{"kind": m.get("source_kind", "live"), "name": m.get("source_name", ""), "id": m["id"]}],
    }


def _write(rec: Recording, meta: dict[str, Any], dest: Path) -> None:
    variables = rec.variables
    schema = arrow_schema(variables, meta)
    tmp = dest.with_name(f".{dest.name}.part")
    stats = [n for n in ("SessionTime", "Lap") if n in schema.names]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=stats or False) as w:
            pending: list[np.ndarray] = []
            n_pending = 0
            for _, rows in rec.iter_rows():
                pending.append(rows)
                n_pending += len(rows)
                while n_pending >= LIVE_ROW_GROUP_ROWS:
                    block = np.concatenate(pending)
                    _write_group(w, variables, block[:LIVE_ROW_GROUP_ROWS], schema)
                    rest = block[LIVE_ROW_GROUP_ROWS:]
                    pending, n_pending = [rest], len(rest)
            if n_pending:
                _write_group(w, variables, np.concatenate(pending), schema)
        os.replace(tmp, dest)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise StoreError(f"{dest}: cannot write the session file ({exc.strerror or exc}); the recording "
                         f"stays in {rec.path} and 'pitbox recover' finishes it") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_group(w: pq.ParquetWriter, variables: list, rows: np.ndarray, schema: Any) -> None:
    cols = {v.name: np.ascontiguousarray(rows[v.name]) for v in variables}
    w.write_batch(record_batch(variables, cols, schema), row_group_size=LIVE_ROW_GROUP_ROWS)


def finalize(folder: str | os.PathLike[str], data: str | os.PathLike[str], *, recovered: bool = False,
             remove: bool = True) -> Path | None:
    """Write the session file of one recording folder; returns its path (None: no rows).

    Idempotent: a session file that already exists is kept (a recorder killed between
    writing it and removing the folder). The folder is removed afterwards when ``remove``.
    Raises :class:`StoreError` when the store cannot be written (the folder stays).
    """
    folder = Path(folder)
    rec = read_recording(folder)
    fp = _first_pass(rec)
    if len(fp.ticks) == 0:
        log.info("%s: no rows recorded; removing it", folder)
        if remove:
            remove_folder(folder)
        return None
    meta = build_meta(rec, fp, recovered)
    dest = session_path(Path(data), meta)
    if not dest.exists():
        _write(rec, meta, dest)
    if remove:
        remove_folder(folder)
    return dest


def pending_recordings(data: str | os.PathLike[str]) -> list[Path]:
    root = recording_root(Path(data))
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def recover(data: str | os.PathLike[str], on_session: Callable[[Path], None] | None = None,
            index: bool = True) -> list[Path]:
    """Finalize every interrupted recording in ``data`` (folders no running recorder locks).

    Returns the session files written (added to the team index unless ``index=False``). A
    folder that cannot be finalized is logged and left for the next try; a store that
    cannot be written raises :class:`StoreError`.
    """
    out = []
    for folder in pending_recordings(data):
        lock = FolderLock(folder)
        try:
            if not lock.try_acquire():
                log.info("%s: being recorded by a running recorder; left alone", folder)
                continue
        except OSError as exc:
            log.warning("%s: cannot check its lock: %s", folder, exc)
            continue
        try:
            path = finalize(folder, data, recovered=(read_closed(folder) is None), remove=False)
        except StoreError as exc:
            if "unreadable recording metadata" in str(exc):
                lock.release()
                if not any(p.name.startswith("seg-") for p in folder.iterdir()):
                    remove_folder(folder)  # killed before its first row: nothing to keep
                else:
                    log.warning("%s", exc)
                continue
            lock.release()
            raise
        lock.release()
        remove_folder(folder)
        if path is not None:
            out.append(path)
            if on_session is not None:
                on_session(path)
    if out:
        Store(data).refresh()
        if index:
            from pitbox.team.index import index_after_store

            index_after_store(data, out)
    return out


def read_closed(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "closed.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
