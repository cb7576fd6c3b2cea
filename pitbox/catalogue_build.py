"""Regenerate the channel catalogue (``pitbox/data/channels.csv``) from real iRacing files.

Usage::

    python -m pitbox.catalogue_build /path/to/shared/data/real [--out pitbox/data/channels.csv]

Every readable ``.ibt`` file and live memory dump in the folder is opened header-only (no
rows are read). The newest ``.ibt`` and the newest live dump (by iRacing build) form the
*reference pair*: a channel in both is ``both``, only in the ``.ibt`` is ``disk``, only in
the dump is ``live``. Channels seen only in older files are classified by what was seen
(``observed``) or, when they were seen on one side only, by analogy with the reference
channels of the same family (``LFshockDefl_ST`` is like ``CFshockDefl_ST``). The rules that
decide the interpolation kind are the tables at the top of this module. The output is
byte-for-byte deterministic for the same input files.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pitbox.errors import IbtFormatError
from pitbox.ibt.layout import VarHeader, VarType
from pitbox.ibt.reader import TelemetryFile, detect_kind, open_telemetry

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "channels.csv"

COLUMNS = [
    "name", "unit", "description", "type", "count_disk", "count_live", "availability",
    "live_float6", "interpolation", "count_as_time", "evidence", "builds", "files",
]

#: Floats that hold a setting or a value updated once per lap: step changes, never interpolated.
DISCRETE_FLOAT_PATTERNS = [
    r"^dc[A-Z]", r"^dp[A-Z]", r"^PitSv", r"^Lap(Best|Last)N?LapTime$", r"^CarIdx(Best|Last)LapTime$",
    r"coldPressure$",
    r"wear[LMR]$", r"^PlayerCarSL\w+RPM$", r"^PlayerCar(WeightPenalty|PowerAdjust)$",
    r"^SteeringWheel(MaxForceNm|PeakForceNm|AngleMax|Limiter|PctDamper|PctIntensity|PctSmoothing)$",
    r"^SessionTimeTotal$",
]
#: Continuous channels that wrap around (lap fraction 1 → 0, angles ±π): interpolate modulo the period.
CYCLIC = {"LapDistPct", "CarIdxLapDistPct", "Yaw", "YawNorth", "WindDir", "SolarAzimuth"}
#: Corner and axle prefixes stripped to find a channel's family (``LFshockDefl`` → ``shockDefl``).
_FAMILY_PREFIX = re.compile(r"^(LF|RF|LR|RR|CF|CR|ROLLF|ROLLR|Tire(LF|RF|LR|RR)_)(?=[a-zA-Z])")
_SETTING_PREFIX = re.compile(r"^(dc|dp)(?=[A-Z])")


@dataclass(frozen=True)
class Scanned:
    """One real file, header only."""

    name: str
    kind: str  #: "ibt" or "livedump"
    build: str  #: WeekendInfo.BuildVersion, or "unknown-v<header version>"
    rank: tuple  #: sort key, newest last
    variables: tuple[VarHeader, ...]


def _build_of(f: TelemetryFile) -> str:
    try:
        build = (f.session_info.get("WeekendInfo") or {}).get("BuildVersion")
    except IbtFormatError:
        build = None
    return str(build) if build else f"unknown-v{f.header.version}"


def scan_file(path: Path) -> Scanned | None:
    """Header-only scan of one file; None (logged) when it is not a readable telemetry file."""
    if detect_kind(path) is None:
        return None
    try:
        with open_telemetry(path) as f:
            build = _build_of(f)
            start = f.disk.session_start_date if f.disk else 0
            known = not build.startswith("unknown")
            rank = (known, build if known else "", f.header.version, start, path.name)
            return Scanned(path.name, f.kind, build, rank, tuple(f.variables))
    except IbtFormatError as exc:
        log.warning("skipping %s: %s", path.name, exc)
        return None


def scan_folder(folder: Path) -> list[Scanned]:
    """Every telemetry file directly in ``folder``, oldest build first."""
    if not folder.is_dir():
        raise IbtFormatError(folder, "path", "a folder of .ibt files and live dumps", "not a folder")
    found = [s for p in sorted(folder.iterdir()) if p.is_file() and (s := scan_file(p))]
    kinds = {s.kind for s in found}
    if kinds != {"ibt", "livedump"}:
        raise IbtFormatError(folder, "files", "at least one .ibt file and one live dump", sorted(kinds))
    return sorted(found, key=lambda s: s.rank)


def merge_orders(orders: Sequence[Sequence[str]]) -> list[str]:
    """One channel order consistent with each file's order, the first list taking precedence.

    A name missing from the result is placed right after its nearest predecessor in its own
    list that the result already holds (or first when there is none).
    """
    result: list[str] = list(orders[0]) if orders else []
    pos = {n: i for i, n in enumerate(result)}
    for order in orders[1:]:
        prev: str | None = None
        for name in order:
            if name not in pos:
                at = pos[prev] + 1 if prev is not None else 0
                result.insert(at, name)
                pos = {n: i for i, n in enumerate(result)}
            prev = name
    return result


def family(name: str) -> str | None:
    """The family a channel shares with its siblings on other corners, or None."""
    if _SETTING_PREFIX.match(name):
        return name[:2] + "*"
    stripped = _FAMILY_PREFIX.sub("", name)
    return stripped if stripped != name else None


def interpolation(name: str, vtype: VarType) -> str:
    """``continuous``, ``cyclic`` (continuous, wraps) or ``discrete`` (hold the last value)."""
    if vtype not in (VarType.FLOAT, VarType.DOUBLE):
        return "discrete"
    if name in CYCLIC:
        return "cyclic"
    if any(re.search(p, name) for p in DISCRETE_FLOAT_PATTERNS):
        return "discrete"
    return "continuous"


def _reference_availability(name: str, ref_disk: dict, ref_live: dict) -> str | None:
    if name in ref_disk and name in ref_live:
        return "both"
    if name in ref_disk:
        return "disk"
    if name in ref_live:
        return "live"
    return None


def _by_analogy(name: str, ref_avail: dict[str, str]) -> str | None:
    fam = family(name)
    if fam is None:
        return None
    votes = [a for n, a in ref_avail.items() if family(n) == fam]
    if name.endswith("_ST"):
        votes = [a for n, a in ref_avail.items() if n.endswith("_ST") and family(n) == fam] or \
            [a for n, a in ref_avail.items() if n.endswith("_ST")]
    if not votes:
        return None
    return max(sorted(set(votes)), key=votes.count)


def build_rows(scans: list[Scanned]) -> list[dict[str, str]]:
    """The catalogue as CSV rows (strings), in merged iRacing channel order."""
    ref_disk = {v.name: v for v in [s for s in scans if s.kind == "ibt"][-1].variables}
    ref_live = {v.name: v for v in [s for s in scans if s.kind == "livedump"][-1].variables}
    newest_first = scans[::-1]
    live_first = sorted(newest_first, key=lambda s: s.kind != "livedump")  # stable: newest live first
    order = merge_orders([[v.name for v in s.variables] for s in live_first])
    ref_avail = {n: a for n in order if (a := _reference_availability(n, ref_disk, ref_live))}
    rows = []
    for name in order:
        seen = [(s, v) for s in scans for v in s.variables if v.name == name]
        newest = seen[-1][1]
        disk = [v for s, v in seen if s.kind == "ibt"]
        live = [v for s, v in seen if s.kind == "livedump"]
        if name in ref_avail:
            avail, evidence = ref_avail[name], "reference"
        elif disk and live:
            avail, evidence = "both", "observed"
        elif (guess := _by_analogy(name, ref_avail)) is not None:
            avail, evidence = guess, "analogy"
        else:
            avail, evidence = ("disk" if disk else "live"), "observed"
        count_disk = disk[-1].count if disk else None
        count_live = live[-1].count if live else None
        newest_live = live[-1] if live else newest
        rows.append({
            "name": name,
            "unit": newest.unit,
            "description": newest.desc,
            "type": newest.type.name.lower(),
            "count_disk": "" if count_disk is None else str(count_disk),
            "count_live": "" if count_live is None else str(count_live),
            "availability": avail,
            "live_float6": str(count_disk == 1 and count_live == 6).lower(),
            "interpolation": interpolation(name, newest.type),
            "count_as_time": str(bool(newest_live.count_as_time)).lower(),
            "evidence": evidence,
            "builds": ";".join(dict.fromkeys(s.build for s, _ in seen)),
            "files": ";".join(s.name for s, _ in seen),
        })
    return rows


def render_csv(rows: list[dict[str, str]]) -> str:
    """CSV text with ``\\n`` line ends (identical on every platform)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def build_catalogue_text(folder: str | Path) -> str:
    """The catalogue CSV built from the files in ``folder``."""
    return render_csv(build_rows(scan_folder(Path(folder))))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pitbox.catalogue_build", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="folder holding real .ibt files and live memory dumps")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"CSV to write (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        text = build_catalogue_text(args.folder)
    except IbtFormatError as exc:
        print(f"catalogue_build: error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(text.encode("utf-8"))
    print(f"wrote {args.out} ({text.count(chr(10)) - 1} channels)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
