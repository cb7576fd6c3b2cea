"""Sector times, fuel per lap, conditions and car setup of a session.

Sectors come from the YAML's ``SplitTimeInfo.Sectors[].SectorStartPct``; a sector's time
is the time between the car's passing of its start and its end, interpolated from the
original samples (so the sectors of a complete lap add up to its lap time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pitbox.analysis.session import Session


def sector_starts(info: dict[str, Any]) -> list[float]:
    """``SectorStartPct`` of each sector (fractions of the lap, first is 0); ``[0.0]`` when absent."""
    secs = (info.get("SplitTimeInfo") or {}).get("Sectors") or []
    starts = sorted({float(s.get("SectorStartPct", 0.0)) for s in secs if isinstance(s, dict)})
    if not starts or starts[0] > 1e-9:
        starts = [0.0, *starts]
    return [s for s in starts if 0.0 <= s < 1.0]


def sector_times(session: Session) -> pd.DataFrame:
    """Per complete lap: ``lap_index``, ``valid``, ``s1_s``, ``s2_s`` … [s] and their sum."""
    from pitbox.analysis.session import lap_time_distance

    starts = sector_starts(session.info)
    length = session.track_length_m
    bounds = np.array([*starts, 1.0]) * length
    names = [f"s{i + 1}_s" for i in range(len(starts))]
    rows = []
    for _, row in session.source.laps[session.source.laps.complete].iterrows():
        t, d = lap_time_distance(session, row)
        times = np.diff(np.interp(bounds, d, t))
        rows.append({"lap_index": int(row.lap_index), "lap": int(row.lap), "valid": bool(row.valid),
                     **dict(zip(names, times, strict=True)), "sum_s": float(times.sum())})
    df = pd.DataFrame(rows, columns=["lap_index", "lap", "valid", *names, "sum_s"])
    df.attrs.update({"sector_start_pct": starts, "track_length_m": length})
    return df


def best_sectors(session: Session, include_invalid: bool = False) -> pd.DataFrame:
    """Best time of each sector over valid laps (all complete laps if ``include_invalid``),
    with the lap it came from; ``optimal_lap_s`` in ``attrs`` is their sum."""
    st = sector_times(session)
    if not include_invalid:
        st = st[st.valid]
    names = [c for c in st.columns if c.startswith("s") and c.endswith("_s") and c != "sum_s"]
    starts = st.attrs.get("sector_start_pct", [])
    rows = []
    for i, c in enumerate(names):
        if st.empty:
            rows.append({"sector": i + 1, "start_pct": starts[i], "best_s": np.nan, "lap_index": None})
            continue
        k = st[c].idxmin()
        rows.append({"sector": i + 1, "start_pct": starts[i], "best_s": float(st.loc[k, c]),
                     "lap_index": int(st.loc[k, "lap_index"])})
    df = pd.DataFrame(rows)
    df.attrs["optimal_lap_s"] = float(df.best_s.sum()) if len(df) and df.best_s.notna().all() else None
    return df


def fuel_per_lap(session: Session) -> pd.DataFrame:
    """Per lap: fuel at the start and end line [l] and fuel used [l] (``FuelLevel`` interpolated
    at the crossing times); NaN for laps that do not cross both lines or without ``FuelLevel``."""
    laps = session.source.laps
    out = laps[["lap_index", "lap", "complete", "valid"]].copy()
    out["fuel_start_l"] = out["fuel_end_l"] = out["fuel_used_l"] = np.nan
    if not session.source.has("FuelLevel"):
        return out
    c = session.channels(["SessionTime", "FuelLevel"])
    t, fuel = c["SessionTime"].astype(np.float64), c["FuelLevel"].astype(np.float64)
    for i, row in laps.iterrows():
        if not row.complete:
            continue
        a, b = max(int(row.start_row) - 1, 0), min(int(row.end_row) + 1, len(t))
        f0, f1 = np.interp([row.start_s, row.end_s], t[a:b], fuel[a:b])
        out.loc[i, ["fuel_start_l", "fuel_end_l", "fuel_used_l"]] = [f0, f1, f0 - f1]
    return out


#: irsdk_TrackWetness values, as the ``TrackWetness`` channel codes them.
WETNESS = ("unknown", "dry", "mostly dry", "very lightly wet", "lightly wet", "moderately wet",
           "very wet", "extremely wet")


def _number(text: object) -> float | None:
    try:
        return float(str(text).split()[0])
    except (ValueError, IndexError):
        return None


def conditions(session: Session) -> dict[str, Any]:
    """Air and track temperature [°C], wetness, skies and weather of a session (the YAML's
    values, and the telemetry's averages where the file has ``AirTemp``/``TrackTemp*``)."""
    wi = session.info.get("WeekendInfo") or {}
    opts = wi.get("WeekendOptions") or {}
    out: dict[str, Any] = {
        "air_temp_c": _number(wi.get("TrackAirTemp")),
        "track_temp_c": _number(wi.get("TrackSurfaceTemp")),
        "skies": wi.get("TrackSkies"),
        "weather": wi.get("TrackWeatherType"),
        "wetness": wi.get("TrackWetness", opts.get("TrackWetness")),
        "precipitation": wi.get("TrackPrecipitation"),
        "humidity": wi.get("TrackRelativeHumidity"),
        "wind": wi.get("TrackWindVel"),
    }
    for key, channel in (("air_temp_c_measured", "AirTemp"), ("track_temp_c_measured", "TrackTempCrew"),
                         ("track_temp_c_measured", "TrackTemp")):
        if session.source.has(channel) and key not in out:
            values = session.channels([channel])[channel].astype(np.float64)
            out[key] = float(np.nanmean(values)) if len(values) else None
    if session.source.has("TrackWetness"):
        codes = session.channels(["TrackWetness"])["TrackWetness"].astype(np.int64)
        if len(codes):
            code = int(np.bincount(np.clip(codes, 0, len(WETNESS) - 1)).argmax())
            out["wetness_measured"] = WETNESS[code]
    if session.source.has("WeatherDeclaredWet"):
        out["declared_wet"] = bool(np.any(session.channels(["WeatherDeclaredWet"])["WeatherDeclaredWet"]))
    return out


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def car_setup(session: Session) -> dict[str, Any]:
    """The YAML's ``CarSetup`` flattened to ``{"Chassis.LeftFront.CornerWeight": "2100 N", …}``
    (empty when the session has none)."""
    setup = session.info.get("CarSetup") or {}
    flat = _flatten(setup)
    flat.pop("UpdateCount", None)
    return flat


def setup_diff(a: Session, b: Session) -> pd.DataFrame:
    """Setup items that differ between two sessions: ``item``, ``a``, ``b``."""
    sa, sb = car_setup(a), car_setup(b)
    rows = [{"item": k, "a": sa.get(k), "b": sb.get(k)} for k in sorted(set(sa) | set(sb))
            if str(sa.get(k)) != str(sb.get(k))]
    return pd.DataFrame(rows, columns=["item", "a", "b"])
