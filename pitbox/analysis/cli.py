"""Commands: ``compare``, ``coach``, ``report``, ``export``.

LAP arguments are ``SESSION:LAP`` where SESSION is a store id (or unique prefix), a
``.parquet`` session file or an ``.ibt`` file, and LAP is the lap table's ``lap_index``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# pandas and the analysis are imported inside the commands: see pitbox/cli.py.


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="store folder (default: $PITBOX_DATA or ./data)")


def _print_df(df: pd.DataFrame, decimals: int = 3) -> None:
    if df.empty:
        print("  (none)")
        return
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 40, "display.max_colwidth", 80,
                           "display.float_format", lambda v: f"{v:.{decimals}f}"):
        print(df.to_string(index=False))


def cmd_compare(args: argparse.Namespace) -> int:
    from pitbox.analysis.compare import compare_laps, jsonable

    res = compare_laps(args.lap, args.reference, args.data)
    if args.json:
        out = {k: v for k, v in res.items() if k not in ("delta", "traces")}
        print(json.dumps(jsonable(out), indent=1))
        return 0
    lap, ref = res["lap"], res["reference"]
    print(f"lap        {lap['session']}:{lap['lap_index']}  {lap['time_s']:.3f} s")
    print(f"reference  {ref['session']}:{ref['lap_index']}  {ref['time_s']:.3f} s")
    print(f"delta at the line   {res['delta_at_line_s']:+.3f} s")
    print(f"closure             {res['closure_s'] * 1e3:.3f} ms (our lap times)")
    if res["closure_iracing_s"] is not None:
        print(f"closure             {res['closure_iracing_s'] * 1e3:.3f} ms (iRacing LapLastLapTime)")
    print(f"alignment error     {res['alignment_error_s'] * 1e3:.3f} ms")
    print(f"corners ({res['corner_source']}):")
    _print_df(res["per_corner"])
    return 0


def _coach(args: argparse.Namespace):
    from pitbox.analysis.coaching import coach
    from pitbox.analysis.laps_analysis import analyse

    a = analyse(args.session, args.reference, args.data)
    return a, coach(a)


def cmd_coach(args: argparse.Namespace) -> int:
    from pitbox.analysis.compare import jsonable

    a, r = _coach(args)
    if args.json:
        out = {"session": a.session.id, "reference": a.reference.label, "reference_time_s": a.reference.time_s,
               "baseline": r.baseline.source, "corners": [c.to_dict() for c in a.corners],
               "tips": r.tips, "corner_table": r.corners, "follow_up": r.follow_up, "explain": r.explain}
        print(json.dumps(jsonable(out), indent=1, default=str))
        return 0
    print(f"session {a.session.id}: {a.session.track} / {a.session.car} / {a.session.driver}")
    print(f"reference {a.reference.label} ({a.reference.time_s:.3f} s); baseline: {r.baseline.source}")
    print("\ntips:")
    _print_df(r.tips[["lap_index", "lap", "corner", "fault", "change", "time_loss_s", "time_loss_sd_s", "repeat"]])
    print("\nfollow-up:")
    _print_df(r.follow_up)
    print("\nper corner (valid laps):")
    cols = ["lap_index", "corner", "segment_time_s", "loss_s", "delta_s", "brake_point_m", "min_speed_kmh",
            "throttle_pickup_m", "coasting_s", "lockup_s"]
    _print_df(r.corners[r.corners.valid][[c for c in cols if c in r.corners]])
    from pitbox.analysis.explain import explain_messages

    print()
    for line in explain_messages(r.explain):
        print(line)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pitbox.analysis.report import build_report

    out = build_report(args.session, args.reference, args.out, args.data)
    print(out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pitbox.analysis.export import export_csv, export_motec
    from pitbox.analysis.session import resolve_lap

    lap = resolve_lap(args.lap, args.data)
    out = (export_motec if args.format == "motec" else export_csv)(lap, args.out)
    print(out, file=sys.stdout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare a lap with a reference lap (delta, closure, per corner)")
    p.add_argument("lap", metavar="SESSION:LAP")
    p.add_argument("reference", metavar="SESSION:LAP")
    _data_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("coach", help="tips per lap, ranked by time cost, and the per-corner table")
    p.add_argument("session", metavar="SESSION")
    p.add_argument("--reference", metavar="SESSION:LAP", help="default: the session's fastest valid lap")
    _data_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_coach)

    p = sub.add_parser("report", help="one self-contained HTML report of a session")
    p.add_argument("session", metavar="SESSION")
    p.add_argument("--reference", metavar="SESSION:LAP")
    p.add_argument("--out", required=True, metavar="FILE.html")
    _data_arg(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export a lap as CSV or MoTeC CSV")
    p.add_argument("lap", metavar="SESSION:LAP")
    p.add_argument("--format", choices=("csv", "motec"), default="csv")
    p.add_argument("--out", required=True, metavar="FILE")
    _data_arg(p)
    p.set_defaults(func=cmd_export)
