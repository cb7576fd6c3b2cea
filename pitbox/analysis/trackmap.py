"""Track maps: positions in metres for every point of a lap.

Three sources, best first:

1. ``Lat``/``Lon`` of the lap itself (``.ibt`` files), projected to a local east/north plane
   in metres around the track's reference point (``WeekendInfo.TrackLatitude/Longitude``,
   else the mean position), so laps of different sessions share one frame.
2. A :class:`TrackModel` (``LapDistPct`` -> x, y) learned from another session of the same
   track that has GPS -- what live recordings (no GPS in iRacing's live data) use.
3. Dead reckoning: heading from ``Yaw`` (or integrated ``YawRate``) along the distance grid,
   with the closing error of a complete lap spread linearly over the lap.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pitbox.analysis.align import Trace
from pitbox.errors import MissingChannel

if TYPE_CHECKING:
    from pitbox.analysis.session import Session

log = logging.getLogger(__name__)
WGS84_A_M = 6_378_137.0  #: semi-major axis
WGS84_E2 = 6.694_379_990_14e-3  #: first eccentricity squared


def _deg(text: object) -> float | None:
    try:
        return float(str(text).split()[0])
    except (ValueError, IndexError):
        return None


def track_origin(info: dict) -> tuple[float, float] | None:
    """(lat, lon) [deg] of the track's reference point from the YAML, if it has one."""
    wi = info.get("WeekendInfo") or {}
    lat, lon = _deg(wi.get("TrackLatitude")), _deg(wi.get("TrackLongitude"))
    if lat is None or lon is None or (lat == 0 and lon == 0):
        return None
    return lat, lon


