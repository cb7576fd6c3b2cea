"""``pitbox video compare``: two laps in one video.

The frame: both lap timers and the running delta on top; the track map with both cars
(the lap a filled orange dot, the reference a blue ring) on the track coloured where the
lap gains (green) or loses (red); on the right, the delta ribbon and the speed, throttle,
brake, steering and gear traces by distance, with a cursor that moves with the cars and
the current values. Everything but the cars, the cursor, the timers and the numbers is
drawn once.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pitbox.video import draw as D
from pitbox.video.canvas import Canvas, FrameBuffer
from pitbox.video.common import DEFAULT_FPS, VideoResult, check_fps, parse_size
from pitbox.video.encode import DEFAULT_CRF, DEFAULT_PRESET, encode
from pitbox.video.timeline import CHANNELS, LapData, Timeline, lap_pair, timeline

if TYPE_CHECKING:
    from PIL import ImageDraw

    from pitbox.analysis import Lap

log = logging.getLogger(__name__)

#: relative heights of the right-hand panels
WEIGHTS = {"delta": 1.3, "Speed": 1.5, "Throttle": 0.9, "Brake": 0.9, "SteeringWheelAngle": 1.0, "Gear": 0.8}


def distance_ticks(d0: float, d1: float, max_ticks: int = 8) -> np.ndarray:
    span = max(d1 - d0, 1.0)
    step = next(s for s in (10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000) if span / s <= max_ticks)
    return np.arange(np.ceil(d0 / step) * step, d1 + 1e-9, step)


def draw_ticks(d: ImageDraw.ImageDraw, p: D.TracePanel, u: float) -> None:
    """Distance labels [m] under a panel (the edge ones kept inside the frame)."""
    x0, _, x1, y1 = p.rect
    for t in distance_ticks(p.d0, p.d1):
        x = float(p.x(t))
        anchor = "la" if x < x0 + 30 * u else "ra" if x > x1 - 30 * u else "ma"
        d.text((x, y1 + 3 * u), f"{t:.0f} m", font=D.font(12 * u), fill=D.MUTED, anchor=anchor)


@dataclass
class Layout:
    width: int
    height: int
    u: float  #: scale: pixels per pixel of a 720-line frame
    pad: int
    header: int
    map_rect: tuple[int, int, int, int]
    panels: dict[str, D.TracePanel]
    cursor_span: tuple[int, int]  #: top and bottom of the cursor line


class CompareScene:
    """The static background and the per-frame drawing of a lap-against-reference video."""

    def __init__(self, a: LapData, b: LapData, delta_distance_m: np.ndarray, delta_s: np.ndarray,
                 corners: list[dict[str, Any]], tl: Timeline, size: tuple[int, int]):
        self.a, self.b, self.tl = a, b, tl
        self.k = b.length_m / a.length_m
        # the delta on the lap's metres
        self.delta_d = np.asarray(delta_distance_m) / self.k
        self.delta_s = np.asarray(delta_s)
        self.corners = corners
        self.layout = self._layout(size)
        self.map = self._map_transform()
        bg = self._background()
        self.canvas = Canvas(size[0], size[1], bg)
        self._precompute()

    # -- layout ------------------------------------------------------------------------
    def _channels(self) -> list[str]:
        return [c for c in CHANNELS if c in self.a.channels and c in self.b.channels]

    def _layout(self, size: tuple[int, int]) -> Layout:
        w, h = size
        u = h / 720.0
        pad = max(4, round(12 * u))
        header = round(92 * u)
        split = round(0.44 * w)
        map_rect = (pad, header, split, h - pad)
        names = ["delta", *self._channels()]
        x0, x1 = split + pad, w - pad
        top, bottom = header, h - pad - round(20 * u)
        gap = max(2, round(6 * u))
        avail = bottom - top - gap * (len(names) - 1)
        total = sum(WEIGHTS[n] for n in names)
        d0, d1 = self.tl.start_m, self.tl.end_m
        panels: dict[str, D.TracePanel] = {}
        y = top
        for i, n in enumerate(names):
            ph = round(avail * WEIGHTS[n] / total) if i < len(names) - 1 else bottom - y
            if n == "delta":
                v0, v1 = D.nice_range([self._delta_in(d0, d1)], floor=0.05)
                v0, v1 = min(v0, -0.02), max(v1, 0.02)
            else:
                v0, v1 = self._range(n, d0, d1)
            panels[n] = D.TracePanel(n, (x0, y, x1, y + ph), d0, d1, v0, v1)
            y += ph + gap
        return Layout(w, h, u, pad, header, map_rect, panels, (top, bottom))

    def _delta_in(self, d0: float, d1: float) -> np.ndarray:
        m = (self.delta_d >= d0) & (self.delta_d <= d1)
        return self.delta_s[m] if m.any() else np.zeros(1)

    def _range(self, name: str, d0: float, d1: float) -> tuple[float, float]:
        f = D.DISPLAY[name][1]
        if name in ("Throttle", "Brake"):
            return -0.05, 1.08
        vals = []
        for lap, k in ((self.a, 1.0), (self.b, self.k)):
            m = (lap.distance_m >= d0 * k) & (lap.distance_m <= d1 * k)
            vals.append(lap.channels[name][m].astype(np.float64))
        lo, hi = D.nice_range(vals, floor=0.5 / f if name != "Gear" else 1.0)
        if name == "SteeringWheelAngle":  # symmetric about straight ahead
            m = max(abs(lo), abs(hi))
            return -m, m
        return lo, hi

    def _map_transform(self) -> D.MapTransform:
        """The whole track (both laps' paths) in the map panel, north up."""
        return D.fit_map(np.concatenate([self.b.x_m, self.a.x_m]), np.concatenate([self.b.y_m, self.a.y_m]),
                         self.layout.map_rect)

    # -- static background ---------------------------------------------------------------
    def _background(self) -> np.ndarray:
        from PIL import Image, ImageDraw

        L = self.layout
        im = Image.new("RGB", (L.width, L.height), D.BACKGROUND)
        d = ImageDraw.Draw(im)
        self._draw_header(d)
        self._draw_map(d)
        self._draw_panels(d)
        return np.asarray(im).copy()

    def _draw_header(self, d: ImageDraw.ImageDraw) -> None:
        L, u = self.layout, self.layout.u
        d.text((L.pad, round(8 * u)), self.a.label, font=D.font(20 * u, "bold"), fill=D.LAP, anchor="la")
        d.text((L.width - L.pad, round(8 * u)), self.b.label, font=D.font(20 * u, "bold"), fill=D.REF, anchor="ra")
        d.text((L.width / 2, round(8 * u)), f"delta (sync by {self.tl.sync})", font=D.font(15 * u), fill=D.MUTED,
               anchor="ma")

    def _draw_map(self, d: ImageDraw.ImageDraw) -> None:
        L, u = self.layout, self.layout.u
        x0, y0, x1, y1 = L.map_rect
        d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=D.PANEL)
        # the track, coloured where the lap gains or loses (the delta's rate on the reference)
        cols = D.gain_loss_colours(self.delta_s, self.delta_d)
        d_ref_grid = self.delta_d * self.k
        cx = np.interp(d_ref_grid, self.b.distance_m, self.b.x_m)
        cy = np.interp(d_ref_grid, self.b.distance_m, self.b.y_m)
        D.draw_track(d, self.map, cx, cy, max(3, 6 * u), cols, closed=True)
        # start line
        sx, sy = self.map(*self.b.xy_at(0.0))
        r = max(3, 7 * u)
        d.rectangle([float(sx) - r / 2, float(sy) - r / 2, float(sx) + r / 2, float(sy) + r / 2], fill=D.TEXT)
        for c in self.corners:
            px, py = self.map(*self.b.xy_at(c["apex_m"] * 1.0))
            if x0 <= px <= x1 and y0 <= py <= y1:
                d.text((float(px) + 10 * u, float(py) - 10 * u), str(c["name"]), font=D.font(14 * u, "bold"),
                       fill=D.MUTED, anchor="lm")
        fs = 14 * u
        d.text((x0 + 8 * u, y1 - 8 * u), f"map: {self.a.map_source}", font=D.font(fs), fill=D.MUTED, anchor="ld")
        d.text((x1 - 8 * u, y1 - 8 * u), "gain", font=D.font(fs), fill=D.GAIN, anchor="rd")
        d.text((x1 - 50 * u, y1 - 8 * u), "loss", font=D.font(fs), fill=D.LOSS, anchor="rd")

    def _draw_panels(self, d: ImageDraw.ImageDraw) -> None:
        L, u = self.layout, self.layout.u
        fs = 13 * u
        for name, p in L.panels.items():
            if name == "delta":
                D.draw_delta_ribbon(d, p, self.delta_d, self.delta_s, "delta s (+ behind)", fs)
                for c in self.corners:
                    cx = float(p.x(c["apex_m"] / self.k))
                    if p.rect[0] + 150 * u < cx < p.rect[2] - 90 * u:  # clear of the label and the readout
                        d.text((cx, p.rect[1] + 3 * u), str(c["name"]), font=D.font(12 * u, "bold"), fill=D.MUTED,
                               anchor="ma")
                continue
            label, f, _ = D.DISPLAY[name]
            # draw in display units by scaling the panel's value range
            pv = D.TracePanel(name, p.rect, p.d0, p.d1, p.v0 * f, p.v1 * f)
            D.draw_trace_panel(d, pv, [self.b.distance_m / self.k, self.a.distance_m],
                               [self.b.channels[name] * f, self.a.channels[name] * f], [D.REF, D.LAP], label, fs,
                               width=max(1, round(2 * u)), step=name == "Gear")
        draw_ticks(d, list(L.panels.values())[-1], u)

    # -- per frame ----------------------------------------------------------------------
    def _precompute(self) -> None:
        tl, a, b = self.tl, self.a, self.b
        self.pa = self.map(*a.xy_at(tl.d_lap))
        self.pb = self.map(*b.xy_at(tl.d_ref))
        first = next(iter(self.layout.panels.values()))
        x0, _, x1, _ = first.rect
        self.cursor_a = np.clip(first.x(tl.d_lap), x0, x1 - 1)
        self.cursor_b = np.clip(first.x(tl.d_ref / self.k), x0, x1 - 1)
        self.values = {n: (a.value_at(n, tl.d_lap), b.value_at(n, tl.d_ref)) for n in self._channels()}

    def ops(self, k: int) -> list[Any]:
        """The dynamic drawing of frame ``k`` (everything else is in the background)."""
        L, u, tl = self.layout, self.layout.u, self.tl
        ops: list[Any] = []
        ty = round(34 * u)
        ops += D.mono(L.pad, ty, D.mmss(tl.t_lap[k]), 40 * u, D.TEXT, "l")
        ops += D.mono(L.width - L.pad, ty, D.mmss(tl.t_ref[k]), 40 * u, D.TEXT, "r")
        dt = float(tl.delta_s[k])
        ops += D.mono(L.width / 2, round(30 * u), D.signed(dt), 44 * u, D.delta_colour(dt), "m", width=7)
        top, bottom = L.cursor_span
        if tl.sync == "time":
            xb = float(round(self.cursor_b[k]))
            ops.append(D.Line(((xb, top), (xb, bottom)), D.REF_CURSOR, max(1, round(2 * u))))
        xa = float(round(self.cursor_a[k]))
        ops.append(D.Line(((xa, top), (xa, bottom)), D.CURSOR, max(2, round(2 * u))))
        ops.extend(self._readouts(k))
        # the cars (whole pixels, so a car that has not moved a pixel reuses its patch): the
        # reference's ring under the lap's dot, so both show when they meet
        ops.append(D.Ring(float(round(self.pb[0][k])), float(round(self.pb[1][k])), max(7.0, 12 * u), D.REF,
                          max(2, round(3 * u))))
        ops.append(D.Dot(float(round(self.pa[0][k])), float(round(self.pa[1][k])), max(4.0, 6.5 * u), D.LAP, None))
        return ops

    def _readouts(self, k: int) -> list[Any]:
        L, u = self.layout, self.layout.u
        fs = 15 * u
        w = round(58 * u)
        ops: list[Any] = []
        for name, (va, vb) in self.values.items():
            p = L.panels[name]
            _, f, fmt = D.DISPLAY[name]
            x1, y0 = p.rect[2] - round(6 * u), p.rect[1] + round(2 * u)
            ops += D.mono(x1, y0, fmt.format(float(vb[k]) * f), fs, D.REF, "r", width=4, split=False)
            ops += D.mono(x1 - w, y0, fmt.format(float(va[k]) * f), fs, D.LAP, "r", width=4, split=False)
        p = L.panels["delta"]
        x1, y0 = p.rect[2] - round(6 * u), p.rect[1] + round(2 * u)
        text = D.mono(x1, y0, f"{float(self.tl.d_lap[k]):.0f} m", fs, D.TEXT, "r", width=6, split=False)
        b0, b1 = text[0].box, text[-1].box
        ops.append(D.Rect(b0[0] - 4, b0[1], b1[2] + 2, b1[3], D.PANEL))  # readable over the ribbon
        return ops + text

    def render(self, k: int, fb: FrameBuffer, _src: Any = None) -> None:
        self.canvas.clear(fb)
        self.canvas.draw(fb, self.ops(k))

    def layout_info(self) -> dict[str, Any]:
        return {"map": self.map.to_dict(), "panels": {n: p.to_dict() for n, p in self.layout.panels.items()},
                "cursor_span": list(self.layout.cursor_span),
                "colours": {"lap": D.LAP, "reference": D.REF, "cursor": D.CURSOR, "ref_cursor": D.REF_CURSOR}}


