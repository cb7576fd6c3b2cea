"""Core commands: ``import``, ``sessions``, ``laps``, ``info``."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import TYPE_CHECKING, Any

from pitbox.config import data_dir
from pitbox.errors import TruncatedWarning

if TYPE_CHECKING:
    import pandas as pd

# Heavy libraries (pandas, pyarrow, numpy) are imported inside the commands: see pitbox/cli.py.

SESSION_COLUMNS = ["id", "track", "car", "driver", "start", "samples", "laps", "best_lap_s", "truncated", "path"]
LAP_COLUMNS = ["lap_index", "lap", "start_s", "end_s", "time_s", "complete", "valid", "reason", "iracing_time_s",
               "dropped_ticks", "hitch_ticks"]


def _print_table(df: pd.DataFrame, as_json: bool) -> None:
    import pandas as pd

    if as_json:
        print(df.to_json(orient="records", indent=1))
    elif df.empty:
        print("(none)")
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60):
            print(df.to_string(index=False))


def _index_after_store(data: Any, written: list[Any], progress: bool = False) -> object:
    """:func:`pitbox.team.index.index_after_store`, imported only when a session was written
    (the team index loads pandas and the analysis: nothing to pay for a file already present)."""
    from pitbox.team.index import index_after_store

    return index_after_store(data, written, progress=progress)


def cmd_import(args: argparse.Namespace) -> int:
    from pitbox.digest import FileDigests, iter_sources

    # The sources' sha256 is computed in a thread from here on, while numpy and pyarrow load
    # (one core) and while the files are decoded and written (docs/store.md: the import's speed).
    digests = FileDigests(iter_sources(args.paths))
    from pitbox.store import import_paths

    data = data_dir(args.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncatedWarning)
        results = import_paths(args.paths, data, progress=not args.json and sys.stderr.isatty(), digests=digests,
                               after_store=None if args.no_index else _index_after_store)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"source": str(r.source), "status": r.status, "sessions": r.sessions,
                           "truncated": r.truncated, "error": r.error} for r in results], indent=1))
    else:
        for r in results:
            tail = f" ({', '.join(r.sessions)})" if r.sessions else ""
            trunc = " [truncated]" if r.truncated else ""
            if r.error:
                print(f"{r.status:9} {r.error}", file=sys.stderr)
            else:
                print(f"{r.status:9} {r.source}{tail}{trunc}")
        counts = {s: sum(r.status == s for r in results) for s in ("imported", "present", "failed")}
        print(f"{counts['imported']} imported, {counts['present']} already present, {counts['failed']} failed -> {data}")
    if not results:
        print(f"pitbox import: error: no .ibt files found in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    return 1 if any(r.status == "failed" for r in results) else 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from pitbox.store import Store

    df = Store(args.data).sessions()
    _print_table(df[SESSION_COLUMNS] if not args.json else df, args.json)
    return 0


def cmd_laps(args: argparse.Namespace) -> int:
    from pitbox.store import Store

    df = Store(args.data).laps(args.session)
    _print_table(df if args.json else df[LAP_COLUMNS], args.json)
    return 0


def file_info(path: str) -> dict[str, Any]:
    """Header, channels and a YAML summary of a telemetry file; reads no rows."""
    from pitbox.ibt.reader import open_telemetry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedWarning)
        tf = open_telemetry(path)
    with tf:
        h = tf.header
        info = tf.session_info
        wi = info.get("WeekendInfo") or {}
        out: dict[str, Any] = {
            "path": str(tf.path), "kind": tf.kind, "version": h.version, "tick_rate": h.tick_rate,
            "num_vars": h.num_vars, "buf_len": h.buf_len, "num_buf": h.num_buf, "rows": tf.n_rows,
            "truncated": tf.truncated,
            "yaml": {"sections": list(info), "track": wi.get("TrackName"), "track_config": wi.get("TrackConfigName"),
                     "build": wi.get("BuildVersion"), "sessions": [s.get("SessionType") for s in (info.get("SessionInfo") or {}).get("Sessions") or []]},
            "channels": [{"name": v.name, "type": v.type.name.lower(), "count": v.count, "unit": v.unit, "desc": v.desc}
                         for v in tf.variables],
        }
        if tf.disk is not None:
            d = tf.disk
            out["disk"] = {"start": d.start_datetime.isoformat(), "start_time_s": d.session_start_time,
                           "end_time_s": d.session_end_time, "lap_count": d.session_lap_count,
                           "record_count": d.session_record_count}
        return out


def cmd_info(args: argparse.Namespace) -> int:
    info = file_info(args.file)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    for k in ("path", "kind", "version", "tick_rate", "num_vars", "buf_len", "num_buf", "rows", "truncated"):
        print(f"{k:12} {info[k]}")
    for k, v in info.get("disk", {}).items():
        print(f"{k:12} {v}")
    for k, v in info["yaml"].items():
        print(f"{k:12} {v}")
    import pandas as pd

    _print_table(pd.DataFrame(info["channels"]), False)
    return 0


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="store folder (default: $PITBOX_DATA or ./data)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import .ibt files or folders into the store")
    p.add_argument("paths", nargs="+", metavar="PATH")
    _data_arg(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-index", action="store_true",
                   help="do not add the new sessions to the team index (pitbox index update does it later)")
    p.set_defaults(func=cmd_import, teardown=False)  # see pitbox.cli.run

    p = sub.add_parser("sessions", help="list the sessions in the store")
    _data_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("laps", help="the lap table of a session")
    p.add_argument("session", metavar="SESSION", help="id, unique id prefix, or path")
    _data_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_laps)

    p = sub.add_parser("info", help="header, channels and YAML summary of a telemetry file (reads no rows)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
