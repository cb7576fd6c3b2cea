"""What a dashboard knows about one driver, built from the live stream's messages (I/O-free).

:class:`DriverState` takes every protocol-v1 message (``hello``, ``session``,
``session_info``, ``frame``, ``history``, ``lap``, and the live coach's ``reference``,
``coach``, ``tip``, ``voice``) and keeps:

* the current lap's samples by distance (``Speed`` [m/s], ``Throttle`` and ``Brake`` [0-1],
  ``SteeringWheelAngle`` [rad], ``Gear``, ``pitbox_delta_s`` [s]) in float32 columns, with
  the kernel's arrival time of each sample [ms since the epoch] for the sample-to-paint lag;
* the reference lap (traces on its distance grid, map, corners);
* the last braking zone of the lap, frozen for study once the car is back on the throttle
  (:class:`BrakeZones`);
* the lap rows, the tips by lap, the coach's latest state (fuel, tyres, corner deltas);
* the other cars' ``CarIdxLapDistPct`` and the connection's frame count.

:meth:`DriverState.canvas_update` turns what changed since the last update the page
acknowledged into one message (JSON ``content`` + float32 ``buffers``) for the canvas: only
the new samples, or the whole current lap and the reference when ``full``.
:class:`TeamState` holds one :class:`DriverState` per driver of a relay.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Channels drawn as live traces by distance, in lane order.
TRACE_CHANNELS = ("Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear", "pitbox_delta_s")
#: Channels of the reference lap drawn under the live traces (contract A's reference message).
REFERENCE_CHANNELS = ("Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear")
#: What a driver dashboard subscribes to.
SUBSCRIBE_CHANNELS = [
    "Lap", "LapDistPct", "Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear", "FuelLevel", "OnPitRoad",
    "PlayerCarIdx", "CarIdxLapDistPct", "CarIdxOnPitRoad",
    "pitbox_delta_s", "pitbox_predicted_lap_s", "pitbox_lap_dist_m",
]
#: What the team view subscribes to (no traces: lap, delta, position, fuel).
TEAM_CHANNELS = ["Lap", "LapDistPct", "Speed", "Gear", "FuelLevel", "OnPitRoad",
                 "pitbox_delta_s", "pitbox_predicted_lap_s", "pitbox_lap_dist_m"]
#: A backward jump of the distance larger than this [m] within one lap is a reset (to the pits).
RESET_JUMP_M = 50.0
BRAKE_ON = 0.08
BRAKE_OFF = 0.03
THROTTLE_BACK = 0.9
ZONE_MARGIN_M = 60.0
ZONE_SETTLE_M = 120.0
#: The reference's brake point is its brake onset nearest to the live one, within this [m].
REF_ONSET_WINDOW_M = 120.0
#: A brake point whose samples either side are this many usual spacings apart lies in a hole
#: of missing frames (a slow page, a dropped tick), and is told as the stretch it lies in.
HOLE_SPACINGS = 3.0


def scalar(value: Any) -> float:
    """A channel value as one float: the last of float[6] sub-samples, NaN for null."""
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def length_from_text(text: Any) -> float | None:
    """``TrackLength`` as iRacing writes it (``"3.33 km"``, ``"2.1 mi"``) in metres."""
    if text is None:
        return None
    m = re.match(r"\s*([0-9.]+)\s*(km|mi|m)?", str(text))
    if not m:
        return None
    value = float(m.group(1))
    unit = m.group(2) or "km"
    return value * {"km": 1000.0, "mi": 1609.344, "m": 1.0}[unit]


class Columns:
    """A growable table (rows appended, columns fixed), for one lap's samples."""

    def __init__(self, names: Sequence[str], capacity: int = 4096, dtype: Any = np.float32):
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.data = np.full((capacity, len(self.names)), np.nan, dtype=dtype)
        self.n = 0

    def append(self, row: Sequence[float]) -> None:
        if self.n == len(self.data):
            grown = np.full((2 * len(self.data), len(self.names)), np.nan, dtype=self.data.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n] = row
        self.n += 1

    def col(self, name: str) -> np.ndarray:
        return self.data[: self.n, self.names.index(name)]

    def block(self, start: int, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` column by column (shape ``(columns, rows)``, C order)."""
        return np.ascontiguousarray(self.data[start : self.n if stop is None else stop].T)


@dataclass
class Reference:
    """The reference lap of contract A's ``reference`` message, as float32 arrays."""

    kind: str
    label: str
    time_s: float
    length_m: float
    distance_m: np.ndarray
    channels: dict[str, np.ndarray]
    map_x: np.ndarray | None
    map_y: np.ndarray | None
    corners: list[dict[str, Any]]
    session: str | None = None
    lap_index: int | None = None

    @classmethod
    def from_message(cls, msg: Mapping[str, Any]) -> Reference:
        d = np.asarray(msg.get("distance_m") or [], dtype=np.float32)
        chans = {}
        for name, values in (msg.get("channels") or {}).items():
            arr = np.asarray([math.nan if v is None else scalar(v) for v in values], dtype=np.float32)
            if len(arr) == len(d):
                chans[name] = arr
        mp = msg.get("map") or None
        mx = my = None
        if mp and len(mp.get("x") or []) == len(d) and len(d):
            mx = np.asarray(mp["x"], dtype=np.float32)
            my = np.asarray(mp["y"], dtype=np.float32)
        length = float(msg.get("length_m") or (float(d[-1]) if len(d) else 0.0))
        return cls(kind=str(msg.get("kind", "")), label=str(msg.get("label", "")),
                   time_s=float(msg.get("time_s") or math.nan), length_m=length, distance_m=d, channels=chans,
                   map_x=mx, map_y=my, corners=list(msg.get("corners") or []), session=msg.get("session"),
                   lap_index=msg.get("lap_index"))

    def value_at(self, channel: str, dist_m: np.ndarray | float) -> np.ndarray:
        ch = self.channels.get(channel)
        if ch is None or not len(self.distance_m):
            return np.full(np.shape(dist_m), np.nan)
        return np.interp(dist_m, self.distance_m, ch)

    def xy(self, dist_m: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Map position [m] at distances [m] along the lap (wrapped), or None without a map."""
        if self.map_x is None or self.map_y is None or self.length_m <= 0:
            return None
        d = np.mod(np.asarray(dist_m, dtype=np.float64), self.length_m)
        return (np.interp(d, self.distance_m, self.map_x, period=self.length_m),
                np.interp(d, self.distance_m, self.map_y, period=self.length_m))

    def corner_for(self, dist_m: float) -> str | None:
        """The corner a braking zone starting at ``dist_m`` belongs to: the first corner
        whose end is after it (its braking happens before its start)."""
        best = None
        for c in self.corners:
            start, end = float(c.get("start_m", math.nan)), float(c.get("end_m", math.nan))
            if not math.isfinite(start) or not math.isfinite(end):
                continue
            if end >= dist_m and start - dist_m < 400.0 and (best is None or start < best[0]):
                best = (start, str(c.get("name")))
        return None if best is None else best[1]


@dataclass
class BrakeZone:
    """One braking zone of the current lap and the same stretch of the reference."""

    lap: int | None
    corner: str | None
    start_m: float  #: where the brake went on [m from the line]
    end_m: float  #: where it came off [m]
    window: tuple[float, float]  #: the stretch shown [m]
    peak_brake: float  #: [0-1]
    min_speed: float  #: [m/s] from the brake point until the throttle is back
    ref_start_m: float | None = None
    ref_peak_brake: float | None = None
    ref_min_speed: float | None = None
    samples: np.ndarray | None = None  #: (columns, rows) float32 of the current lap in ``window``
    columns: tuple[str, ...] = ()
    #: where the stretch before ``start_m`` with frames missing begins [m] (the brake went on
    #: somewhere in it); None when the frames around the brake point came regularly
    start_from_m: float | None = None

    def summary(self) -> str:
        name = self.corner or "braking zone"
        ref = self.ref_start_m
        if self.start_from_m is None:
            parts = [f"{name}: brake at {self.start_m:.0f} m"]
            if ref is not None:
                diff = self.start_m - ref
                word = "earlier" if diff < 0 else "later"
                parts[0] += f", {abs(diff):.0f} m {word} than the reference ({ref:.0f} m)"
        else:  # the brake point is known only to lie in the hole: claim no more than that
            lo, hi = self.start_from_m, self.start_m
            parts = [f"{name}: brake between {lo:.0f} and {hi:.0f} m (frames missing)"]
            if ref is not None and hi < ref:
                parts[0] += f", at least {ref - hi:.0f} m earlier than the reference ({ref:.0f} m)"
            elif ref is not None and lo > ref:
                parts[0] += f", at least {lo - ref:.0f} m later than the reference ({ref:.0f} m)"
            elif ref is not None:
                parts[0] += f", the reference's ({ref:.0f} m) in that stretch"
        peak = f"peak {100 * self.peak_brake:.0f} %"
        if self.ref_peak_brake is not None:
            peak += f" (ref {100 * self.ref_peak_brake:.0f} %)"
        parts.append(peak)
        vmin = f"min {3.6 * self.min_speed:.0f} km/h"
        if self.ref_min_speed is not None:
            vmin += f" (ref {3.6 * self.ref_min_speed:.0f})"
        parts.append(vmin)
        return "; ".join(parts)


class BrakeZones:
    """Finds braking zones in the samples of one lap as they arrive, and freezes the last
    one once the car is back on the throttle (or ``ZONE_SETTLE_M`` past the brake release),
    so it can be studied on the next straight. ``frozen`` is the last frozen zone."""

    def __init__(self) -> None:
        self.frozen: BrakeZone | None = None
        self.version = 0
        self._start: int | None = None
        self._end: int | None = None

    def reset(self) -> None:
        """A new lap: zones in progress are dropped; the frozen one stays until replaced."""
        self._start = self._end = None

    def feed(self, cols: Columns, i: int, lap: int | None, ref: Reference | None) -> None:
        ix = cols.index
        d, brake, thr = cols.data[i, ix["d"]], cols.data[i, ix["Brake"]], cols.data[i, ix["Throttle"]]
        if self._start is None:
            if brake >= BRAKE_ON:
                self._start, self._end = i, None
            return
        if self._end is None:
            if brake < BRAKE_OFF:
                self._end = i
            return
        if brake >= BRAKE_ON:  # braking again before the zone settled: one longer zone
            self._end = None
            return
        if thr >= THROTTLE_BACK or d - cols.data[self._end, ix["d"]] >= ZONE_SETTLE_M:
            self._freeze(cols, self._start, self._end, i, lap, ref)
            self._start = self._end = None

    def _freeze(self, cols: Columns, s: int, e: int, now: int, lap: int | None, ref: Reference | None) -> None:
        dist = cols.col("d")
        start_m, end_m = float(dist[s]), float(dist[e])
        seg = slice(s, now + 1)
        window = (start_m - ZONE_MARGIN_M, float(dist[now]) + ZONE_MARGIN_M / 2)
        inside = (dist >= window[0]) & (dist <= window[1])
        zone = BrakeZone(lap=lap, corner=None, start_m=start_m, end_m=end_m, window=window,
                         peak_brake=float(np.nanmax(cols.col("Brake")[seg])),
                         min_speed=float(np.nanmin(cols.col("Speed")[seg])),
                         samples=np.ascontiguousarray(cols.data[: cols.n][inside].T), columns=tuple(cols.names),
                         start_from_m=_hole_before(dist, s, inside))
        if ref is not None and len(ref.distance_m) and "Brake" in ref.channels:
            zone.corner = ref.corner_for(start_m)
            rd, rb = ref.distance_m, ref.channels["Brake"]
            # the reference's brake point: its brake onset nearest to this one
            onsets = rd[1:][(rb[1:] >= BRAKE_ON) & (rb[:-1] < BRAKE_ON)]
            onsets = onsets[np.abs(onsets - start_m) <= REF_ONSET_WINDOW_M]
            if len(onsets):
                ref_start = float(onsets[np.argmin(np.abs(onsets - start_m))])
                zone.ref_start_m = ref_start
                near = (rd >= ref_start) & (rd <= max(end_m, ref_start) + 20.0)
                zone.ref_peak_brake = float(np.nanmax(rb[near])) if near.any() else None
            span = (rd >= start_m) & (rd <= float(dist[now]))
            if "Speed" in ref.channels and span.any():
                zone.ref_min_speed = float(np.nanmin(ref.channels["Speed"][span]))
        self.frozen = zone
        self.version += 1


def _hole_before(dist: np.ndarray, s: int, inside: np.ndarray) -> float | None:
    """Where the stretch before sample ``s`` begins when frames are missing in it (it is over
    :data:`HOLE_SPACINGS` times the usual spacing of the zone's samples), else None."""
    if s == 0:
        return None
    steps = np.diff(dist[inside])
    steps = steps[steps > 0]
    usual = float(np.median(steps)) if len(steps) else 0.0
    stretch = float(dist[s] - dist[s - 1])
    return float(dist[s - 1]) if usual > 0 and stretch > HOLE_SPACINGS * usual else None


@dataclass
class CanvasCursor:
    """What one page has been sent (so the next update carries only what is new)."""

    lap_id: int = -1
    n: int = 0
    ref_version: int = -1
    zone_version: int = -1


@dataclass
class DriverState:
    """Everything one driver's dashboard shows, fed one message at a time (see module doc)."""

    driver: str | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self.meta: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.reference: Reference | None = None
        self.ref_version = 0
        self.cols = Columns(["d", *TRACE_CHANNELS])
        self.times = Columns(["t_ms"], dtype=np.float64)  # kernel arrival [ms since the epoch]
        self.lap: int | None = None
        self.lap_id = 0
        self.zones = BrakeZones()
        self.laps: dict[int, dict[str, Any]] = {}
        self.tips: dict[int, list[dict[str, Any]]] = {}
        self.voice: list[dict[str, Any]] = []
        self.coach: dict[str, Any] | None = None
        self.coach_at_ms: float | None = None
        self.latest: dict[str, float] = {}
        self.cars_pct: np.ndarray = np.zeros(0, dtype=np.float32)
        self.cars_pit: np.ndarray = np.zeros(0, dtype=bool)
        self.player_idx: int | None = None
        self.frames = 0
        self.last_frame_ms: float | None = None
        self.session_time: float | None = None
        self.connection = "connecting"
        self.error: str | None = None
        self.slow_version = 0  # bumped when a panel other than the canvas has something new
        self.laps_version = 0
        self._last_d: float | None = None

    # -- facts -----------------------------------------------------------------------
    @property
    def length_m(self) -> float | None:
        if self.reference is not None and self.reference.length_m > 0:
            return self.reference.length_m
        wi = self.info.get("WeekendInfo") or {}
        return length_from_text(wi.get("TrackLength") or self.meta.get("track_length"))

    def title(self) -> dict[str, str]:
        """Driver, car, track and session type, from the session YAML or the session meta."""
        wi = self.info.get("WeekendInfo") or {}
        di = self.info.get("DriverInfo") or {}
        me: dict[str, Any] = {}
        idx = di.get("DriverCarIdx")
        for d in di.get("Drivers") or []:
            if isinstance(d, dict) and d.get("CarIdx") == idx:
                me = d
        track = wi.get("TrackDisplayName") or self.meta.get("track_display") or self.meta.get("track") or ""
        config = wi.get("TrackConfigName") or self.meta.get("track_config") or ""
        return {
            "driver": str(me.get("UserName") or self.meta.get("driver") or self.driver or ""),
            "car": str(me.get("CarScreenName") or self.meta.get("car_name") or self.meta.get("car") or ""),
            "track": f"{track} ({config})" if config and config not in str(track) else str(track),
            "session": str(self.meta.get("session_type") or ""),
            "session_id": str(self.meta.get("id") or ""),
        }

    # -- messages --------------------------------------------------------------------
    def take(self, msg: Mapping[str, Any], now_ms: float | None = None) -> None:
        """Update from one protocol message (any type; unknown types are ignored)."""
        now_ms = time.time() * 1000.0 if now_ms is None else now_ms
        kind = msg.get("type")
        with self.lock:
            if kind == "frame":
                self._frame(msg.get("t"), msg.get("values") or {}, now_ms)
            elif kind == "history":
                for item in msg.get("frames") or []:
                    self._frame(item.get("t"), item.get("values") or {}, now_ms, live=False)
            elif kind == "lap":
                row = dict(msg.get("row") or {})
                key = row.get("lap_index", row.get("lap"))
                if isinstance(key, int):
                    self.laps[key] = row
                    self.laps_version += 1
                    self.slow_version += 1
            elif kind == "tip":
                self._tip(msg)
            elif kind == "coach":
                self.coach = dict(msg)
                self.coach_at_ms = now_ms
                self.slow_version += 1
            elif kind == "reference":
                self.reference = Reference.from_message(msg)
                self.ref_version += 1
                self.slow_version += 1
            elif kind == "voice":
                self.voice.append(dict(msg))
                del self.voice[:-20]
                self.slow_version += 1
            elif kind == "session":
                self._session(msg.get("meta") or {})
            elif kind == "session_info":
                self.info = dict(msg.get("info") or {})
                self.slow_version += 1
            elif kind == "hello" and isinstance(msg.get("session"), dict):
                if not self.meta:
                    self.meta = dict(msg["session"])
                    self.slow_version += 1

    def _session(self, meta: Mapping[str, Any]) -> None:
        if dict(meta) == self.meta:
            return
        self.meta = dict(meta)
        self.laps.clear()
        self.tips.clear()
        self.coach = None
        self.laps_version += 1
        self.slow_version += 1
        self._new_lap(None)

    def _tip(self, msg: Mapping[str, Any]) -> None:
        lap = msg.get("lap")
        if not isinstance(lap, int):
            return
        tips = self.tips.setdefault(lap, [])
        key = (msg.get("rank"), msg.get("corner"), msg.get("fault"))
        if all((t.get("rank"), t.get("corner"), t.get("fault")) != key for t in tips):
            tips.append(dict(msg))
            tips.sort(key=lambda t: (t.get("rank") or 9))
            self.laps_version += 1
            self.slow_version += 1

    def take_derived(self, values: Mapping[str, Any]) -> None:
        """The live coach's channels of a frame computed here (a coach run in the notebook on
        a stream without one): the latest values, and the delta of the newest sample."""
        with self.lock:
            for k, v in values.items():
                self.latest[k] = scalar(v)
            delta = scalar(values.get("pitbox_delta_s"))
            if self.cols.n and math.isfinite(delta):
                j = self.cols.index["pitbox_delta_s"]
                if not math.isfinite(self.cols.data[self.cols.n - 1, j]):
                    self.cols.data[self.cols.n - 1, j] = delta

    def _new_lap(self, lap: int | None) -> None:
        self.cols = Columns(self.cols.names)
        self.times = Columns(["t_ms"], dtype=np.float64)
        self.lap = lap
        self.lap_id += 1
        self.zones.reset()
        self._last_d = None

    def _distance(self, values: Mapping[str, Any]) -> float:
        d = scalar(values.get("pitbox_lap_dist_m"))
        if math.isfinite(d):
            return d
        pct = scalar(values.get("LapDistPct"))
        length = self.length_m
        return pct * length if length and math.isfinite(pct) else math.nan

    def _frame(self, t: Any, values: Mapping[str, Any], now_ms: float, live: bool = True) -> None:
        for k, v in values.items():
            if not k.startswith("CarIdx"):
                self.latest[k] = scalar(v)
        if "CarIdxLapDistPct" in values and isinstance(values["CarIdxLapDistPct"], list):
            self.cars_pct = np.asarray([math.nan if v is None else v for v in values["CarIdxLapDistPct"]],
                                       dtype=np.float32)
            pit = values.get("CarIdxOnPitRoad")
            self.cars_pit = np.asarray(pit, dtype=bool) if isinstance(pit, list) else np.zeros(0, dtype=bool)
        if "PlayerCarIdx" in values:
            p = scalar(values["PlayerCarIdx"])
            self.player_idx = int(p) if math.isfinite(p) else None
        if isinstance(t, (int, float)):
            self.session_time = float(t)
        if live:
            self.frames += 1
            self.last_frame_ms = now_ms
        lap_v = scalar(values.get("Lap"))
        lap = int(lap_v) if math.isfinite(lap_v) else None
        d = self._distance(values)
        speed = scalar(values.get("Speed"))
        if lap == 0 and d == 0 and speed == 0:  # a blank row (reset to the pits)
            return
        if not math.isfinite(d):
            return
        if lap != self.lap or (self._last_d is not None and d < self._last_d - RESET_JUMP_M):
            self._new_lap(lap)
        self._last_d = d
        self.cols.append([d, *(scalar(values.get(c)) for c in TRACE_CHANNELS)])
        self.times.append([now_ms])
        self.zones.feed(self.cols, self.cols.n - 1, self.lap, self.reference)

    # -- what the page gets ------------------------------------------------------------
    def fast_scalars(self) -> dict[str, Any]:
        """Numbers shown in the canvas header (JSON-safe; None when unknown)."""
        def num(name: str) -> float | None:
            v = self.latest.get(name, math.nan)
            return v if math.isfinite(v) else None

        laps = [r for r in self.laps.values() if r.get("complete") and r.get("time_s")]
        last = max(laps, key=lambda r: r.get("lap_index", 0)) if laps else None
        valid = [r for r in laps if r.get("valid")]
        best = min(valid, key=lambda r: r["time_s"]) if valid else None
        coach = self.coach or {}
        lap_now = self.latest.get("Lap", math.nan)
        return {
            "lap": int(lap_now) if math.isfinite(lap_now) else self.lap, "lap_id": self.lap_id,
            "delta_s": num("pitbox_delta_s"), "predicted_s": num("pitbox_predicted_lap_s"),
            "last_s": coach.get("last_lap_s") or (last["time_s"] if last else None),
            "best_s": coach.get("best_lap_s") or (best["time_s"] if best else None),
            "speed": num("Speed"), "gear": num("Gear"), "dist_m": self._last_d,
            "length_m": self.length_m, "on_pit_road": bool(self.latest.get("OnPitRoad", 0) or 0),
        }

    def cars(self) -> dict[str, Any]:
        """Positions of this car and the others: ``pct`` [0-1], ``x``/``y`` [m] on the
        reference map (None without one), ``me`` marks this car."""
        length = self.length_m
        pct: list[float] = []
        me: list[bool] = []
        pit: list[bool] = []
        mine = None
        if self._last_d is not None and length:
            mine = (self._last_d / length) % 1.0
        for i, p in enumerate(self.cars_pct.tolist()):
            if not math.isfinite(p) or p < 0 or i == self.player_idx:
                continue
            pct.append(p)
            me.append(False)
            pit.append(bool(self.cars_pit[i]) if i < len(self.cars_pit) else False)
        if mine is None and self.player_idx is not None and self.player_idx < len(self.cars_pct):
            p = float(self.cars_pct[self.player_idx])
            mine = p if math.isfinite(p) and p >= 0 else None
        if mine is not None:
            pct.append(mine)
            me.append(True)
            pit.append(bool(self.latest.get("OnPitRoad", 0) or 0))
        out: dict[str, Any] = {"pct": pct, "me": me, "pit": pit, "x": None, "y": None}
        if self.reference is not None and length and pct:
            xy = self.reference.xy(np.asarray(pct) * length)
            if xy is not None:
                out["x"], out["y"] = xy[0].round(2).tolist(), xy[1].round(2).tolist()
        return out

    def connection_info(self, now_ms: float | None = None) -> dict[str, Any]:
        now_ms = time.time() * 1000.0 if now_ms is None else now_ms
        age = None if self.last_frame_ms is None else max(0.0, (now_ms - self.last_frame_ms) / 1000.0)
        return {"state": self.connection, "frames": self.frames, "frame_age_s": age, "error": self.error}

    def canvas_update(self, cursor: CanvasCursor, full: bool) -> tuple[dict[str, Any], list[memoryview]]:
        """One message for the canvas: what is new since ``cursor`` (updated in place), or
        everything when ``full``. Buffers are float32, one per block named in ``content``."""
        with self.lock:
            content: dict[str, Any] = {"type": "update", "mode": "driver"}
            buffers: list[memoryview] = []
            if full or cursor.ref_version != self.ref_version:
                content["reference"] = self._reference_block(buffers)
                cursor.ref_version = self.ref_version
            n = self.cols.n
            if full or cursor.lap_id != self.lap_id or cursor.n > n:
                start = 0
            else:
                start = cursor.n
            if start < n or start == 0:
                t = self.times.data[start:n, 0]
                content["trace"] = {"lap_id": self.lap_id, "lap": self.lap, "start": start, "n": n - start,
                                    "columns": list(self.cols.names), "buffer": len(buffers),
                                    "t_first_ms": float(t[0]) if len(t) else None,
                                    "t_last_ms": float(t[-1]) if len(t) else None,
                                    "t_ms": t.tolist() if len(t) <= 256 else None}
                buffers.append(memoryview(self.cols.block(start).tobytes()))
                if len(t):  # the lag is measured from the oldest sample not shown yet (full: the newest)
                    content["t_sample_ms"] = float(t[-1] if full else t[0])
            cursor.lap_id, cursor.n = self.lap_id, n
            zone = self.zones.frozen
            if zone is not None and (full or cursor.zone_version != self.zones.version):
                content["zone"] = {"corner": zone.corner, "lap": zone.lap, "summary": zone.summary(),
                                   "window": list(zone.window), "start_m": zone.start_m, "end_m": zone.end_m,
                                   "ref_start_m": zone.ref_start_m, "n": 0, "buffer": None, "columns": []}
                if zone.samples is not None and zone.samples.size:
                    content["zone"].update(n=int(zone.samples.shape[1]), buffer=len(buffers),
                                           columns=list(zone.columns))
                    buffers.append(memoryview(np.ascontiguousarray(zone.samples).tobytes()))
                cursor.zone_version = self.zones.version
            content["scalars"] = self.fast_scalars()
            content["cars"] = self.cars()
            content["connection"] = self.connection_info()
            content["title"] = self.title()
            return content, buffers

    def _reference_block(self, buffers: list[memoryview]) -> dict[str, Any] | None:
        ref = self.reference
        if ref is None or not len(ref.distance_m):
            return None
        names = [c for c in REFERENCE_CHANNELS if c in ref.channels]
        cols = [ref.distance_m, *(ref.channels[c] for c in names)]
        block = {"label": ref.label, "kind": ref.kind, "time_s": ref.time_s, "length_m": ref.length_m,
                 "columns": ["d", *names], "n": len(ref.distance_m), "buffer": len(buffers),
                 "corners": [_corner_json(c, ref) for c in ref.corners], "map_buffer": None}
        buffers.append(memoryview(np.ascontiguousarray(np.vstack(cols), dtype=np.float32).tobytes()))
        if ref.map_x is not None and ref.map_y is not None:
            block["map_buffer"] = len(buffers)
            buffers.append(memoryview(np.ascontiguousarray(np.vstack([ref.map_x, ref.map_y]),
                                                           dtype=np.float32).tobytes()))
        return block


def _corner_json(c: Mapping[str, Any], ref: Reference) -> dict[str, Any]:
    out = {"name": str(c.get("name", "")), "start_m": c.get("start_m"), "apex_m": c.get("apex_m"),
           "end_m": c.get("end_m")}
    apex = c.get("apex_m")
    if apex is None and c.get("start_m") is not None and c.get("end_m") is not None:
        apex = (float(c["start_m"]) + float(c["end_m"])) / 2
    xy = ref.xy(np.asarray([apex])) if apex is not None else None
    out["x"], out["y"] = (float(xy[0][0]), float(xy[1][0])) if xy is not None else (None, None)
    return out


class TeamState:
    """One :class:`DriverState` per driver on a relay, and the relay's driver list."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.drivers: dict[str, DriverState] = {}
        self.roster: list[dict[str, Any]] = []
        self.connection = "connecting"
        self.roster_version = 0

    def driver(self, driver_id: str) -> DriverState:
        with self.lock:
            st = self.drivers.get(driver_id)
            if st is None:
                st = self.drivers[driver_id] = DriverState(driver=driver_id)
            return st

    def take(self, msg: Mapping[str, Any], now_ms: float | None = None) -> None:
        kind = msg.get("type")
        if kind in ("drivers", "hello") and isinstance(msg.get("drivers"), list):
            with self.lock:
                self.roster = [dict(d) for d in msg["drivers"] if isinstance(d, dict)]
                self.roster_version += 1
                for d in self.roster:
                    self.driver(str(d.get("id")))
            return
        driver = msg.get("driver")
        if isinstance(driver, str):
            self.driver(driver).take(msg, now_ms)

    def live_drivers(self) -> list[dict[str, Any]]:
        """The relay's drivers (``id``, ``name``, ``connected``), connected first."""
        with self.lock:
            known = {str(d.get("id")): d for d in self.roster}
            for did in self.drivers:
                known.setdefault(did, {"id": did, "name": did, "connected": True})
            return sorted(known.values(), key=lambda d: (not d.get("connected", True), str(d.get("id"))))

    def canvas_update(self, selected: Iterable[str], full: bool) -> tuple[dict[str, Any], list[memoryview]]:
        """The team canvas: each selected driver's numbers and position, one shared map
        (the first selected driver's reference that has one)."""
        selected = list(selected)
        buffers: list[memoryview] = []
        content: dict[str, Any] = {"type": "update", "mode": "team", "drivers": []}
        with self.lock:
            states = [(d, self.drivers[d]) for d in selected if d in self.drivers]
        map_ref = next((st for _, st in states if st.reference is not None and st.reference.map_x is not None), None)
        if map_ref is not None:
            with map_ref.lock:
                block = map_ref._reference_block(buffers)
            content["reference"] = block
            content["map_driver"] = map_ref.driver
        for did, st in states:
            with st.lock:
                sc = st.fast_scalars()
                t = st.title()
                length = st.length_m
                pct = None if st._last_d is None or not length else (st._last_d / length) % 1.0
                xy = None
                if map_ref is not None and map_ref.reference is not None and pct is not None:
                    ref_len = map_ref.reference.length_m
                    xy = map_ref.reference.xy(np.asarray([pct * ref_len]))
                content["drivers"].append({
                    "id": did, "name": t["driver"] or did, "car": t["car"], "lap": sc["lap"],
                    "delta_s": sc["delta_s"], "predicted_s": sc["predicted_s"], "last_s": sc["last_s"],
                    "best_s": sc["best_s"], "pct": pct, "on_pit_road": sc["on_pit_road"],
                    "x": None if xy is None else float(xy[0][0]), "y": None if xy is None else float(xy[1][0]),
                    "connection": st.connection_info(),
                    "t_last_ms": st.last_frame_ms,
                })
        ts = [d["t_last_ms"] for d in content["drivers"] if d["t_last_ms"] is not None]
        content["t_sample_ms"] = max(ts) if ts else None
        content["connection"] = {"state": self.connection}
        return content, buffers
