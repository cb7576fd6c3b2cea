"""Laps ready to draw, and the video's timeline: where each car is at every frame.

Everything here comes from :mod:`pitbox.analysis`: laps on their distance grid
(:meth:`Lap.trace`), map positions (:func:`lap_xy`: GPS, the learned track model or dead
reckoning), the delta (:func:`compare_laps`). Times are seconds since the lap's start line,
distances metres from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pitbox.video.errors import VideoError

if TYPE_CHECKING:
    from pitbox.analysis import Lap, Trace

#: channels drawn, in panel order
CHANNELS = ("Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear")
STEP_CHANNELS = {"Gear"}
SYNCS = ("distance", "time")


@dataclass
class LapData:
    """One lap on its distance grid: time since the line [s], channels (iRacing units), map
    position [m east, m north], and how the map position was found."""

    label: str
    distance_m: np.ndarray
    time_s: np.ndarray
    channels: dict[str, np.ndarray]
    x_m: np.ndarray
    y_m: np.ndarray
    length_m: float
    lap_time_s: float
    map_source: str
    lap: Any = None  #: the pitbox.analysis Lap

    def distance_at(self, t: np.ndarray | float) -> np.ndarray:
        return np.interp(t, self.time_s, self.distance_m)

    def time_at(self, d: np.ndarray | float) -> np.ndarray:
        return np.interp(d, self.distance_m, self.time_s)

    def value_at(self, name: str, d: np.ndarray | float) -> np.ndarray:
        v = self.channels[name]
        if name in STEP_CHANNELS:
            i = np.clip(np.searchsorted(self.distance_m, d, side="right") - 1, 0, len(v) - 1)
            return v[i]
        return np.interp(d, self.distance_m, v.astype(np.float64))

    def xy_at(self, d: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        return np.interp(d, self.distance_m, self.x_m), np.interp(d, self.distance_m, self.y_m)


def lap_label(lap: Lap, other: Lap | None = None, prefix: str = "Lap") -> str:
    """``Lap 4`` (and the session when the other lap is from another session)."""
    text = f"{prefix} {int(lap.row.lap)}"
    if other is not None and other.session.id != lap.session.id:
        text += f" ({lap.session.id[:15]})"
    return text


def _lap_data(lap: Lap, trace: Trace, label: str, xy: tuple[np.ndarray, np.ndarray], source: str) -> LapData:
    if trace.lap_time_s is None:
        raise VideoError(f"lap {lap.label} is not a complete lap ({lap.row.reason}): a video needs a lap "
                         "that starts and ends at the line")
    chans = {c: np.asarray(trace.channels[c]) for c in CHANNELS if c in trace.channels}
    return LapData(label, trace.distance_m, trace.time_s, chans, xy[0], xy[1], trace.length_m,
                   float(trace.lap_time_s), source, lap)


def lap_pair(lap: Lap, ref: Lap, data: str | os.PathLike[str] | None = None, step_m: float = 1.0,
             ) -> tuple[LapData, LapData, dict[str, Any]]:
    """Both laps ready to draw and :func:`pitbox.analysis.compare_laps`' result.

    Map positions: each lap's own GPS when it has it; a lap without GPS takes the other
    lap's GPS path at the same fraction of the lap; when neither has GPS both use the
    reference's path from :func:`pitbox.analysis.lap_xy` (a learned track model of the
    track, else dead reckoning).
    """
    from pitbox.analysis import compare_laps, lap_xy

    res = compare_laps(lap, ref, data, step_m)
    lt, rt = res["traces"]
    xy_l = lap_xy(lap.session, lt, data=data)
    xy_r = lap_xy(ref.session, rt, data=data)
    src_l, src_r = xy_l.attrs["source"], xy_r.attrs["source"]

    def borrow(frm: Any, frm_trace: Trace, to_trace: Trace) -> tuple[np.ndarray, np.ndarray]:
        d = to_trace.distance_m / to_trace.length_m * frm_trace.length_m
        return (np.interp(d, frm_trace.distance_m, frm.x_m.to_numpy()),
                np.interp(d, frm_trace.distance_m, frm.y_m.to_numpy()))

    pl = (xy_l.x_m.to_numpy(), xy_l.y_m.to_numpy())
    pr = (xy_r.x_m.to_numpy(), xy_r.y_m.to_numpy())
    if src_l != "gps" and src_r == "gps":
        pl, src_l = borrow(xy_r, rt, lt), "reference gps"
    elif src_r != "gps" and src_l == "gps":
        pr, src_r = borrow(xy_l, lt, rt), "lap gps"
    elif src_l != "gps":  # neither has GPS: one shared path (the reference's)
        pl, src_l = borrow(xy_r, rt, lt), src_r
    a = _lap_data(lap, lt, lap_label(lap, ref), pl, src_l)
    b = _lap_data(ref, rt, lap_label(ref, lap, "Reference: lap"), pr, src_r)
    return a, b, res


@dataclass
class Timeline:
    """Per frame: the lap's and the reference's time since their line [s] and distance [m]
    (each in its own lap's metres), and the running delta [s] (> 0: the lap is behind)."""

    fps: float
    sync: str
    t_lap: np.ndarray
    d_lap: np.ndarray
    t_ref: np.ndarray
    d_ref: np.ndarray
    delta_s: np.ndarray
    start_m: float
    end_m: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.t_lap)

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps


