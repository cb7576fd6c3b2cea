"""Live rows built from source rows, a chunk at a time (vectorised, no per-row Python loop).

* COPY channels keep the source values bit for bit.
* WIDEN / SUBSAMPLE channels hold 6 sub-samples linearly interpolated from the previous
  source row to this one; the last sub-sample is this row's value, as iRacing's is
  (:func:`pitbox.catalogue.scalar_view`).
* SYNTH channels: the ``CarIdx*`` arrays of 64 place the player (``DriverInfo.DriverCarIdx``)
  from the player's own channels and every other driver of ``DriverInfo.Drivers`` on track
  at a steady pace; unused slots hold what iRacing shows for an empty slot (-1 mostly).
  Replay, camera and other live-only scalars get plausible values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pitbox.catalogue import SUBSAMPLES
from pitbox.emulator.channels import COPY, SUBSAMPLE, SYNTH, WIDEN, LiveLayout
from pitbox.ibt.layout import row_dtype

MAX_CARS = 64
#: iRacing's values for an empty car slot (checked on the 2024 live dump); others are 0 / False.
CARIDX_EMPTY: dict[str, float] = {
    "CarIdxLap": -1, "CarIdxLapCompleted": -1, "CarIdxLapDistPct": -1.0, "CarIdxTrackSurface": -1,
    "CarIdxTrackSurfaceMaterial": -1, "CarIdxClass": -1, "CarIdxLastLapTime": -1.0,
    "CarIdxBestLapTime": -1.0, "CarIdxBestLapNum": -1, "CarIdxTireCompound": -1,
    "CarIdxQualTireCompound": -1, "CarIdxPaceLine": -1, "CarIdxPaceRow": -1, "CarIdxRPM": -1.0,
    "CarIdxGear": -1, "CarIdxP2P_Count": -1,
}
TRK_ON_TRACK = 3  #: irsdk_TrkLoc
TRK_NOT_IN_WORLD = -1
SURFACE_ASPHALT = 1  #: irsdk_TrkSurf Asphalt1Material

Columns = dict[str, np.ndarray]


def _num(value: Any, default: float) -> float:
    """A YAML value like ``0.58 km`` or ``7100.0`` as a float."""
    try:
        return float(str(value).split()[0])
    except (ValueError, IndexError):
        return default


@dataclass(frozen=True)
class Field:
    """Cars other than the player, each lapping at a steady pace from its own start point."""

    player: int  #: the player's car index (DriverInfo.DriverCarIdx)
    player_class: int
    idx: np.ndarray  #: other cars' indices, shape (m,)
    car_class: np.ndarray  #: their CarClassID, shape (m,)
    lap_time_s: np.ndarray  #: their lap time [s], shape (m,)
    phase: np.ndarray  #: their lap fraction at the source's first tick, shape (m,)
    redline_rpm: float
    turns: int

    @classmethod
    def from_session(cls, info: Mapping[str, Any]) -> Field:
        di = info.get("DriverInfo") or {}
        wi = info.get("WeekendInfo") or {}
        player = int(_num(di.get("DriverCarIdx"), 0))
        player = player if 0 <= player < MAX_CARS else 0
        drivers = [d for d in di.get("Drivers") or [] if isinstance(d, dict)]
        others = [d for d in drivers if 0 <= int(_num(d.get("CarIdx"), -1)) < MAX_CARS
                  and int(_num(d.get("CarIdx"), -1)) != player
                  and not int(_num(d.get("CarIsPaceCar"), 0)) and not int(_num(d.get("IsSpectator"), 0))]
        me = next((d for d in drivers if int(_num(d.get("CarIdx"), -1)) == player), {})
        base = _num(di.get("DriverCarEstLapTime"), 0.0) or _num(me.get("CarClassEstLapTime"), 0.0)
        if base <= 0:
            base = max(_num(wi.get("TrackLength"), 3.0), 0.2) * 1000.0 / 40.0  # 40 m/s average
        m = len(others)
        j = np.arange(m)
        return cls(
            player=player,
            player_class=int(_num(me.get("CarClassID"), 0)),
            idx=np.array([int(_num(d.get("CarIdx"), 0)) for d in others], dtype=np.int64),
            car_class=np.array([int(_num(d.get("CarClassID"), 0)) for d in others], dtype=np.int32),
            lap_time_s=base * (1.0 + 0.01 * ((j % 5) - 2)),
            phase=(j + 1) / (m + 1),
            redline_rpm=_num(di.get("DriverCarRedLine"), 7000.0),
            turns=max(1, int(_num(wi.get("TrackNumTurns"), 4))),
        )


def _player_columns(src: Columns, n: int) -> Columns:
    """The player's CarIdx entries from the player's own channels (as iRacing mirrors them)."""
    def get(name: str, default: float, dtype: Any) -> np.ndarray:
        v = src.get(name)
        return np.full(n, default, dtype) if v is None else np.asarray(v).astype(dtype, copy=False)

    lap = get("Lap", 0, np.int32)
    on = get("IsOnTrack", True, bool)
    return {
        "on": on,
        "CarIdxLap": lap,
        "CarIdxLapCompleted": get("LapCompleted", 0, np.int32) if "LapCompleted" in src else np.maximum(lap - 1, 0),
        "CarIdxLapDistPct": get("LapDistPct", 0.0, np.float32),
        "CarIdxTrackSurface": get("PlayerTrackSurface", TRK_ON_TRACK, np.int32),
        "CarIdxTrackSurfaceMaterial": get("PlayerTrackSurfaceMaterial", SURFACE_ASPHALT, np.int32),
        "CarIdxOnPitRoad": get("OnPitRoad", False, bool),
        "CarIdxRPM": get("RPM", 0.0, np.float32),
        "CarIdxGear": get("Gear", 0, np.int32),
        "CarIdxSteer": get("SteeringWheelAngle", 0.0, np.float32),
        "CarIdxLastLapTime": get("LapLastLapTime", -1.0, np.float32),
        "CarIdxBestLapTime": get("LapBestLapTime", -1.0, np.float32),
        "CarIdxBestLapNum": get("LapBestLap", -1, np.int32),
        "CarIdxEstTime": get("LapCurrentLapTime", 0.0, np.float32),
        "CarIdxTireCompound": get("PlayerTireCompound", 0, np.int32),
    }


def _positions(best: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Practice order: by best lap time, cars without a time get 0. ``best`` is (n, 64)."""
    timed = best > 0
    key = np.where(timed, best, np.inf)
    overall = np.argsort(np.argsort(key, axis=1, kind="stable"), axis=1, kind="stable") + 1
    pos = np.where(timed, overall, 0).astype(np.int32)
    cls_pos = np.zeros_like(pos)
    for c in np.unique(classes[classes >= 0]):
        mask = classes == c
        k = np.where(mask[None, :], key, np.inf)
        r = np.argsort(np.argsort(k, axis=1, kind="stable"), axis=1, kind="stable") + 1
        cls_pos = np.where(mask[None, :] & timed, r, cls_pos)
    return pos, cls_pos.astype(np.int32)


