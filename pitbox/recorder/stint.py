"""One stint stored once: a live recording and the ``.ibt`` of the same stint, linked.

iRacing's ``.ibt`` has the driver's own car in full (GPS, wheel speeds, tyre temperatures
and pressures, ride heights) but no other cars; live memory has the ``CarIdx*`` arrays of
every car but no GPS and no tyre data. When both cover the same stint they become **one
session with two sources**:

* the ``.ibt`` import stays the session (its id, its place in the catalogue, so that
  importing the file again still finds it present); its ``pitbox`` metadata gains
  ``sources`` (both) and ``linked_live`` (the live recording ids);
* the live recording moves to ``<partition>/.linked/<id>.parquet`` (hidden from the
  catalogue and dataset readers by the leading dot) with ``linked_to`` set.

Same stint = same track, car, driver and ``SessionNum``, the same ``WeekendInfo``
``SessionID``/``SubSessionID`` when both YAMLs have them, and overlapping ``SessionTime``.
:func:`merged_view` gives the ``.ibt`` rows with the live-only channels joined on
``SessionTime`` (nearest sample within half a tick).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pitbox.errors import MissingChannel, SessionNotFound, StoreError
from pitbox.ibt import session_yaml
from pitbox.store import META_KEY, Store, read_meta

log = logging.getLogger(__name__)

LINKED_DIR = ".linked"
LIVE_KINDS = ("live", "replay")


def _session_time_range(path: Path) -> tuple[float, float] | None:
    """First and last ``SessionTime`` [s], from the row-group statistics (no rows read)."""
    md = pq.ParquetFile(path).metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    if "SessionTime" not in names:
        return None
    col = names.index("SessionTime")
    lo, hi = [], []
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(col).statistics
        if st is None or not st.has_min_max:
            return None
        lo.append(st.min)
        hi.append(st.max)
    return (float(min(lo)), float(max(hi))) if lo else None


def _weekend_ids(meta: dict[str, Any]) -> tuple[Any, Any]:
    try:
        wi = session_yaml.parse((meta.get("session_yaml") or "").encode("utf-8")).get("WeekendInfo") or {}
    except Exception:  # a damaged YAML only weakens the match
        return None, None
    return wi.get("SessionID"), wi.get("SubSessionID")


def same_stint(ibt: dict[str, Any], ibt_path: Path, live: dict[str, Any], live_path: Path) -> bool:
    """True when an ``.ibt`` session and a live recording cover the same stint."""
    for k in ("track", "car", "driver", "session_num"):
        if ibt.get(k) != live.get(k):
            return False
    a, b = _weekend_ids(ibt), _weekend_ids(live)
    for x, y in zip(a, b, strict=True):
        if x is not None and y is not None and x != y:
            return False
    ra, rb = _session_time_range(ibt_path), _session_time_range(live_path)
    return ra is not None and rb is not None and ra[0] < rb[1] and rb[0] < ra[1]


def _rewrite(src: Path, dest: Path, meta: dict[str, Any]) -> None:
    """Copy a session file with new ``pitbox`` metadata, row group by row group."""
    pf = pq.ParquetFile(src)
    schema = pf.schema_arrow.with_metadata({**(pf.schema_arrow.metadata or {}),
                                            META_KEY: json.dumps(meta, default=str).encode()})
    tmp = dest.with_name(f".{dest.name}.part")
    stats = [n for n in ("SessionTime", "Lap") if n in schema.names]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=stats or False) as w:
            for g in range(pf.metadata.num_row_groups):
                t = pf.read_row_group(g)
                w.write_table(t.replace_schema_metadata(schema.metadata), row_group_size=max(1, t.num_rows))
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{dest}: cannot write ({exc.strerror or exc})") from None


def _ibt_source(meta: dict[str, Any]) -> dict[str, Any]:
    return {"kind": meta.get("source_kind", "ibt"), "name": meta.get("source_name"),
            "sha256": meta.get("source_sha256"), "id": meta["id"]}


def link(store: Store, ibt_path: Path, live_path: Path) -> Path:
    """Link a live recording to the ``.ibt`` session of its stint; returns the ``.ibt`` session file."""
    ibt, live = read_meta(ibt_path), read_meta(live_path)
    hidden = ibt_path.parent / LINKED_DIR / f"{live['id']}.parquet"
    if not hidden.exists():
        _rewrite(live_path, hidden, {**live, "linked_to": ibt["id"]})
    rel = hidden.relative_to(store.root).as_posix()
    sources = [s for s in ibt.get("sources") or [_ibt_source(ibt)] if s.get("id") != live["id"]]
    sources.append({"kind": live.get("source_kind", "live"), "name": live.get("source_name"), "id": live["id"],
                    "path": rel, "samples": live.get("samples"), "dropped_ticks": live.get("dropped_ticks")})
    linked = sorted({*(ibt.get("linked_live") or []), live["id"]})
    _rewrite(ibt_path, ibt_path, {**ibt, "sources": sources, "linked_live": linked})
    if live_path != hidden:
        live_path.unlink(missing_ok=True)
    log.info("linked live recording %s to %s (one stint, two sources)", live["id"], ibt["id"])
    from pitbox.team.index import forget_after_link, index_root

    if index_root(store.root).is_dir():  # the stint is one session now: the .ibt's
        forget_after_link(store.root, [live["id"]])
    return ibt_path


def link_session(store: Store, path: Path) -> list[Path]:
    """Link a newly stored session (live recording or ``.ibt`` import) with the other
    source(s) of its stint in the same partition; returns the ``.ibt`` session files linked."""
    meta = read_meta(path)
    if meta.get("linked_to"):
        return []
    mine_live = meta.get("source_kind") in LIVE_KINDS
    out = []
    for other in sorted(path.parent.glob("*.parquet")):
        if other == path or other.name.startswith("."):
            continue
        try:
            om = read_meta(other)
        except StoreError:
            continue
        other_live = om.get("source_kind") in LIVE_KINDS
        if other_live == mine_live:
            continue
        ibt_p, ibt_m, live_p, live_m = (other, om, path, meta) if mine_live else (path, meta, other, om)
        if same_stint(ibt_m, ibt_p, live_m, live_p):
            out.append(link(store, ibt_p, live_p))
            if mine_live:
                break  # a live recording belongs to one stint
    if out:
        store.refresh()
    return out


def link_store(store: Store) -> list[Path]:
    """Link every unlinked pair in the store (after a bulk import)."""
    out: list[Path] = []
    for p in store.files():
        if p.exists():
            out += link_session(store, p)
    return out


# -- the merged view -------------------------------------------------------------------

def _find_hidden(store: Store, session_id: str) -> Path | None:
    hits = sorted(store.root.glob(f"track=*/car=*/{LINKED_DIR}/{session_id}*.parquet")) if store.root.exists() else []
    return hits[0] if len(hits) == 1 else None


def session_sources(store: Store, session_id: str | os.PathLike[str]) -> tuple[Path, dict[str, Any], list[Path]]:
    """The primary session file, its metadata, and its linked live recordings' files."""
    try:
        path = store.resolve(session_id)
    except SessionNotFound:
        hidden = _find_hidden(store, str(session_id))
        if hidden is None:
            raise
        path = store.resolve(read_meta(hidden)["linked_to"])
    meta = read_meta(path)
    lives = [store.root / s["path"] for s in meta.get("sources") or [] if s.get("kind") in LIVE_KINDS and s.get("path")]
    return path, meta, lives


