"""Laps exported by other tools, imported as sessions of the store (then indexed).

Formats (``format="auto"`` tells them apart by their first line):

* ``pitbox``: the plain CSV ``pitbox export --format csv`` writes (``time [s]``,
  ``distance [m]``, then every channel as ``Name [unit]``). It names no track, car or
  driver: give them.
* ``motec``: MoTeC i2's CSV (``"Format","MoTeC CSV File"`` …), as ``pitbox export --format
  motec`` and i2 itself write it. Venue, vehicle, driver, session and log date come from its
  header; MoTeC's channel names and units go back to iRacing's (``Ground Speed`` km/h ->
  ``Speed`` m/s, ``Throttle Pos`` % -> ``Throttle`` 0-1 …).
* ``csv`` / ``json``: any other tool, with a column map ``{field: column}``; fields are
  :data:`FIELDS` (the unit is in the name: ``speed_kmh``, ``brake_pct`` …). JSON is a list of
  records, a dict of columns, or ``{"meta": {...}, "samples": <either>}`` (``meta`` may name
  ``track``, ``car``, ``driver``, ``session_type``, ``date``, ``track_length_m``). Columns the
  map does not name are kept as channels when they are numeric.

Distance: ``distance_m`` (from the line) or ``lap_dist_pct`` (0-1); the lap length comes
from both together, else ``track_length_m``, else a MoTeC header's end distance. Time: when
the file has none it is rebuilt from distance and speed (``dt = 2 ds / (v0 + v1)`` between
samples). The line crossings are placed by extrapolating the first and last samples to
distance 0 and to the lap length at their speed, so a lap exported by PitBox comes back with
its lap time. Several laps in one file (a ``lap`` column, or the distance dropping back at
the line) are laid end to end; each keeps its own time.

The imported session is written as an ``.ibt`` (iRacing's layout, the YAML naming the
source) and imported like any other, so it gets a lap table, a session id and an index
entry, and importing the same file again changes nothing. Errors name the file and column.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pitbox.team.errors import LapFileError

log = logging.getLogger(__name__)

#: Generic field -> (iRacing channel, factor to iRacing's unit, iRacing's unit).
FIELDS: dict[str, tuple[str, float, str]] = {
    "time_s": ("SessionTime", 1.0, "s"),
    "distance_m": ("LapDist", 1.0, "m"),
    "lap_dist_pct": ("LapDistPct", 1.0, "%"),
    "speed_ms": ("Speed", 1.0, "m/s"),
    "speed_kmh": ("Speed", 1 / 3.6, "m/s"),
    "speed_mph": ("Speed", 0.44704, "m/s"),
    "throttle": ("Throttle", 1.0, "%"),
    "throttle_pct": ("Throttle", 0.01, "%"),
    "brake": ("Brake", 1.0, "%"),
    "brake_pct": ("Brake", 0.01, "%"),
    "steering_rad": ("SteeringWheelAngle", 1.0, "rad"),
    "steering_deg": ("SteeringWheelAngle", np.pi / 180, "rad"),
    "gear": ("Gear", 1.0, ""),
    "rpm": ("RPM", 1.0, "revs/min"),
    "lap": ("Lap", 1.0, ""),
    "fuel_l": ("FuelLevel", 1.0, "l"),
    "lat": ("Lat", 1.0, "deg"),
    "lon": ("Lon", 1.0, "deg"),
}
#: Channels rebuilt on import (never taken from the file as they are).
REBUILT = {"SessionTime", "SessionTick", "SessionNum", "Lap", "LapCompleted", "LapDist", "LapDistPct",
           "LapCurrentLapTime"}
INTEGER_CHANNELS = {"Gear", "PlayerTrackSurface", "PlayerCarMyIncidentCount"}
#: iRacing's units of the channels MoTeC renames (see pitbox.analysis.MOTEC_CHANNELS).
IRACING_UNITS = {"Speed": "m/s", "Throttle": "%", "Brake": "%", "Clutch": "%", "SteeringWheelAngle": "rad",
                 "Gear": "", "RPM": "revs/min", "LatAccel": "m/s^2", "LongAccel": "m/s^2", "VertAccel": "m/s^2",
                 "YawRate": "rad/s", "Lat": "deg", "Lon": "deg", "Alt": "m", "FuelLevel": "l", "LFspeed": "m/s",
                 "RFspeed": "m/s", "LRspeed": "m/s", "RRspeed": "m/s", "LapDistPct": "%"}
TICK_RATE = 60
MOTEC_MAGIC = "MoTeC CSV File"


@dataclass
class LapSamples:
    """A file read into iRacing's channel names and units, before the laps are laid out."""

    path: Path
    fmt: str
    samples: pd.DataFrame  #: time_s (optional), distance_m and/or LapDistPct, lap (optional), channels
    units: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)  #: channels written as true/false (booleans)


