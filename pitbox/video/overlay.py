"""``pitbox video overlay``: telemetry over the driver's own onboard video.

Gauges (speed, gear, throttle and brake bars, steering), the track map with the car, the
lap timer and the running delta are drawn over every frame of a replay capture or a camera
file; the source's audio is kept. The middle of the picture (the road) stays clear.

**Sync.** The video's clock and the telemetry's are tied by a line
``lap time = rate x video time + shift``:

* ``offset_s``: the video time [s] at which the lap starts (crosses the line); negative when
  the lap had started before the video did. The rate is 1.
* ``sync=(T1, T2)``: the video times of the lap's two line crossings (its start and its
  end); the rate corrects a clock that drifts (a camera whose clock runs fast or slow).
* ``sync=((V1, L1), (V2, L2))`` (``"V1=L1,V2=L2"``): any two moments, video time V and lap
  time L each.

Telemetry before and after the lap comes from the laps around it in the same session, so
the gauges run on while the timer waits for the line.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pitbox.video import draw as D
from pitbox.video.canvas import U_FROM_RGB, V_FROM_RGB, Canvas, FrameBuffer, rgb_to_yuv420
from pitbox.video.common import VideoResult
from pitbox.video.encode import DEFAULT_CRF, DEFAULT_PRESET, encode, probe
from pitbox.video.errors import VideoError

if TYPE_CHECKING:
    from pitbox.analysis import Lap

log = logging.getLogger(__name__)

GAUGE_CHANNELS = ("Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear")
#: audio codecs an .mp4 holds as they are (others are re-encoded to AAC)
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "opus", "alac"}
MAX_DRIFT = 0.2  #: anchors implying a clock more than 20 % off are a mistake
PANEL_ALPHA = 165


@dataclass(frozen=True)
class VideoClock:
    """``lap time [s] = rate * video time [s] + shift``."""

    rate: float
    shift: float

    def lap_time(self, video_s: np.ndarray | float) -> np.ndarray:
        return self.rate * np.asarray(video_s, dtype=np.float64) + self.shift

    def video_time(self, lap_s: float) -> float:
        return (lap_s - self.shift) / self.rate


_NUM = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"


def parse_sync(offset_s: float | None, sync: object, lap_time_s: float) -> VideoClock:
    """The video clock from ``offset_s`` or ``sync`` (see the module docs; text or numbers)."""
    if offset_s is not None and sync is not None:
        raise VideoError("give either an offset or two sync anchors, not both")
    if sync is None:
        return VideoClock(1.0, -float(offset_s or 0.0))
    pairs: list[tuple[float, float]]
    if isinstance(sync, str):
        text = sync.strip()
        if re.fullmatch(rf"\s*{_NUM}\s*=\s*{_NUM}\s*,\s*{_NUM}\s*=\s*{_NUM}\s*", text):
            a, b = text.split(",")
            pairs = [tuple(float(x) for x in p.split("=")) for p in (a, b)]  # type: ignore[misc]
        elif re.fullmatch(rf"\s*{_NUM}\s*,\s*{_NUM}\s*", text):
            t1, t2 = (float(x) for x in text.split(","))
            pairs = [(t1, 0.0), (t2, lap_time_s)]
        else:
            raise VideoError(f"sync {sync!r}: expected T1,T2 (video times [s] of the lap's start and end "
                             "line crossings) or V1=L1,V2=L2 (video time = lap time, twice)")
    else:
        items = list(sync)  # type: ignore[call-overload]
        if len(items) != 2:
            raise VideoError(f"sync {sync!r}: expected two anchors")
        if all(np.ndim(x) == 0 for x in items):
            pairs = [(float(items[0]), 0.0), (float(items[1]), lap_time_s)]
        else:
            pairs = [(float(v), float(t)) for v, t in items]
    (v1, l1), (v2, l2) = pairs
    if v2 == v1 or l2 == l1 or (v2 - v1) * (l2 - l1) < 0:
        raise VideoError(f"sync anchors {pairs}: expected two different moments in the same order in the "
                         "video and in the lap")
    rate = (l2 - l1) / (v2 - v1)
    if abs(rate - 1.0) > MAX_DRIFT:
        raise VideoError(f"sync anchors {pairs}: they make the video run at {rate:.3f}x the telemetry's clock; "
                         "expected within 20 % of real time (check the anchors)")
    return VideoClock(rate, l1 - rate * v1)


@dataclass
class Samples:
    """Session telemetry around a lap: time since the lap's start line [s], channels, and the
    position along the lap as a fraction (0-1, wraps)."""

    time_s: np.ndarray
    channels: dict[str, np.ndarray]
    frac: np.ndarray

    def at(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Values at lap times ``t`` (gear held, others linear); NaN outside the data."""
        inside = (t >= self.time_s[0]) & (t <= self.time_s[-1])
        out = {}
        for name, v in self.channels.items():
            if name == "Gear":
                i = np.clip(np.searchsorted(self.time_s, t, side="right") - 1, 0, len(v) - 1)
                val = v[i].astype(np.float64)
            else:
                val = np.interp(t, self.time_s, v.astype(np.float64))
            out[name] = np.where(inside, val, np.nan)
        # position: unwrap the fraction so interpolation across the line is right
        unwrapped = self.frac + np.concatenate([[0], np.cumsum(np.diff(self.frac) < -0.5)])
        out["frac"] = np.where(inside, np.mod(np.interp(t, self.time_s, unwrapped), 1.0), np.nan)
        return out