def timeline(a: LapData, b: LapData, delta_distance_m: np.ndarray, delta_s: np.ndarray, fps: float,
             sync: str = "distance", start_m: float | None = None, end_m: float | None = None,
             hold_s: float = 1.0) -> Timeline:
    """Where both cars are at every frame of a video of the lap ``a`` against ``b``.

    ``sync="distance"``: the video runs on the lap's clock and the reference is shown at the
    same point of the track (its timer shows when it was there). ``sync="time"``: both run on
    their own clocks from the start of the range, the faster one waits at its end.
    The range is ``start_m``-``end_m`` of the lap (default the whole lap); ``hold_s`` of
    still frames end the video. The delta is read from the analysis' delta (on the
    reference's grid) at the lap's position.
    """
    if sync not in SYNCS:
        raise VideoError(f"sync {sync!r}: expected one of {', '.join(SYNCS)}")
    if not fps or fps <= 0 or fps > 240:
        raise VideoError(f"fps {fps}: expected a frame rate between 1 and 240")
    d0 = 0.0 if start_m is None else float(start_m)
    d1 = a.length_m if end_m is None else float(end_m)
    if not 0 <= d0 < d1 <= a.length_m + 1e-6:
        raise VideoError(f"range {d0:.0f}-{d1:.0f} m: expected 0 <= start < end <= {a.length_m:.0f} m (the lap)")
    k = b.length_m / a.length_m  # lap metres -> reference metres
    ta0, ta1 = float(a.time_at(d0)), float(a.time_at(d1))
    tb0, tb1 = float(b.time_at(d0 * k)), float(b.time_at(d1 * k))
    motion = (ta1 - ta0) if sync == "distance" else max(ta1 - ta0, tb1 - tb0)
    n = int(np.ceil(motion * fps - 1e-9)) + 1 + int(round(max(hold_s, 0.0) * fps))
    tau = np.arange(n) / fps
    t_lap = np.minimum(ta0 + tau, ta1)
    d_lap = a.distance_at(t_lap)
    if sync == "distance":
        d_ref = d_lap * k
        t_ref = b.time_at(d_ref)
    else:
        t_ref = np.minimum(tb0 + tau, tb1)
        d_ref = b.distance_at(t_ref)
    delta = np.interp(d_lap * k, delta_distance_m, delta_s)
    return Timeline(float(fps), sync, t_lap, d_lap, t_ref, d_ref, delta, d0, d1)
