"""Commands ``pitbox team …``, ``pitbox index …`` and ``pitbox import-laps``.

``register`` only builds parsers (argparse): pandas, DuckDB and Dask load when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

QUESTIONS = ("leaderboard", "progress", "corners", "consistency", "setups", "laps")


def _data_arg(p: argparse.ArgumentParser, url: bool = False) -> None:
    extra = " or an fsspec URL of a store on shared storage (s3://…)" if url else ""
    p.add_argument("--data", help=f"store folder (default: $PITBOX_DATA or ./data){extra}")


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=cmd_team)
    _data_arg(p, url=True)
    p.add_argument("--engine", choices=("duckdb", "dask"), default="duckdb",
                   help="duckdb (embedded, default) or dask (local threads, or a cluster with --scheduler)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--json", action="store_true", help="print the answer as JSON records")


def register(sub: argparse._SubParsersAction) -> None:
    team = sub.add_parser("team", help="team questions over the lap and corner index (DuckDB or Dask)",
                          description="Questions a team asks of its archive, answered from the index beside the "
                                      "sessions. See docs/team.md.")
    qs = team.add_subparsers(dest="question", metavar="QUESTION")
    qs.required = True
    p = qs.add_parser("leaderboard", help="best valid lap per driver per car and track, optimal lap, laps, last driven")
    p.add_argument("--track")
    p.add_argument("--car")
    _engine_args(p)
    p = qs.add_parser("progress", help="a driver's best and median valid lap per session over time")
    p.add_argument("driver", metavar="DRIVER", help="driver name as in the sessions (quote it)")
    p.add_argument("--track")
    p.add_argument("--car")
    _engine_args(p)
    p = qs.add_parser("corners", help="per corner, each driver's best and median segment time against the team's best")
    p.add_argument("--track", required=True)
    p.add_argument("--car", required=True)
    _engine_args(p)
    p = qs.add_parser("consistency", help="per driver and corner, the spread of segment times")
    p.add_argument("--track")
    p.add_argument("--car")
    p.add_argument("--driver")
    _engine_args(p)
    p = qs.add_parser("setups", help="pace by setup, with the track temperature beside it")
    p.add_argument("--track", required=True)
    p.add_argument("--car", required=True)
    _engine_args(p)
    p = qs.add_parser("laps", help="laps matching filters, fastest first")
    p.add_argument("--driver")
    p.add_argument("--car")
    p.add_argument("--track")
    p.add_argument("--session-type", help="Practice, Qualify, Race … as iRacing names it")
    p.add_argument("--valid-only", action="store_true")
    p.add_argument("--track-temp", nargs=2, type=float, metavar=("LOW", "HIGH"), help="track temperature range [°C]")
    p.add_argument("--fuel", nargs=2, type=float, metavar=("LOW", "HIGH"), help="fuel at the lap's start [l]")
    p.add_argument("--limit", type=int, help="at most this many laps")
    _engine_args(p)
    team.set_defaults(func=cmd_team)

    idx = sub.add_parser("index", help="the lap and corner index beside the sessions: rebuild, update, status")
    ic = idx.add_subparsers(dest="action", metavar="ACTION")
    ic.required = True
    for name, text in (("rebuild", "write the whole index again from the session files"),
                       ("update", "index sessions the index misses or that changed; drop removed ones"),
                       ("status", "what the index holds against the store; sessions without corners and why")):
        p = ic.add_parser(name, help=text)
        p.set_defaults(func=cmd_index)
        _data_arg(p)
        p.add_argument("--json", action="store_true")
        if name != "status":
            p.add_argument("--jobs", type=int, default=1, help="analyse sessions in this many processes")
    idx.set_defaults(func=cmd_index)

    p = sub.add_parser("import-laps", help="import laps exported by other tools (CSV, MoTeC CSV, JSON) as sessions",
                       description="Import laps exported by PitBox (pitbox export), MoTeC i2 (CSV) or any tool "
                                   "writing CSV or JSON, as sessions of the store (then indexed). A generic file "
                                   "needs a column map; a missing time column is rebuilt from distance and speed.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=("auto", "pitbox", "motec", "csv", "json"), default="auto")
    p.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                   help="column of a generic file for a field (time_s, distance_m, lap_dist_pct, speed_ms, "
                        "speed_kmh, speed_mph, throttle, throttle_pct, brake, brake_pct, steering_rad, "
                        "steering_deg, gear, rpm, lap, fuel_l, lat, lon); repeat for each")
    p.add_argument("--track", help="track name (MoTeC files name it; others need it)")
    p.add_argument("--track-config", default="")
    p.add_argument("--track-length", type=float, metavar="M", help="lap length [m] when the file has no lap fraction")
    p.add_argument("--car")
    p.add_argument("--driver")
    p.add_argument("--session-type", default=None, help="default: Imported")
    p.add_argument("--date", help="session start, ISO 8601 (default: from the file, else its modification time)")
    _data_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import_laps)


def _print(df: Any, as_json: bool) -> None:
    if as_json:
        print(df.to_json(orient="records", date_format="iso", indent=1))
        return
    import pandas as pd

    if df.empty:
        print("(none)")
        return
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_colwidth", 40,
                           "display.float_format", "{:.3f}".format):
        print(df.to_string(index=False))


def _data(args: argparse.Namespace) -> Any:
    if args.data and "://" in args.data:
        return args.data
    from pitbox.config import data_dir

    return data_dir(args.data)


def cmd_team(args: argparse.Namespace) -> int:
    try:
        return _team(args)
    finally:
        if args.scheduler:
            from pitbox.team.engines import close_clients

            close_clients()


def _team(args: argparse.Namespace) -> int:
    from pitbox.team import questions as q

    data = _data(args)
    common = {"engine": args.engine, "scheduler": args.scheduler}
    if args.question == "leaderboard":
        df = q.leaderboard(data, track=args.track, car=args.car, **common)
    elif args.question == "progress":
        df = q.progress(data, args.driver, track=args.track, car=args.car, **common)
    elif args.question == "corners":
        df = q.corners(data, track=args.track, car=args.car, **common)
    elif args.question == "consistency":
        df = q.consistency(data, track=args.track, car=args.car, driver=args.driver, **common)
    elif args.question == "setups":
        df = q.setups(data, track=args.track, car=args.car, **common)
    else:
        df = q.laps(data, driver=args.driver, car=args.car, track=args.track, session_type=args.session_type,
                    valid_only=args.valid_only, track_temp=args.track_temp, fuel=args.fuel, limit=args.limit,
                    **common)
    for f, reason in (df.attrs.get("skipped_files") or {}).items():
        print(f"warning: skipped {f}: {reason}", file=sys.stderr)
    _print(df, args.json)
    if args.question == "corners" and not args.json and len(df):
        print("\nwhere each driver loses most (median against the team's best):")
        worst = df[df.loss_rank == 1].sort_values("driver")
        for r in worst.itertuples():
            print(f"  {r.driver}: {r.corner}, {r.median_gap_s:+.3f} s (best {r.best_gap_s:+.3f} s)")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from pitbox.config import data_dir
    from pitbox.team import index

    data = data_dir(args.data)
    if args.action == "status":
        st = index.status(data)
        if args.json:
            print(json.dumps(st, indent=1))
            return 0
        print(f"{st['indexed']} of {st['sessions']} sessions indexed in {st['index']} "
              f"({st['files']['laps']} laps files, {st['files']['corners']} corner files, "
              f"{(st['bytes']['laps'] + st['bytes']['corners']) / 1e6:.2f} MB)")
        for key, label in (("missing", "not indexed"), ("orphans", "indexed but no longer in the store"),
                           ("stale", "changed since indexed")):
            if st[key]:
                print(f"{len(st[key])} {label}: {', '.join(st[key][:10])}{' …' if len(st[key]) > 10 else ''}")
        for sid, why in st["corner_problems"].items():
            print(f"corners: {sid}: {why}")
        for sid, why in st["laps_problems"].items():
            print(f"laps: {sid}: {why}")
        for item in st["not_sessions"]:
            print(f"not a session (skipped): {item['file']}: {item['reason']}")
        for item in st["bad_index_files"]:
            print(f"not an index file (skipped): {item['file']}: {item['reason']}")
        if st["missing"] or st["orphans"] or st["stale"]:
            print(f"run: pitbox index update --data {data}")
        return 0
    progress = not args.json and sys.stderr.isatty()
    run = index.rebuild if args.action == "rebuild" else index.update
    report = run(data, progress=progress, jobs=max(1, args.jobs))
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        for f, reason in report.skipped:
            print(f"skipped {f}: {reason}", file=sys.stderr)
        for sid, why in report.corner_problems:
            print(f"corners: {sid}: {why}")
        removed = f", {len(report.removed)} removed" if report.removed else ""
        print(f"{len(report.indexed)} sessions indexed{removed}, {len(report.skipped)} files skipped, "
              f"{report.seconds:.1f} s -> {index.index_root(data)}")
    return 0


def _parse_map(items: list[str]) -> dict[str, str]:
    from pitbox.team.errors import LapFileError

    out = {}
    for item in items:
        field, sep, column = item.partition("=")
        if not sep or not field.strip() or not column:
            raise LapFileError(f"--map {item!r}: expected FIELD=COLUMN, e.g. speed_kmh=Speed")
        out[field.strip()] = column
    return out


def cmd_import_laps(args: argparse.Namespace) -> int:
    from pitbox.config import data_dir
    from pitbox.team.lapimport import import_laps

    data = data_dir(args.data)
    column_map = _parse_map(args.map)
    results = []
    failed = 0
    for f in args.files:
        try:
            r = import_laps(f, data, format=args.format, column_map=column_map or None, track=args.track,
                            track_config=args.track_config, track_length_m=args.track_length, car=args.car,
                            driver=args.driver, session_type=args.session_type, date=args.date)
            results.append({"source": f, "status": r.status, "sessions": r.sessions, "error": None})
        except Exception as exc:
            from pitbox.errors import PitboxError

            if not isinstance(exc, (PitboxError, OSError)):
                raise
            failed += 1
            results.append({"source": f, "status": "failed", "sessions": [], "error": str(exc)})
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            if r["error"]:
                print(f"failed    {r['error']}", file=sys.stderr)
            else:
                print(f"{r['status']:9} {r['source']} ({', '.join(r['sessions'])})")
        print(f"{len(results) - failed} imported or present, {failed} failed -> {data}")
    return 1 if failed else 0