def caridx_columns(field: Field, src: Columns, t_s: np.ndarray, names: set[str]) -> Columns:
    """Every ``CarIdx*`` array of 64 for ``n`` rows; ``t_s`` [s] is time since the source began."""
    n = len(t_s)
    out: Columns = {}
    for name in names:
        out[name] = np.full((n, MAX_CARS), CARIDX_EMPTY.get(name, 0))
    progress = field.phase[None, :] + t_s[:, None] / field.lap_time_s[None, :]
    done = np.floor(progress).astype(np.int32)
    frac = (progress - done).astype(np.float32)
    wave = np.sin(2 * np.pi * frac * field.turns)
    has_lap = done >= 1
    others = {
        "CarIdxLap": done + 1, "CarIdxLapCompleted": done, "CarIdxLapDistPct": frac,
        "CarIdxTrackSurface": TRK_ON_TRACK, "CarIdxTrackSurfaceMaterial": SURFACE_ASPHALT,
        "CarIdxClass": field.car_class[None, :], "CarIdxOnPitRoad": False,
        "CarIdxLastLapTime": np.where(has_lap, field.lap_time_s[None, :], -1.0),
        "CarIdxBestLapTime": np.where(has_lap, field.lap_time_s[None, :], -1.0),
        "CarIdxBestLapNum": np.where(has_lap, 1, -1), "CarIdxEstTime": frac * field.lap_time_s[None, :],
        "CarIdxF2Time": np.where(has_lap, field.lap_time_s[None, :], 0.0),
        "CarIdxRPM": field.redline_rpm * (0.75 + 0.15 * wave), "CarIdxGear": np.where(wave > 0, 4, 3),
        "CarIdxSteer": 0.15 * wave, "CarIdxTireCompound": 0,
    }
    for name, value in others.items():
        if name in out and len(field.idx):
            out[name][:, field.idx] = value
    me = _player_columns(src, n)
    on = me.pop("on")
    p = field.player
    for name, value in me.items():
        if name in out:
            out[name][:, p] = np.where(on, value, CARIDX_EMPTY.get(name, 0))
    if "CarIdxClass" in out:
        out["CarIdxClass"][:, p] = field.player_class
    if "CarIdxF2Time" in out and "CarIdxBestLapTime" in out:
        out["CarIdxF2Time"][:, p] = np.maximum(out["CarIdxBestLapTime"][:, p], 0)
    if {"CarIdxPosition", "CarIdxClassPosition", "CarIdxBestLapTime", "CarIdxClass"} <= names:
        classes = out["CarIdxClass"][0].astype(np.int32)
        out["CarIdxPosition"], out["CarIdxClassPosition"] = _positions(out["CarIdxBestLapTime"], classes)
    return out


