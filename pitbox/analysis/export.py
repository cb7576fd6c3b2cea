"""Export one lap: plain CSV, and MoTeC CSV that MoTeC i2's CSV importer reads.

Plain CSV: one row per measured sample of the lap (no interpolation), first the time since
the start line and the distance from it, then every scalar numeric channel, each header
``Name [unit]`` with iRacing's unit.

MoTeC CSV ("MoTeC CSV File", the layout i2 writes with *Export > CSV* and reads back with
its CSV import): 14 header lines -- quoted ``"Key","Value"`` metadata rows (Format, Venue,
Vehicle, Driver, Device, Comment, Log Date, Log Time, Sample Rate, Duration, Range, Beacon
Markers) and two blank lines --, then the channel names, their units, two blank lines and
the quoted samples, first column ``Time`` in s from 0. Source of the layout: public
MoTeC-format writers and readers (e.g. BenergyRacing/racing-data-converter,
keystroke-tools/TRACE fixtures) and exports from i2 quoted in their tests; see
docs/analysis.md. Channels get MoTeC's usual names and units (Ground Speed km/h, Throttle
Pos %, Brake Pos %, Steered Angle deg, G Force Lat/Long in G); the rest keep iRacing's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pitbox.analysis.errors import AnalysisError
from pitbox.errors import writing

if TYPE_CHECKING:
    from pitbox.analysis.session import Lap

G = 9.80665
#: iRacing channel -> (MoTeC name, MoTeC unit, factor)
MOTEC_CHANNELS = {
    "Speed": ("Ground Speed", "km/h", 3.6),
    "Throttle": ("Throttle Pos", "%", 100.0),
    "Brake": ("Brake Pos", "%", 100.0),
    "Clutch": ("Clutch Pos", "%", 100.0),
    "SteeringWheelAngle": ("Steered Angle", "deg", 180.0 / np.pi),
    "Gear": ("Gear", "", 1.0),
    "RPM": ("Engine RPM", "rpm", 1.0),
    "LatAccel": ("G Force Lat", "G", 1.0 / G),
    "LongAccel": ("G Force Long", "G", 1.0 / G),
    "VertAccel": ("G Force Vert", "G", 1.0 / G),
    "YawRate": ("Yaw Rate", "deg/s", 180.0 / np.pi),
    "Lat": ("GPS Latitude", "deg", 1.0),
    "Lon": ("GPS Longitude", "deg", 1.0),
    "Alt": ("GPS Altitude", "m", 1.0),
    "FuelLevel": ("Fuel Level", "l", 1.0),
    "LFspeed": ("Wheel Speed FL", "km/h", 3.6),
    "RFspeed": ("Wheel Speed FR", "km/h", 3.6),
    "LRspeed": ("Wheel Speed RL", "km/h", 3.6),
    "RRspeed": ("Wheel Speed RR", "km/h", 3.6),
    "LapDistPct": ("Lap Distance Pct", "%", 100.0),
}


def _scalar_numeric(lap: Lap) -> list[str]:
    src = lap.session.source
    names = []
    a, b, _, _ = lap.rows()
    for n in src.channel_names:
        if n in ("SessionTime",):
            continue
        v = src.columns([n], (a, a + 1))[n]
        if v.ndim == 1 and (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
            names.append(n)
    return names


def lap_samples(lap: Lap, channels: list[str] | None = None) -> pd.DataFrame:
    """The lap's measured samples from its start line to its finish line (time from 0)."""
    names = channels if channels is not None else _scalar_numeric(lap)
    tel = lap.telemetry(names)
    if lap.complete:
        tel = tel[(tel.time_s >= 0) & (tel.time_s <= float(lap.time_s or 0) + 1e-9)]
    else:
        tel = tel.iloc[1:] if len(tel) and tel.time_s.iloc[0] < 0 else tel
    return tel.reset_index(drop=True)