# -- reading ------------------------------------------------------------------------------------------

def detect_format(path: Path) -> str:
    """``pitbox``, ``motec``, ``json`` or ``csv`` from the file's first characters."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            head = f.read(4096)
    except OSError as exc:
        raise LapFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    first = head.lstrip()
    if first.startswith(("{", "[")):
        return "json"
    if MOTEC_MAGIC in head.split("\n", 1)[0]:
        return "motec"
    if first.lower().startswith(("time [s],distance [m]", "\"time [s]\"")):
        return "pitbox"
    return "csv"


def _is_flag(s: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(s.dtype):
        return True
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        return bool(s.astype(str).str.strip().str.lower().isin(["true", "false"]).all())
    return False


def _to_number(s: pd.Series) -> pd.Series:
    if _is_flag(s):
        return (s.astype(str).str.strip().str.lower() == "true").astype(float)
    return pd.to_numeric(s, errors="coerce")


def read_pitbox_csv(path: Path) -> LapSamples:
    """``time [s]``, ``distance [m]`` and ``Name [unit]`` columns (units: iRacing's, ``0-1`` for
    fractions)."""
    df = _read_csv(path)
    out, units = {}, {}
    for col in df.columns:
        m = re.fullmatch(r"\s*(.+?)\s*\[(.*)\]\s*", str(col))
        name, unit = (m.group(1), m.group(2)) if m else (str(col).strip(), "")
        values = _to_number(df[col])
        if name == "time":
            out["time_s"] = values
        elif name == "distance":
            out["distance_m"] = values
        else:
            out[name] = values
            units[name] = "%" if unit == "0-1" else unit
    flags = {str(c).split(" [")[0] for c in df.columns if _is_flag(df[c])}
    return LapSamples(path, "pitbox", pd.DataFrame(out), units, flags=flags)


def _motec_reverse() -> dict[str, tuple[str, float]]:
    from pitbox.analysis import MOTEC_CHANNELS

    return {motec: (name, factor) for name, (motec, _, factor) in MOTEC_CHANNELS.items()}


def read_motec_csv(path: Path) -> LapSamples:
    """MoTeC CSV: a ``"Key","Value"`` header, channel names, units, then the samples."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise LapFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    rows = list(csv.reader(io.StringIO(text)))
    header: dict[str, list[str]] = {}
    i = 0
    while i < len(rows) and not (rows[i] and rows[i][0].strip() == "Time"):
        r = rows[i]
        if r and r[0].strip():
            header[r[0].strip()] = r[1:]
            if len(r) > 5 and r[4].strip():  # the right-hand key/value pair of the header row
                header[r[4].strip()] = r[5:]
        i += 1
    if i + 1 >= len(rows):
        raise LapFileError(f"{path}: MoTeC CSV: no channel-name row starting with \"Time\" after the header")
    names, unit_row = [c.strip() for c in rows[i]], [c.strip() for c in rows[i + 1]]
    data = [r for r in rows[i + 2:] if r and any(c.strip() for c in r)]
    if not data:
        raise LapFileError(f"{path}: MoTeC CSV: no samples after the units row")
    width = len(names)
    bad = next((k for k, r in enumerate(data) if len(r) != width), None)
    if bad is not None:
        raise LapFileError(f"{path}: MoTeC CSV: sample row {bad + 1} has {len(data[bad])} values, "
                           f"expected {width} (one per channel)")
    raw = pd.DataFrame(data, columns=names)
    reverse = _motec_reverse()
    out: dict[str, pd.Series] = {}
    units: dict[str, str] = {}
    for name, unit in zip(names, unit_row + [""] * (width - len(unit_row)), strict=False):
        values = pd.to_numeric(raw[name], errors="coerce")
        if name == "Time":
            out["time_s"] = values
        elif name == "Distance":
            out["distance_m"] = values
        elif name in reverse:
            ir, factor = reverse[name]
            out[ir] = values / factor
            units[ir] = IRACING_UNITS.get(ir, unit)
        else:
            out[name] = values / 100.0 if unit == "%" else values
            units[name] = unit

    def value(key: str) -> str:
        v = header.get(key) or [""]
        return v[0].strip()

    meta: dict[str, Any] = {"track": value("Venue"), "car": value("Vehicle"), "driver": value("Driver"),
                            "session_type": value("Session"), "car_name": value("Vehicle Desc")}
    date, time_ = value("Log Date"), value("Log Time")
    if date:
        try:
            meta["date"] = datetime.strptime(f"{date} {time_ or '00:00:00'}", "%d/%m/%Y %H:%M:%S").replace(
                tzinfo=timezone.utc)
        except ValueError:
            log.info("%s: Log Date %r / Log Time %r not read (expected dd/mm/yyyy hh:mm:ss)", path, date, time_)
    try:
        end = float(value("End Distance"))
        if end > 0:
            meta["end_distance_m"] = end
    except ValueError:
        pass
    return LapSamples(path, "motec", pd.DataFrame(out), units, {k: v for k, v in meta.items() if v})


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, skipinitialspace=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise LapFileError(f"{path}: cannot read: {exc}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LapFileError(f"{path}: not a CSV table: {str(exc).strip()}") from None


def _read_json(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise LapFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise LapFileError(f"{path}: not JSON: {exc}") from None
    meta: dict[str, Any] = {}
    if isinstance(doc, dict) and "samples" in doc:
        meta = doc.get("meta") or {}
        if not isinstance(meta, dict):
            raise LapFileError(f"{path}: \"meta\": expected an object of track, car, driver …")
        doc = doc["samples"]
    try:
        if isinstance(doc, list):
            if not all(isinstance(r, dict) for r in doc):
                raise ValueError("a list whose items are not all objects")
            df = pd.DataFrame.from_records(doc)
        elif isinstance(doc, dict):
            df = pd.DataFrame({k: pd.Series(v) for k, v in doc.items()})
        else:
            raise ValueError(f"a {type(doc).__name__}")
    except (ValueError, TypeError) as exc:
        raise LapFileError(f"{path}: samples: expected a list of records or an object of columns, found {exc}") from None
    return df, meta


def read_generic(path: Path, fmt: str, column_map: Mapping[str, str] | None) -> LapSamples:
    """A CSV or JSON table with a column map ``{field: column}`` (see :data:`FIELDS`)."""
    df, meta = _read_json(path) if fmt == "json" else (_read_csv(path), {})
    if df.empty:
        raise LapFileError(f"{path}: no samples")
    cmap = dict(column_map or {})
    if not cmap:
        raise LapFileError(f"{path}: a {fmt.upper()} file from another tool needs a column map "
                           f"(--map FIELD=COLUMN; fields: {', '.join(FIELDS)}); its columns are: "
                           f"{', '.join(map(str, df.columns))}")
    out: dict[str, pd.Series] = {}
    units: dict[str, str] = {}
    for fld, column in cmap.items():
        if fld not in FIELDS:
            raise LapFileError(f"{path}: column map: unknown field {fld!r}; expected one of {', '.join(FIELDS)}")
        if column not in df.columns:
            raise LapFileError(f"{path}: column {column!r} (for {fld}) not found; the columns are: "
                               f"{', '.join(map(str, df.columns))}")
        values = _to_number(df[column])
        if values.isna().all():
            raise LapFileError(f"{path}: column {column!r} (for {fld}): expected numbers, found e.g. "
                               f"{df[column].iloc[0]!r}")
        ir, factor, unit = FIELDS[fld]
        key = {"SessionTime": "time_s", "LapDist": "distance_m", "Lap": "lap"}.get(ir, ir)
        if key in out:
            raise LapFileError(f"{path}: column map: two columns for {ir} ({fld!r} and another)")
        out[key] = values * factor
        units[ir] = unit
    used = set(cmap.values())
    flags: set[str] = set()
    for col in df.columns:
        if col in used:
            continue
        values = _to_number(df[col])
        name = re.sub(r"\W+", "_", str(col)).strip("_")[:31] or "column"
        if values.notna().any() and name not in out and name not in REBUILT:
            out[name] = values
            units.setdefault(name, "")
            if _is_flag(df[col]):
                flags.add(name)
    return LapSamples(path, fmt, pd.DataFrame(out), units, meta, flags)


def read_lap_file(path: str | os.PathLike[str], format: str = "auto",
                  column_map: Mapping[str, str] | None = None) -> LapSamples:
    """Read a lap file into iRacing's channel names and units (see the module docs)."""
    path = Path(path)
    if not path.is_file():
        raise LapFileError(f"{path}: no such file")
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in ("pitbox", "motec", "csv", "json"):
        raise LapFileError(f"{path}: format {format!r}: expected auto, pitbox, motec, csv or json")
    if column_map and fmt in ("pitbox", "motec"):
        fmt = "csv"  # the user says which column is which
    if fmt == "pitbox":
        return read_pitbox_csv(path)
    if fmt == "motec":
        return read_motec_csv(path)
    return read_generic(path, fmt, column_map)


# -- laying the laps out as iRacing would record them ----------------------------------------------

def _track_length(ls: LapSamples, given: float | None) -> float:
    s = ls.samples
    if given is not None:
        if not given > 0:
            raise LapFileError(f"{ls.path}: track length {given!r}: expected a positive number of metres")
        return float(given)
    if "distance_m" in s and "LapDistPct" in s:
        d, p = s.distance_m.to_numpy(np.float64), s.LapDistPct.to_numpy(np.float64)
        ok = np.isfinite(d) & np.isfinite(p) & (p > 0.05) & (p < 0.95)
        if ok.sum() >= 3:
            return float(np.median(d[ok] / p[ok]))
    for key in ("track_length_m", "end_distance_m"):
        if ls.meta.get(key):
            return float(ls.meta[key])
    raise LapFileError(f"{ls.path}: cannot tell the lap length: give --track-length, or a file with both a "
                       f"distance and a lap-fraction (LapDistPct / lap_dist_pct) column")


def _split_laps(ls: LapSamples, length: float) -> list[pd.DataFrame]:
    s = ls.samples
    if "distance_m" not in s:
        if "LapDistPct" not in s:
            raise LapFileError(f"{ls.path}: no distance: map a distance_m or lap_dist_pct column")
        s = s.assign(distance_m=s.LapDistPct.astype(np.float64) * length)
    s = s[np.isfinite(s.distance_m.to_numpy(np.float64))]
    if "time_s" in s:
        bad = s.time_s.isna()
        if bad.any():
            raise LapFileError(f"{ls.path}: time column: {int(bad.sum())} samples are not numbers "
                               f"(first at row {int(np.flatnonzero(bad.to_numpy())[0]) + 1})")
    if "lap" in s:
        groups = [g for _, g in s.groupby(s.lap.astype(np.int64), sort=True)]
    else:
        d = s.distance_m.to_numpy(np.float64)
        cut = np.flatnonzero(np.diff(d) < -0.5 * length) + 1
        groups = [s.iloc[a:b] for a, b in zip(np.r_[0, cut], np.r_[cut, len(s)], strict=True)]
    return [g.reset_index(drop=True) for g in groups if len(g) >= 2]


def _lap_time(ls: LapSamples, lap: pd.DataFrame, length: float, k: int) -> tuple[np.ndarray, float, float]:
    """(sample times, start-line time, finish-line time) [s] of one lap."""
    d = lap.distance_m.to_numpy(np.float64)
    speed = lap.Speed.to_numpy(np.float64) if "Speed" in lap else None
    if np.any(np.diff(d) < 0):
        i = int(np.flatnonzero(np.diff(d) < 0)[0])
        raise LapFileError(f"{ls.path}: lap {k}: distance goes back at sample {i + 2} ({d[i]:.3f} -> {d[i + 1]:.3f} m)")
    if "time_s" in lap:
        t = lap.time_s.to_numpy(np.float64)
        if np.any(np.diff(t) <= 0):
            i = int(np.flatnonzero(np.diff(t) <= 0)[0])
            raise LapFileError(f"{ls.path}: lap {k}: time does not increase at sample {i + 2}")
    else:
        if speed is None:
            raise LapFileError(f"{ls.path}: no time column and no speed to rebuild it from: map time_s, or a "
                               f"speed (speed_ms, speed_kmh or speed_mph)")
        if np.any(~np.isfinite(speed)) or np.any(speed <= 0.5):
            i = int(np.flatnonzero(~np.isfinite(speed) | (speed <= 0.5))[0])
            raise LapFileError(f"{ls.path}: lap {k}: speed column: sample {i + 1} is {float(speed[i])!r} m/s; rebuilding "
                               f"time from distance and speed needs a moving car")
        dt = 2.0 * np.diff(d) / (speed[:-1] + speed[1:])
        t = np.concatenate([[0.0], np.cumsum(dt)])
    if speed is not None and np.isfinite(speed[0]) and speed[0] > 0.5 and np.isfinite(speed[-1]) and speed[-1] > 0.5:
        t0 = t[0] - d[0] / speed[0]
        t1 = t[-1] + max(length - d[-1], 0.0) / speed[-1]
    else:  # no speed: extrapolate the first and last steps
        t0 = t[0] - d[0] * (t[1] - t[0]) / max(d[1] - d[0], 1e-9)
        t1 = t[-1] + max(length - d[-1], 0.0) * (t[-1] - t[-2]) / max(d[-1] - d[-2], 1e-9)
    return t, float(t0), float(t1)


#: GPS positions recorded coarser than this [deg] (about 0.2 m) cannot place the car on a track
#: map: they are left out, and corners are found from yaw rate or lateral acceleration instead.
GPS_RESOLUTION_DEG = 2e-6


def _coarse_gps(ls: LapSamples) -> list[str]:
    """``Lat``/``Lon`` (and ``Alt``) when either is quantised coarser than :data:`GPS_RESOLUTION_DEG`
    (a CSV written with 6 significant digits keeps 46.61 to 1e-4 degrees: 11 m)."""
    steps = []
    for c in ("Lat", "Lon"):
        if c not in ls.samples:
            return []
        v = np.unique(ls.samples[c].dropna().to_numpy(np.float64))
        d = np.diff(v)
        steps.append(float(d[d > 0].min()) if (d > 0).any() else np.inf)
    if max(steps) <= GPS_RESOLUTION_DEG:
        return []
    log.info("%s: Lat/Lon recorded to %.1g degrees: too coarse for a track map, left out (corners come from "
             "yaw rate or lateral acceleration)", ls.path, max(steps))
    return [c for c in ("Lat", "Lon", "Alt") if c in ls.samples]


def lay_out(ls: LapSamples, length: float) -> tuple[dict[str, np.ndarray], dict[str, str], int]:
    """Channels of a session holding the file's laps end to end (``SessionTime`` from 0),
    with a row on each line crossing so the lap table sees every lap start and end there.
    Returns (channels, units, number of laps)."""
    laps = _split_laps(ls, length)
    if not laps:
        raise LapFileError(f"{ls.path}: no lap with at least 2 samples")
    coarse = _coarse_gps(ls)
    extra = [c for c in ls.samples.columns
             if c not in REBUILT and c not in ("time_s", "distance_m", "lap") and c not in coarse]
    rows: dict[str, list[np.ndarray]] = {c: [] for c in ["SessionTime", "Lap", "LapDistPct", "LapDist", *extra]}
    offset = 0.0
    for k, lap in enumerate(laps, start=1):
        t, t0, t1 = _lap_time(ls, lap, length, k)
        d = np.clip(lap.distance_m.to_numpy(np.float64), 0.0, length)
        first = k == 1
        shift = offset - t0  # this lap's start line falls where the previous lap's finish line did
        times = [[offset]] if first else []
        times += [t + shift, [t1 + shift]]
        rows["SessionTime"].append(np.concatenate(times))
        rows["Lap"].append(np.concatenate(([[k - 1]] if first else []) + [np.full(len(t), k), [k + 1]]))
        pct = d / length
        rows["LapDistPct"].append(np.concatenate(([[1.0]] if first else []) + [pct, [0.0]]))
        rows["LapDist"].append(np.concatenate(([[length]] if first else []) + [d, [0.0]]))
        for c in extra:
            v = lap[c].to_numpy(np.float64) if c in lap else np.full(len(t), np.nan)
            v = pd.Series(v).ffill().bfill().fillna(0.0).to_numpy()
            rows[c].append(np.concatenate(([[v[0]]] if first else []) + [v, [v[-1]]]))
        offset = t1 + shift
    ch = {c: np.concatenate(v) for c, v in rows.items()}
    out: dict[str, np.ndarray] = {"SessionTime": ch["SessionTime"].astype(np.float64),
                                  "Lap": ch["Lap"].astype(np.int32),
                                  "LapDistPct": ch["LapDistPct"].astype(np.float32),
                                  "LapDist": ch["LapDist"].astype(np.float32)}
    for c in extra:
        v = ch[c]
        counter = ls.units.get(c, "") == "" or ls.units.get(c, "").startswith("irsdk_")
        whole = bool(np.all(np.isfinite(v)) and np.all(v == np.round(v)) and np.all(np.abs(v) < 2**31))
        if c in ls.flags:
            out[c] = v.astype(bool)
        elif c in INTEGER_CHANNELS or (counter and whole):
            out[c] = v.astype(np.int32)
        else:
            out[c] = v.astype(np.float32)
    units = {"SessionTime": "s", "Lap": "", "LapDistPct": "%", "LapDist": "m",
             **{c: ls.units.get(c, "") for c in extra}}
    return out, units, len(laps)


# -- the session YAML ------------------------------------------------------------------------------

def _yaml_value(v: object) -> str:
    """A YAML scalar that reads back as this exact text (quoted when YAML would read a number,
    a date, a boolean or an octal like ``0123`` instead, or when it holds YAML's punctuation)."""
    import yaml

    text = str(v)
    try:
        plain = yaml.safe_load(text) == text
    except yaml.YAMLError:
        plain = False
    special = re.search(r"[:#\"'\[\]{},&*!|>%@`]|^\s|\s$|^$", text)
    return text if plain and not special else json.dumps(text, ensure_ascii=False)


def session_yaml(track: str, track_config: str, length_m: float, car: str, car_name: str, driver: str,
                 session_type: str, source: str, fmt: str) -> str:
    """A session YAML in iRacing's layout naming the imported file (UTF-8, flagged as iRacing does)."""
    from pitbox.sim.session_info import render

    q = _yaml_value
    sections = {
        "WeekendInfo": {
            "Encoding": "UTF8", "TrackName": q(track), "TrackConfigName": q(track_config),
            "TrackDisplayName": q(track), "TrackLength": f"{length_m / 1000:.6f} km",
            "source": "imported", "ImportedFrom": q(source), "ImportFormat": fmt,
        },
        "SessionInfo": {"Sessions": [{"SessionNum": "0", "SessionType": q(session_type),
                                      "SessionName": q(session_type.upper())}]},
        "DriverInfo": {"DriverCarIdx": "0", "DriverSetupName": "",
                       "Drivers": [{"CarIdx": "0", "UserName": q(driver), "CarPath": q(car),
                                    "CarScreenName": q(car_name or car)}]},
        "SplitTimeInfo": {"Sectors": [{"SectorNum": "0", "SectorStartPct": "0.000000"}]},
    }
    return render(sections)


# -- importing ----------------------------------------------------------------------------------------

def _start(date: str | datetime | None, ls: LapSamples) -> datetime:
    value = date if date is not None else ls.meta.get("date")
    if value is None:
        return datetime.fromtimestamp(int(ls.path.stat().st_mtime), tz=timezone.utc)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        ts = pd.Timestamp(str(value))
    except ValueError:
        raise LapFileError(f"{ls.path}: date {value!r}: expected ISO 8601, e.g. 2025-03-01T18:30:00") from None
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def import_laps(path: str | os.PathLike[str], data: str | os.PathLike[str] | None = None, *, format: str = "auto",
                column_map: Mapping[str, str] | None = None, track: str | None = None, track_config: str = "",
                track_length_m: float | None = None, car: str | None = None, driver: str | None = None,
                session_type: str | None = None, date: str | datetime | None = None, index: bool = True) -> Any:
    """Import the laps of one file as a session of the store ``data`` (then index it).

    Returns the :class:`pitbox.store.ImportResult` (``"imported"``, or ``"present"`` when the
    same file was imported before). Raises :class:`LapFileError` naming the file and column
    when the file cannot be read as laps.
    """
    from pitbox.config import data_dir
    from pitbox.ibt.writer import write_ibt
    from pitbox.store import import_file

    root = data_dir(data)
    ls = read_lap_file(path, format, column_map)
    meta = {**{k: v for k, v in ls.meta.items() if v}}
    track = track or meta.get("track")
    car = car or meta.get("car")
    driver = driver or meta.get("driver")
    missing = [n for n, v in (("track", track), ("car", car), ("driver", driver)) if not v]
    if missing:
        raise LapFileError(f"{ls.path}: {', '.join(missing)} not named in the file: give "
                           f"{' '.join('--' + n for n in missing)}")
    length = _track_length(ls, track_length_m if track_length_m is not None else meta.get("track_length_m"))
    channels, units, n_laps = lay_out(ls, length)
    start = _start(date if date is not None else meta.get("date"), ls)
    yaml_text = session_yaml(str(track), track_config or str(meta.get("track_config") or ""), length, str(car),
                             str(meta.get("car_name") or ""), str(driver),
                             session_type or str(meta.get("session_type") or "Imported"), ls.path.name, ls.fmt)
    with tempfile.TemporaryDirectory(prefix="pitbox-laps-") as tmp:
        ibt = write_ibt(Path(tmp) / f"{ls.path.stem}.ibt", channels, yaml_text, units=units,
                        tick_rate=TICK_RATE, start_date=int(start.timestamp()))
        result = import_file(ibt, root, source_name=ls.path.name, source_kind=ls.fmt)
    result.source = ls.path
    log.info("%s: %d lap(s) as session %s (%s)", ls.path, n_laps, ", ".join(result.sessions), result.status)
    if index and result.written:
        from pitbox.store import Store
        from pitbox.team.index import index_after_store

        Store(root).refresh()
        index_after_store(root, result.written)
    return result


__all__ = ["FIELDS", "LapSamples", "detect_format", "import_laps", "lay_out", "read_lap_file"]