def merged_view(store: Store, session_id: str | os.PathLike[str], columns: list[str] | None = None) -> pd.DataFrame:
    """One stint's channels from both sources, aligned on ``SessionTime``.

    Rows are the ``.ibt``'s (60 Hz, ``SessionTime`` [s]); every channel it has comes from
    it (GPS ``Lat``/``Lon`` [deg], wheel speeds [m/s], tyre data); every channel only the
    live recording has (``CarIdx*`` arrays of 64, …) is joined from the live sample with
    the nearest ``SessionTime`` within half a tick (missing: NaN/None). A session without a
    linked source is returned as it is. ``attrs["channel_source"]`` says where each column
    came from, ``attrs["sources"]`` lists the session ids.
    """
    path, meta, lives = session_sources(store, session_id)
    base_names = pq.read_schema(path).names
    want = None if columns is None else list(dict.fromkeys(["SessionTime", *columns]))
    base_cols = None if want is None else [c for c in want if c in base_names]
    df = pq.read_table(path, columns=base_cols).to_pandas()
    kind = "ibt" if not lives and meta.get("source_kind") not in LIVE_KINDS else (
        "live" if not lives else "ibt")
    origin = {c: kind for c in df.columns}
    if lives:
        live_names = pq.read_schema(lives[0]).names
        extra = [c for c in live_names if c not in base_names and (want is None or c in want)]
        parts = [pq.read_table(p, columns=["SessionTime", *extra]).to_pandas() for p in lives]
        live = pd.concat(parts, ignore_index=True).sort_values("SessionTime", kind="stable")
        tol = 0.5 / float(meta.get("tick_rate") or 60)
        df = pd.merge_asof(df.sort_values("SessionTime", kind="stable"), live, on="SessionTime",
                           direction="nearest", tolerance=tol)
        origin.update({c: "live" for c in extra})
    if want is not None:
        missing = [c for c in want if c not in df.columns]
        if missing:
            raise MissingChannel(f"session {session_id} (its .ibt and live sources)", missing[0])
    df.attrs["channel_source"] = origin
    df.attrs["sources"] = [meta["id"], *[read_meta(p)["id"] for p in lives]]
    return df