def export_csv(lap: Lap, out: str | os.PathLike[str]) -> Path:
    """A lap as plain CSV: ``time_s``, ``distance_m`` and every scalar channel ``Name [unit]``."""
    tel = lap_samples(lap)
    units = lap.session.source.units
    tel.columns = ["time [s]", "distance [m]", *(f"{c} [{_plain_unit(units.get(c, ''))}]" for c in tel.columns[2:])]
    out = Path(out)
    with writing(out):
        tel.to_csv(out, index=False, float_format="%.6g", lineterminator="\n")
    return out


def _plain_unit(unit: str) -> str:
    """iRacing labels fractions 0-1 as "%"; say what the numbers are."""
    return "0-1" if unit == "%" else unit


def _q(v: object) -> str:
    return '"' + str(v).replace('"', "'") + '"'


def motec_header(lap: Lap, duration_s: float, rate_hz: float) -> list[list[str]]:
    """The 12 metadata rows of a MoTeC CSV file (each a list of cells)."""
    s = lap.session
    start = pd.Timestamp(s.meta.get("start")) if s.meta.get("start") else None
    date = start.strftime("%d/%m/%Y") if start is not None else ""
    time = start.strftime("%H:%M:%S") if start is not None else ""
    return [
        ["Format", "MoTeC CSV File", "", "", "Workbook", ""],
        ["Venue", s.track, "", "", "Worksheet", ""],
        ["Vehicle", s.car, "", "", "Vehicle Desc", str(s.meta.get("car_name", ""))],
        ["Driver", s.driver, "", "", "Engine ID", ""],
        ["Device", "PitBox", "", "", "", ""],
        ["Comment", f"session {s.id} lap_index {lap.lap_index} (lap {int(lap.row.lap)})", "", "", "Session",
         str(s.meta.get("session_type", ""))],
        ["Log Date", date, "", "", "Origin Time", "0.000", "s"],
        ["Log Time", time, "", "", "Start Time", "0.000", "s"],
        ["Sample Rate", f"{rate_hz:.3f}", "Hz", "", "End Time", f"{duration_s:.3f}", "s"],
        ["Duration", f"{duration_s:.3f}", "s", "", "Start Distance", "0", "m"],
        ["Range", "entire outing", "", "", "End Distance", f"{s.track_length_m:.0f}", "m"],
        ["Beacon Markers", f"{duration_s:.3f}" if lap.complete else ""],
    ]


def export_motec(lap: Lap, out: str | os.PathLike[str]) -> Path:
    """A lap as a MoTeC i2 CSV file (see module docs)."""
    tel = lap_samples(lap)
    if len(tel) < 2:
        raise AnalysisError(f"session {lap.session.id} lap_index {lap.lap_index}: fewer than 2 samples to export")
    units = lap.session.source.units
    names, unit_row, cols = ["Time", "Distance"], ["s", "m"], [tel.time_s.to_numpy(), tel.distance_m.to_numpy()]
    used = set(names)
    for c in tel.columns[2:]:
        unit0 = units.get(c, "")
        name, unit, factor = MOTEC_CHANNELS.get(c, (c, unit0, 100.0 if unit0 == "%" else 1.0))
        if name in used:
            name = c
        used.add(name)
        names.append(name)
        unit_row.append(unit)
        cols.append(tel[c].to_numpy(np.float64) * factor)
    rate = float(lap.session.tick_rate)
    duration = float(tel.time_s.iloc[-1])
    out = Path(out)
    with writing(out), open(out, "w", newline="", encoding="utf-8") as f:
        for row in motec_header(lap, duration, rate):
            f.write(",".join(_q(v) if v != "" else "" for v in row) + "\n")
        f.write("\n\n")
        f.write(",".join(_q(n) for n in names) + "\n")
        f.write(",".join(_q(u) for u in unit_row) + "\n")
        f.write("\n\n")
        data = np.column_stack(cols)
        fmts = ["{:.6f}", "{:.4f}"] + ["{:.7g}"] * (len(cols) - 2)  # time to the µs, distance to 0.1 mm
        for row in data:
            f.write(",".join(_q(fmt.format(v)) for fmt, v in zip(fmts, row, strict=True)) + "\n")
    return out