def compare_video(lap: Lap | str, reference: Lap | str, out: str | os.PathLike[str],
                  data: str | os.PathLike[str] | None = None, *, sync: str = "distance",
                  size: tuple[int, int] | str | None = None, fps: float = DEFAULT_FPS,
                  start_m: float | None = None, end_m: float | None = None, hold_s: float = 1.0,
                  preset: str = DEFAULT_PRESET, crf: int = DEFAULT_CRF, workers: int | None = None,
                  progress: bool | None = None) -> VideoResult:
    """A video of ``lap`` against ``reference`` (``Lap`` objects or ``"SESSION:LAP"``).

    ``sync``: "distance" (default; the reference shown where the lap is) or "time" (both on
    their own clocks). ``size`` (width, height) or ``"1280x720"``; ``fps``; ``start_m`` /
    ``end_m`` limit it to part of the lap [m]; ``hold_s`` still frames at the end [s].
    H.264 (libx264 ``preset``, ``crf``). Returns a :class:`VideoResult`.
    """
    from pitbox.analysis import resolve_lap

    t0 = time.perf_counter()
    wh = parse_size(size)
    fps = check_fps(fps)
    a_lap, r_lap = resolve_lap(lap, data), resolve_lap(reference, data)
    a, b, res = lap_pair(a_lap, r_lap, data)
    delta = res["delta"]
    tl = timeline(a, b, delta.distance_m, delta.delta_s, fps, sync, start_m, end_m, hold_s)
    scene = CompareScene(a, b, delta.distance_m, delta.delta_s, res["corners"], tl, wh)
    info = encode(out, wh, fps, tl.n_frames, scene.render, preset=preset, crf=crf, workers=workers,
                  progress=progress, desc="compare", new_buffer=scene.canvas.new_buffer)
    meta = {"lap": a_lap.label, "reference": r_lap.label, "sync": sync, "lap_time_s": a.lap_time_s,
            "reference_time_s": b.lap_time_s, "delta_at_line_s": float(delta.at_line_s),
            "start_m": tl.start_m, "end_m": tl.end_m, "map_source": a.map_source}
    return VideoResult(Path(info.path), tl.n_frames, fps, wh,
                       tl.n_frames / fps, info, time.perf_counter() - t0, scene.layout_info(), meta)