def scalar_columns(info: Mapping[str, Any], player: int, src: Columns, ticks: np.ndarray) -> dict[str, Any]:
    """Live-only scalars: what a driver in the car sees (not a replay), tied to the source rows."""
    di = info.get("DriverInfo") or {}
    n = len(ticks)
    on = np.asarray(src.get("IsOnTrack", np.ones(n, bool)), dtype=bool)
    return {
        "RadioTransmitCarIdx": -1, "DisplayUnits": 1, "IsReplayPlaying": False,
        "ReplayFrameNum": ticks, "ReplayFrameNumEnd": 1, "IsDiskLoggingEnabled": True,
        "IsDiskLoggingActive": on,
        "PlayerCarSLFirstRPM": _num(di.get("DriverCarSLFirstRPM"), 0.0),
        "PlayerCarSLShiftRPM": _num(di.get("DriverCarSLShiftRPM"), 0.0),
        "PlayerCarSLLastRPM": _num(di.get("DriverCarSLLastRPM"), 0.0),
        "PlayerCarSLBlinkRPM": _num(di.get("DriverCarSLBlinkRPM"), 0.0),
        "DCDriversSoFar": 1, "OkToReloadTextures": True, "CarLeftRight": np.where(on, 1, 0),
        "CamCarIdx": player, "CamCameraNumber": 1, "CamGroupNumber": 1, "SteeringWheelPeakForceNm": -1.0,
        "ReplayPlaySpeed": 1, "ReplaySessionTime": src.get("SessionTime", 0.0),
        "ReplaySessionNum": src.get("SessionNum", 0),
    }


def subsamples(cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """(n,) values and the previous row's → (n, 6): linear from prev to cur; the last is cur."""
    cur64 = cur.astype(np.float64)
    prev64 = prev.astype(np.float64)
    k = np.arange(1, SUBSAMPLES + 1) / SUBSAMPLES
    out = prev64[:, None] + (cur64 - prev64)[:, None] * k[None, :]
    out[:, -1] = cur64
    return out


class RowBuilder:
    """Turns source rows into live rows for one :class:`LiveLayout`."""

    def __init__(self, layout: LiveLayout, session_info: Mapping[str, Any]):
        self.layout = layout
        self.dtype = row_dtype(layout.variables, layout.buf_len)
        self.info = session_info
        self.field = Field.from_session(session_info)
        self._caridx = {c.var.name for c in layout.channels if c.rule == SYNTH and c.var.name.startswith("CarIdx")}

    def build(self, src: Columns, prev_src: Columns, ticks: np.ndarray, t_s: np.ndarray,
              session_offset: int = 0) -> np.ndarray:
        """Live rows for ``n`` source rows.

        ``src`` maps source channel names to arrays of n rows; ``prev_src`` holds, for each
        of those rows, the source row just before it (the same row for a source's first
        row), at least for the channels spread over sub-samples; ``ticks`` are the tick
        counts published; ``t_s`` [s] is time since the source began (moves the other cars).
        """
        n = len(ticks)
        rows = np.zeros(n, dtype=self.dtype)
        synth: dict[str, Any] = {}
        if self._caridx:
            synth.update(caridx_columns(self.field, src, t_s, self._caridx))
        synth.update(scalar_columns(self.info, self.field.player, src, ticks))
        for ch in self.layout.channels:
            name = ch.var.name
            if ch.rule == COPY:
                rows[name] = src[name]
            elif ch.rule in (WIDEN, SUBSAMPLE):
                rows[name] = subsamples(np.asarray(src[ch.source]), np.asarray(prev_src[ch.source]))
            elif name in synth:
                rows[name] = synth[name]
        if session_offset:
            for name in ("SessionNum", "ReplaySessionNum"):
                if name in rows.dtype.names:
                    rows[name] += session_offset
        return rows


def out_of_car_source(last: Mapping[str, Any], n: int, tick_rate: int) -> Columns:
    """``n`` source rows for a driver out of the car: the last row held, time running on,
    ``IsOnTrack`` false and the player out of the world (as the 2024 garage dump shows)."""
    cols: Columns = {k: np.repeat(np.asarray(v)[None], n, axis=0) for k, v in last.items()}
    k = np.arange(1, n + 1)
    if "SessionTime" in cols:
        cols["SessionTime"] = cols["SessionTime"] + k / tick_rate
    if "SessionTick" in cols:
        cols["SessionTick"] = cols["SessionTick"] + k.astype(cols["SessionTick"].dtype)
    for name, value in (("IsOnTrack", False), ("IsOnTrackCar", False), ("OnPitRoad", False),
                        ("PlayerTrackSurface", TRK_NOT_IN_WORLD), ("PlayerTrackSurfaceMaterial", TRK_NOT_IN_WORLD),
                        ("Speed", 0.0), ("Throttle", 0.0), ("Brake", 0.0)):
        if name in cols:
            cols[name] = np.full(n, value, dtype=cols[name].dtype)
    return cols
