"""``pitbox simulate`` and ``pitbox tracks``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pitbox.sim.errors import SimError
from pitbox.sim.faults import FAULTS

# The simulator (numpy, yaml) is imported inside the commands: see pitbox/cli.py.


def register(subparsers: argparse._SubParsersAction) -> None:
    faults_help = "; ".join(f"{k} ({v[0]})" for k, v in FAULTS.items())
    p = subparsers.add_parser(
        "simulate", help="simulate a practice session on a simulated track and write an .ibt",
        description="Simulate a practice session (out lap, timed laps, in lap) and write it as an .ibt, "
                    "with the ground truth beside it (<stem>.truth.json, <stem>.truth.npz).")
    p.add_argument("--track", default="pitboxsim_demo", help="track name (see `pitbox tracks`)")
    p.add_argument("--laps", type=int, default=8, help="timed laps (default 8)")
    p.add_argument("--faults", nargs="*", default=[], metavar="SPEC",
                   help=f"LAP:CORNER:FAULT:SIZE, e.g. 4:T3:brake_early:15; FAULT is one of {faults_help}")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--no-in-lap", action="store_true", help="end after the last timed lap instead of pitting")
    p.add_argument("--out", type=Path, help="output .ibt path (required)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_simulate)
    kinds = p.add_subparsers(dest="kind", metavar="{team}")
    kinds.required = False
    _register_team(kinds)

    t = subparsers.add_parser("tracks", help="list the simulator's tracks")
    t.add_argument("--json", action="store_true", help="print as JSON")
    t.set_defaults(func=_tracks)


def _register_team(kinds: argparse._SubParsersAction) -> None:
    t = kinds.add_parser(
        "team", help="simulate a team (drivers of different skill and habits, several tracks) into a store",
        description="Simulate N sessions for each driver (different skill, noise, faults and setups; every track "
                    "in turn; one session a week) and import them into the store at --data, then index them. "
                    "Deterministic from --seed. See docs/team.md.")
    t.add_argument("--drivers", type=int, default=5, help="number of drivers (default 5, at most 12)")
    t.add_argument("--sessions", type=int, default=3, help="sessions per driver (default 3)")
    t.add_argument("--laps", type=int, default=3, help="timed laps per session (default 3)")
    t.add_argument("--tracks", nargs="*", help="simulator tracks to use (default: all, see `pitbox tracks`)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-in-lap", action="store_true", help="end each session after its last timed lap")
    t.add_argument("--jobs", type=int, default=1, help="simulate in this many processes")
    t.add_argument("--keep-ibt", type=Path, metavar="DIR", help="keep the .ibt files and ground truth in DIR")
    t.add_argument("--data", help="store folder (default: $PITBOX_DATA or ./data)")
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    t.set_defaults(func=_simulate_team)


def _simulate_team(args: argparse.Namespace) -> int:
    import sys

    from pitbox.config import data_dir
    from pitbox.sim.team import simulate_team

    data = data_dir(args.data)
    result = simulate_team(data, args.drivers, args.sessions, args.laps, args.seed, args.tracks,
                           in_lap=not args.no_in_lap, jobs=max(1, args.jobs), keep_ibt=args.keep_ibt,
                           progress=not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps(result.summary(), indent=1))
        return 0
    for d in result.drivers:
        x = d.describe()
        print(f"{x['name']:<14} lateral {x['lateral_skill']:.3f} braking {x['braking_skill']:.3f} "
              f"faults {x['fault_rate']:.0%} of laps ({', '.join(x['habits'])}), setups {', '.join(x['setups'])}")
    imported = sum(r["status"] == "imported" for r in result.sessions)
    print(f"{len(result.sessions)} sessions ({imported} new) in {data}; "
          f"{len(result.index.indexed) if result.index else 0} indexed")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    if args.out is None:
        raise SimError("--out: expected the .ibt path to write (or `pitbox simulate team` for a team)")
    if args.out.suffix.lower() != ".ibt":
        raise SimError(f"--out {args.out}: expected a path ending in .ibt")
    from pitbox.sim.api import simulate_session

    result = simulate_session(args.track, args.laps, args.faults, args.seed, out=args.out,
                              in_lap=not args.no_in_lap)
    if args.json:
        print(json.dumps(result.summary(), indent=1))
        return 0
    print(f"wrote {result.ibt_path} ({result.n_rows} rows), ground truth {result.truth_path.name}, "
          f"{result.truth_npz_path.name}")
    print(f"track {result.track}, seed {result.seed}")
    by_lap: dict[int, list[str]] = {}
    for f in result.faults:
        by_lap.setdefault(f["lap"], []).append(f"{f['corner']} {f['fault']} {f['size']:g} {f['unit']} "
                                               f"(+{f['cost_s']:.3f} s)")
    print(f"{'lap':>4}  {'time':>9}  faults")
    for lap, t in sorted(result.lap_times_s.items()):
        note = "in lap" if lap > args.laps else "; ".join(by_lap.get(lap, []))
        print(f"{lap:>4}  {t:9.3f}  {note}")
    return 0


def _tracks(args: argparse.Namespace) -> int:
    from pitbox.sim.tracks import list_tracks, load_track

    rows = [load_track(name).summary() for name in list_tracks()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(f"{r['name']:<18} {r['config']:<14} {r['length_m'] / 1000:6.3f} km  "
              f"{len(r['corners']):2d} corners  {r['display_name']}")
    return 0