def session_samples(lap: Lap, t_from: float, t_to: float) -> Samples:
    """Telemetry from lap time ``t_from`` to ``t_to`` [s] (may reach into the laps before and
    after), read lap by lap through :meth:`pitbox.analysis.Lap.telemetry`."""
    s = lap.session
    start = float(lap.row.start_s)
    length = s.track_length_m
    table = s.laps
    names = [c for c in GAUGE_CHANNELS if s.available([c])]
    want = table[(table.end_s >= start + t_from) & (table.start_s <= start + t_to)]
    times, fracs, cols = [], [], {n: [] for n in names}
    for i in want.lap_index:
        other = s.lap(int(i))
        tel = other.telemetry(names)
        times.append(tel.time_s.to_numpy() + float(other.row.start_s) - start)
        fracs.append(np.mod(tel.distance_m.to_numpy() / length, 1.0))
        for n in names:
            cols[n].append(tel[n].to_numpy())
    if not times:
        raise VideoError(f"lap {lap.label}: no telemetry between {t_from:.1f} s and {t_to:.1f} s of the lap")
    t = np.concatenate(times)
    order = np.argsort(t, kind="stable")
    t = t[order]
    keep = np.concatenate([[True], np.diff(t) > 1e-9])
    return Samples(t[keep], {n: np.concatenate(v)[order][keep] for n, v in cols.items()},
                   np.concatenate(fracs)[order][keep])