def project(lat_deg: np.ndarray, lon_deg: np.ndarray, origin: tuple[float, float] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Local east (x) and north (y) [m] of GPS positions: a tangent plane at ``origin`` with
    the WGS84 ellipsoid's meridional and prime-vertical radii of curvature there (about 1 mm
    per km of error on a circuit, against ~3 m per km for a spherical earth).

    Zero positions (iRacing writes 0, 0 before the car is placed) become NaN.
    """
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64)
    bad = (lat == 0) & (lon == 0)
    if origin is None:
        ok = ~bad
        origin = (float(np.mean(lat[ok])), float(np.mean(lon[ok]))) if ok.any() else (0.0, 0.0)
    lat0, lon0 = np.radians(origin[0]), np.radians(origin[1])
    w = np.sqrt(1.0 - WGS84_E2 * np.sin(lat0) ** 2)
    meridional, prime_vertical = WGS84_A_M * (1.0 - WGS84_E2) / w**3, WGS84_A_M / w
    x = prime_vertical * np.cos(lat0) * (np.radians(lon) - lon0)
    y = meridional * (np.radians(lat) - lat0)
    x[bad] = np.nan
    y[bad] = np.nan
    return x, y


def has_gps(trace: Trace) -> bool:
    return "Lat" in trace.channels and "Lon" in trace.channels and bool(
        np.any((trace.channels["Lat"] != 0) | (trace.channels["Lon"] != 0)))


def dead_reckoning(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """Positions [m] from heading along the distance grid (``Yaw`` [rad] or ∫``YawRate`` dt)."""
    if "Yaw" in trace.channels:
        heading = np.unwrap(trace.channels["Yaw"].astype(np.float64))
    elif "YawRate" in trace.channels:
        rate = trace.channels["YawRate"].astype(np.float64)
        dt = np.diff(trace.time_s)
        heading = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * dt)])
    else:
        raise MissingChannel(f"session {trace.session_id} lap_index {trace.lap_index}", ["Yaw", "YawRate"],
                             "a track map without GPS or a track model needs the heading")
    dd = np.diff(trace.distance_m)
    mid = 0.5 * (heading[1:] + heading[:-1])
    x = np.concatenate([[0.0], np.cumsum(np.cos(mid) * dd)])
    y = np.concatenate([[0.0], np.cumsum(np.sin(mid) * dd)])
    if trace.complete:  # close the loop: spread the end-point error over the lap
        frac = (trace.distance_m - trace.distance_m[0]) / max(trace.distance_m[-1] - trace.distance_m[0], 1e-9)
        x -= frac * x[-1]
        y -= frac * y[-1]
    return x, y


@dataclass
class TrackModel:
    """Position [m] as a function of ``LapDistPct``, learned from laps with GPS."""

    track: str
    track_config: str
    pct: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    origin: tuple[float, float] | None
    source_session: str

    def xy(self, pct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.mod(np.asarray(pct, dtype=np.float64), 1.0)
        per = np.concatenate([self.pct - 1.0, self.pct, self.pct + 1.0])
        x = np.interp(p, per, np.tile(self.x_m, 3))
        y = np.interp(p, per, np.tile(self.y_m, 3))
        return x, y

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"pct": self.pct, "x_m": self.x_m, "y_m": self.y_m})


def learn_track_model(session: Session, bins: int = 2000) -> TrackModel | None:
    """A track model from every moving GPS sample of a session (median position per
    ``LapDistPct`` bin); None when the session has no GPS."""
    if not (session.source.has("Lat") and session.source.has("Lon")):
        return None
    names = ["Lat", "Lon", "LapDistPct"] + (["Speed"] if session.source.has("Speed") else [])
    c = session.channels(names)
    origin = track_origin(session.info)
    x, y = project(c["Lat"], c["Lon"], origin)
    moving = np.isfinite(x) & ((c["Speed"] > 5) if "Speed" in c else True)
    if "OnPitRoad" in session.source.units:
        moving &= ~session.channels(["OnPitRoad"])["OnPitRoad"].astype(bool)
    if moving.sum() < bins // 4:
        return None
    b = np.minimum((c["LapDistPct"][moving] * bins).astype(np.int64), bins - 1)
    df = pd.DataFrame({"b": b, "x": x[moving], "y": y[moving]}).groupby("b").median()
    if len(df) < bins * 0.6:  # not most of a lap: a model would be guesswork
        return None
    centres = (df.index.to_numpy() + 0.5) / bins
    return TrackModel(session.track, session.track_config, centres, df.x.to_numpy(), df.y.to_numpy(),
                      origin, session.id)


def find_track_model(session: Session, data: str | os.PathLike[str] | None = None) -> TrackModel | None:
    """A track model from another session in the store on the same track and layout (and the
    same kind: simulated and real data never mix)."""
    from pitbox.analysis.session import load_session
    from pitbox.errors import StoreError
    from pitbox.store import Store

    try:
        cat = Store(data if data is not None else session.data).sessions()
    except (StoreError, OSError) as exc:  # a map is optional: without a readable store there is no model
        log.warning("no track model for session %s: the store cannot be read: %s", session.id, exc)
        return None
    same = cat[(cat.track == session.track) & (cat.id != session.id)
               & (cat.simulated.fillna(False).astype(bool) == session.simulated)]
    for sid in same.sort_values("samples", ascending=False).id:
        other = load_session(sid, data if data is not None else session.data)
        if other.track_config != session.track_config:
            continue
        model = learn_track_model(other)
        if model is not None:
            return model
    return None


def lap_xy(session: Session, trace: Trace, model: TrackModel | None = None,
           data: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """``distance_m``, ``x_m``, ``y_m`` of a lap and the ``source`` used ("gps", "model",
    "dead_reckoning")."""
    if has_gps(trace):
        x, y = project(trace.channels["Lat"], trace.channels["Lon"], track_origin(session.info))
        if np.isfinite(x).mean() > 0.9:
            ok = np.isfinite(x)
            x = np.interp(trace.distance_m, trace.distance_m[ok], x[ok])
            y = np.interp(trace.distance_m, trace.distance_m[ok], y[ok])
            return _frame(trace, x, y, "gps")
    model = model or find_track_model(session, data)
    if model is not None:
        x, y = model.xy(trace.distance_m / trace.length_m)
        return _frame(trace, x, y, "model")
    x, y = dead_reckoning(trace)
    return _frame(trace, x, y, "dead_reckoning")


def _frame(trace: Trace, x: np.ndarray, y: np.ndarray, source: str) -> pd.DataFrame:
    df = pd.DataFrame({"distance_m": trace.distance_m, "x_m": x, "y_m": y})
    df.attrs["source"] = source
    return df