class Overlay:
    """A translucent RGBA layer (panels, map, labels) blended onto each frame in YUV, and the
    dynamic gauges drawn on top."""

    def __init__(self, size: tuple[int, int], lap_label: str, xy: tuple[np.ndarray, np.ndarray],
                 lap_time_s: float, ref_label: str):
        from PIL import Image, ImageDraw

        w, h = size
        self.w, self.h = w, h
        u = self.u = h / 720.0
        pad = self.pad = round(16 * u)
        self.lap_time_s = lap_time_s
        self.track_x, self.track_y = xy
        # panels
        self.timer_rect = _even((pad, pad, pad + round(330 * u), pad + round(104 * u)))
        ms = round(250 * u)
        self.map_rect = _even((w - pad - ms, pad, w - pad, pad + ms))
        gh, gw = round(190 * u), round(430 * u)
        self.gauge_rect = _even((pad, h - pad - gh, pad + gw, h - pad))
        gx0, gy0, gx1, gy1 = self.gauge_rect
        bw = max(4, round(26 * u))
        by0, by1 = gy0 + round(34 * u), gy1 - round(16 * u)
        self.throttle_rect = (gx0 + round(18 * u), by0, gx0 + round(18 * u) + bw, by1)
        self.brake_rect = (self.throttle_rect[2] + round(12 * u), by0, self.throttle_rect[2] + round(12 * u) + bw, by1)
        self.speed_xy = (gx0 + round(190 * u), gy0 + round(40 * u))
        self.gear_xy = (gx0 + round(300 * u), gy0 + round(40 * u))
        self.wheel = (gx1 - round(62 * u), (gy0 + gy1) / 2 + round(8 * u), round(44 * u))
        self.map = D.fit_map(self.track_x, self.track_y, self.map_rect, margin=0.08)

        layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        d = ImageDraw.Draw(layer)
        rad = round(10 * u)
        for r in (self.timer_rect, self.map_rect, self.gauge_rect):
            d.rounded_rectangle([r[0], r[1], r[2] - 1, r[3] - 1], radius=rad, fill=(0, 0, 0, PANEL_ALPHA))
        px, py = self.map(self.track_x, self.track_y)
        d.line(list(zip(px.tolist(), py.tolist(), strict=True)) + [(float(px[0]), float(py[0]))],
               fill=(215, 218, 224, 255), width=max(2, round(5 * u)), joint="curve")
        fs = 15 * u
        d.text((self.timer_rect[0] + 12 * u, self.timer_rect[1] + 8 * u), lap_label, font=D.font(18 * u, "bold"),
               fill=D.LAP + (255,), anchor="la")
        d.text((self.timer_rect[2] - 12 * u, self.timer_rect[1] + 10 * u), f"vs {ref_label}", font=D.font(fs),
               fill=D.MUTED + (255,), anchor="ra")
        for r, lab in ((self.throttle_rect, "THR"), (self.brake_rect, "BRK")):
            d.rectangle([r[0] - 1, r[1] - 1, r[2], r[3]], outline=(90, 94, 102, 255), width=1)
            d.text(((r[0] + r[2]) / 2, r[1] - 4 * u), lab, font=D.font(12 * u), fill=D.MUTED + (255,), anchor="md")
        d.text((self.speed_xy[0], gy1 - 14 * u), "km/h", font=D.font(fs), fill=D.MUTED + (255,), anchor="md")
        d.text((self.gear_xy[0], gy1 - 14 * u), "gear", font=D.font(fs), fill=D.MUTED + (255,), anchor="md")
        cx, cy, wr = self.wheel
        d.ellipse([cx - wr, cy - wr, cx + wr, cy + wr], outline=(200, 204, 210, 255), width=max(2, round(6 * u)))
        self._regions = [_blend_region(np.asarray(layer), r) for r in (self.timer_rect, self.map_rect, self.gauge_rect)]
        self.canvas = Canvas(w, h)
        f = D.font(40 * u, "mono")
        b = f.getbbox("8:88.888", anchor="la")
        self.timer_box = (b[2] + 4, b[3] + 4)

    def blend(self, fb: FrameBuffer) -> None:
        for (x0, y0, x1, y1), inv_a, py, inv_a2, pu, pv in self._regions:
            for plane, inv, p, s in ((fb.y, inv_a, py, 1), (fb.u, inv_a2, pu, 2), (fb.v, inv_a2, pv, 2)):
                view = plane[y0 // s:y1 // s, x0 // s:x1 // s]
                view[:] = (view * inv + p).astype(np.uint8)

    def ops(self, t: float, v: dict[str, float], delta_s: float | None) -> list[Any]:
        """The gauges at lap time ``t`` [s] with values ``v`` (NaN: no telemetry)."""
        u = self.u
        ops: list[Any] = []
        tx, ty = self.timer_rect[0] + round(12 * u), self.timer_rect[1] + round(38 * u)
        shown = None if t < 0 else min(t, self.lap_time_s)
        ops.append(D.Text(tx, ty, D.mmss(shown), 40 * u, D.TEXT, "la", "mono",
                          box=(tx, ty, tx + self.timer_box[0], ty + self.timer_box[1])))
        dx = self.timer_rect[2] - round(12 * u)
        ops.append(D.Text(dx, ty + round(6 * u), D.signed(delta_s), 30 * u, D.delta_colour(delta_s), "ra", "mono",
                          box=(dx - round(130 * u), ty, dx, ty + self.timer_box[1])))
        if not np.isfinite(v.get("frac", np.nan)):
            return ops
        for name, rect, colour in (("Throttle", self.throttle_rect, D.THROTTLE), ("Brake", self.brake_rect, D.BRAKE)):
            val = v.get(name, np.nan)
            if np.isfinite(val):
                x0, y0, x1, y1 = rect
                top = y1 - float(np.clip(val, 0.0, 1.0)) * (y1 - y0)
                ops.append(D.Rect(x0, round(top), x1, y1, colour))
        if np.isfinite(v.get("Speed", np.nan)):
            ops.append(D.Text(*self.speed_xy, f"{v['Speed'] * 3.6:.0f}", 62 * u, D.TEXT, "ma", "bold",
                              box=(self.speed_xy[0] - 75 * u, self.speed_xy[1], self.speed_xy[0] + 75 * u,
                                   self.speed_xy[1] + 80 * u)))
        if np.isfinite(v.get("Gear", np.nan)):
            g = int(v["Gear"])
            ops.append(D.Text(*self.gear_xy, "N" if g == 0 else "R" if g < 0 else str(g), 70 * u, D.LAP, "ma", "bold",
                              box=(self.gear_xy[0] - 35 * u, self.gear_xy[1], self.gear_xy[0] + 35 * u,
                                   self.gear_xy[1] + 80 * u)))
        if np.isfinite(v.get("SteeringWheelAngle", np.nan)):
            cx, cy, wr = self.wheel
            a = float(v["SteeringWheelAngle"])  # rad, positive to the left
            ex, ey = cx - wr * np.sin(a), cy - wr * np.cos(a)
            ops.append(D.Line(((cx, cy), (float(ex), float(ey))), D.LAP, max(2, round(6 * u))))
        fx = float(v["frac"])
        n = len(self.track_x)
        pos = fx * (n - 1)
        x = float(np.interp(pos, np.arange(n), self.track_x))
        y = float(np.interp(pos, np.arange(n), self.track_y))
        px, py = self.map(x, y)
        ops.append(D.Dot(float(px), float(py), max(4.0, 8 * u), D.LAP, (0, 0, 0)))
        return ops

    def layout_info(self) -> dict[str, Any]:
        return {"map": self.map.to_dict(), "timer": list(self.timer_rect), "gauges": list(self.gauge_rect),
                "throttle": list(self.throttle_rect), "brake": list(self.brake_rect),
                "colours": {"lap": D.LAP, "throttle": D.THROTTLE, "brake": D.BRAKE}}


def _even(r: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return r[0] & ~1, r[1] & ~1, (r[2] + 1) & ~1, (r[3] + 1) & ~1


def _blend_region(rgba: np.ndarray, r: tuple[int, int, int, int]) -> tuple[Any, ...]:
    """What blending a region of the RGBA layer over a YUV frame needs:
    ``Y = Y_src * (1 - a) + Y_layer * a`` (per pixel; chroma with the 2x2 block's mean)."""
    x0, y0, x1, y1 = r
    part = rgba[y0:y1, x0:x1].astype(np.float32)
    a = part[..., 3] / 255.0
    y, u, v = rgb_to_yuv420(part[..., :3].astype(np.uint8))
    quad = lambda p: (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) / 4  # noqa: E731
    a2 = quad(a)
    # chroma of the layer weighted by each pixel's alpha (per-pixel chroma from its own colour)
    pu = quad(a * (part[..., :3] @ U_FROM_RGB + 128.0))
    pv = quad(a * (part[..., :3] @ V_FROM_RGB + 128.0))
    return r, (1.0 - a), y * a + 0.5, (1.0 - a2), pu + 0.5, pv + 0.5


def overlay_video(lap: Lap | str, video: str | os.PathLike[str], out: str | os.PathLike[str],
                  data: str | os.PathLike[str] | None = None, *, offset_s: float | None = None,
                  sync: object = None, reference: object = None, preset: str = DEFAULT_PRESET,
                  crf: int = DEFAULT_CRF, workers: int | None = None, progress: bool | None = None) -> VideoResult:
    """Telemetry of ``lap`` over the onboard ``video``, written to ``out`` (H.264, the
    source's size and frame rate, its audio kept).

    Sync by ``offset_s`` (video time of the lap's start line crossing [s], may be negative)
    or ``sync`` (two anchors; see the module docs). ``reference``: the lap the running
    delta is against (default the session's fastest valid lap).
    """
    import imageio_ffmpeg

    from pitbox.analysis import lap_xy, resolve_lap

    t0 = time.perf_counter()
    lp = resolve_lap(lap, data)
    if lp.time_s is None:
        raise VideoError(f"lap {lp.label} is not a complete lap ({lp.row.reason}): the overlay needs a lap that "
                         "starts and ends at the line")
    src = Path(video)
    info = probe(src)
    if not info.width or not info.height or not info.fps:
        raise VideoError(f"{src}: no video stream with a known size and frame rate")
    w, h = info.width, info.height
    if w % 2 or h % 2:
        raise VideoError(f"{src}: frame size {w}x{h}: expected even sides (crop it: ffmpeg -vf crop=iw-mod(iw\\,2):"
                         "ih-mod(ih\\,2))")
    clock = parse_sync(offset_s, sync, float(lp.time_s))
    ref = lp.session.reference(reference)
    delta = lp.delta_to(ref)
    trace = lp.trace()
    xy = lap_xy(lp.session, trace, data=data)
    k_len = delta.distance_m[-1] / trace.length_m if len(delta.distance_m) else 1.0

    reader = imageio_ffmpeg.read_frames(str(src), pix_fmt="yuv420p", bits_per_pixel=12)
    meta = next(reader)
    fps = float(meta.get("fps") or info.fps)
    duration = float(meta.get("duration") or info.duration_s or 0.0)
    expected = int(round(duration * fps)) if duration else None
    span = clock.lap_time(np.array([0.0, max(duration, 1.0 / fps)]))
    samples = session_samples(lp, float(span.min()) - 1.0, float(span.max()) + 1.0)
    ov = Overlay((w, h), f"Lap {int(lp.row.lap)}", (xy.x_m.to_numpy(), xy.y_m.to_numpy()), float(lp.time_s),
                 "ref lap " + str(int(ref.row.lap)))

    def render(k: int, fb: FrameBuffer, frame: bytes) -> None:
        np.copyto(fb.data, np.frombuffer(frame, dtype=np.uint8, count=fb.data.size))
        ov.blend(fb)
        t = float(clock.lap_time(k / fps))
        vals = {n: float(x[0]) for n, x in samples.at(np.array([t])).items()}
        dt = None
        if 0.0 <= t <= float(lp.time_s):
            dist = float(np.interp(t, trace.time_s, trace.distance_m))
            dt = float(np.interp(dist * k_len, delta.distance_m, delta.delta_s))
        elif t > float(lp.time_s):
            dt = float(delta.at_line_s)
        ov.canvas.draw(fb, ov.ops(t, vals, dt))

    audio, codec = None, "aac"
    if info.has_audio:
        audio = src
        codec = "copy" if info.audio_codec in MP4_AUDIO else "aac"
    try:
        vinfo = encode(out, (w, h), fps, None, render, source=reader, expected_frames=expected,
                       audio_path=audio, audio_codec=codec, preset=preset, crf=crf, workers=workers,
                       progress=progress, desc="overlay")
    finally:
        reader.close()
    frames = int(vinfo.frames or 0)
    meta_out = {"lap": lp.label, "reference": ref.label, "video": str(src), "clock_rate": clock.rate,
                "clock_shift_s": clock.shift, "lap_starts_at_video_s": clock.video_time(0.0),
                "source_audio": info.audio_codec}
    return VideoResult(Path(vinfo.path), frames, fps, (w, h), (vinfo.duration_s or 0.0), vinfo,
                       time.perf_counter() - t0, ov.layout_info(), meta_out)
