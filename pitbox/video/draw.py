"""Drawing: fonts, colours, the dynamic operations a frame is made of, and the static panels
(track map, traces by distance) with the transforms that place a value on them.

Display units: speed km/h, pedals %, steering deg, distance m, time s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import ImageDraw, ImageFont

log = logging.getLogger(__name__)

RGB = tuple[int, int, int]
BACKGROUND: RGB = (16, 18, 22)
PANEL: RGB = (28, 31, 37)
GRID: RGB = (52, 56, 64)
TEXT: RGB = (230, 232, 236)
MUTED: RGB = (140, 146, 156)
TRACK: RGB = (96, 100, 108)
LAP: RGB = (255, 150, 20)  #: the lap (orange)
REF: RGB = (40, 170, 255)  #: the reference (blue)
CURSOR: RGB = (255, 255, 255)
REF_CURSOR: RGB = (150, 200, 255)
GAIN: RGB = (40, 190, 90)
LOSS: RGB = (225, 55, 55)
THROTTLE: RGB = (40, 200, 80)
BRAKE: RGB = (230, 40, 40)

#: channel -> (label, factor from iRacing's unit, format)
DISPLAY = {
    "Speed": ("Speed km/h", 3.6, "{:.0f}"),
    "Throttle": ("Throttle %", 100.0, "{:.0f}"),
    "Brake": ("Brake %", 100.0, "{:.0f}"),
    "SteeringWheelAngle": ("Steering deg", 180.0 / np.pi, "{:+.0f}"),
    "Gear": ("Gear", 1.0, "{:.0f}"),
}

_SANS = ("DejaVuSans.ttf", "segoeui.ttf", "arial.ttf", "Arial.ttf", "LiberationSans-Regular.ttf")
_BOLD = ("DejaVuSans-Bold.ttf", "segoeuib.ttf", "arialbd.ttf", "Arial Bold.ttf", "LiberationSans-Bold.ttf")
_MONO = ("DejaVuSansMono-Bold.ttf", "consolab.ttf", "courbd.ttf", "LiberationMono-Bold.ttf", "DejaVuSansMono.ttf")


_local = threading.local()


def font(size: float, kind: str = "sans") -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A TrueType font of ``size`` pixels: the system's DejaVu (Linux), Segoe UI/Arial/Consolas
    (Windows), else Pillow's built-in font. One font object per thread (FreeType faces are
    not shared between drawing threads)."""
    key = (max(6, int(round(size))), kind)
    cache = getattr(_local, "fonts", None)
    if cache is None:
        cache = _local.fonts = {}
    if key not in cache:
        cache[key] = _load_font(*key)
    return cache[key]


def _load_font(size: int, kind: str) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    for name in {"sans": _SANS, "bold": _BOLD, "mono": _MONO}[kind]:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    log.debug("no system TrueType font found; using Pillow's built-in font")
    return ImageFont.load_default(size=size)


def mmss(t: float | None) -> str:
    """A lap time as ``m:ss.sss`` (``-:--.---`` for none)."""
    if t is None or not np.isfinite(t):
        return "-:--.---"
    m, s = divmod(max(float(t), 0.0), 60.0)
    return f"{int(m)}:{s:06.3f}"


def signed(dt: float | None, decimals: int = 3) -> str:
    if dt is None or not np.isfinite(dt):
        return "--"
    return f"{dt:+.{decimals}f}"


def delta_colour(dt: float | None) -> RGB:
    if dt is None or not np.isfinite(dt) or abs(dt) < 0.0005:
        return TEXT
    return LOSS if dt > 0 else GAIN


# -- dynamic operations (see pitbox.video.canvas.Op) ---------------------------------------

@dataclass(frozen=True)
class Dot:
    """A filled circle with an outline (a car on the map)."""

    x: float
    y: float
    r: float
    fill: RGB
    outline: RGB | None = (0, 0, 0)
    width: int = 2

    def bbox(self) -> tuple[float, float, float, float]:
        return self.x - self.r - 1, self.y - self.r - 1, self.x + self.r + 1, self.y + self.r + 1

    def draw(self, d: ImageDraw.ImageDraw, dx: float, dy: float) -> None:
        x, y = self.x + dx, self.y + dy
        d.ellipse([x - self.r, y - self.r, x + self.r, y + self.r], fill=self.fill, outline=self.outline,
                  width=self.width if self.outline else 0)


@dataclass(frozen=True)
class Ring:
    """A circle outline (the reference car, visible around the lap's dot when they meet)."""

    x: float
    y: float
    r: float
    colour: RGB
    width: int = 3

    def bbox(self) -> tuple[float, float, float, float]:
        return self.x - self.r - 1, self.y - self.r - 1, self.x + self.r + 1, self.y + self.r + 1

    def draw(self, d: ImageDraw.ImageDraw, dx: float, dy: float) -> None:
        x, y = self.x + dx, self.y + dy
        d.ellipse([x - self.r, y - self.r, x + self.r, y + self.r], outline=self.colour, width=self.width)


@dataclass(frozen=True)
class Line:
    points: tuple[tuple[float, float], ...]
    colour: RGB
    width: int = 2

    def bbox(self) -> tuple[float, float, float, float]:
        xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
        h = self.width / 2 + 1
        return min(xs) - h, min(ys) - h, max(xs) + h, max(ys) + h

    def draw(self, d: ImageDraw.ImageDraw, dx: float, dy: float) -> None:
        d.line([(x + dx, y + dy) for x, y in self.points], fill=self.colour, width=self.width)


@dataclass(frozen=True)
class Rect:
    x0: float
    y0: float
    x1: float
    y1: float
    fill: RGB | None
    outline: RGB | None = None
    width: int = 1

    def bbox(self) -> tuple[float, float, float, float]:
        return self.x0, self.y0, self.x1, self.y1

    def draw(self, d: ImageDraw.ImageDraw, dx: float, dy: float) -> None:
        if self.x1 - self.x0 < 1 or self.y1 - self.y0 < 1:
            return
        d.rectangle([self.x0 + dx, self.y0 + dy, self.x1 + dx - 1, self.y1 + dy - 1], fill=self.fill,
                    outline=self.outline, width=self.width)


@dataclass(frozen=True)
class Text:
    """Text at (x, y) with a Pillow anchor ("la" left-ascender, "ra", "ma", "mm" …).

    ``box`` reserves the area the text may cover (so a changing number never leaves
    pixels of the previous frame behind; the canvas redraws the whole box)."""

    x: float
    y: float
    text: str
    size: float
    colour: RGB = TEXT
    anchor: str = "la"
    kind: str = "sans"
    box: tuple[float, float, float, float] | None = None

    @property
    def pad(self) -> int:  # a reserved box is exact; measured text gets room for antialiasing
        return 0 if self.box is not None else 2

    def bbox(self) -> tuple[float, float, float, float]:
        if self.box is not None:
            return self.box
        b = font(self.size, self.kind).getbbox(self.text, anchor=self.anchor)
        return self.x + b[0], self.y + b[1], self.x + b[2], self.y + b[3]

    def draw(self, d: ImageDraw.ImageDraw, dx: float, dy: float) -> None:
        d.text((self.x + dx, self.y + dy), self.text, font=font(self.size, self.kind), fill=self.colour,
               anchor=self.anchor)


@dataclass(frozen=True)
class Polygon:
    points: tuple[tuple[float, float], ...]
    fill: RGB

    def bbox(self) -> tuple[float, float, float, float]:
        xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
        return min(xs), min(ys), max(xs) + 1, max(ys) + 1

    def draw(self, d: ImageDraw.ImageDraw, dx: float, dy: float) -> None:
        d.polygon([(x + dx, y + dy) for x, y in self.points], fill=self.fill)


def _mono_cell(size: float, kind: str) -> tuple[int, int]:
    key = (max(6, int(round(size))), kind, "cell")
    cache = getattr(_local, "fonts", None)
    if cache is None:
        cache = _local.fonts = {}
    if key not in cache:
        f = font(size, kind)
        top = f.getbbox("0:+-.", anchor="la")
        cache[key] = (int(np.ceil(f.getlength("0") / 2)) * 2, (int(np.ceil(top[3])) + 3) // 2 * 2)
    return cache[key]


def mono(x: float, y: float, text: str, size: float, colour: RGB = TEXT, anchor: str = "l",
         kind: str = "mono", width: int | None = None, split: bool = True) -> list[Text]:
    """Monospaced text in even-aligned character cells. ``split``: one operation per
    character, so a changing number redraws only the digits that change (a digit seen at
    that place before comes from the canvas' patch cache); else one operation for the whole
    text in a fixed box. ``anchor``: "l", "r" or "m" at ``x``; ``width`` pads to that many
    characters (right-aligned, so digits keep their cells)."""
    adv, cell_h = _mono_cell(size, kind)
    n = max(len(text), width or 0)
    text = text.rjust(n)
    x0 = x - n * adv if anchor == "r" else x - n * adv / 2 if anchor == "m" else x
    x0 = int(round(x0)) & ~1
    y0 = int(round(y)) & ~1
    if not split:
        return [Text(x0, y0, text, size, colour, "la", kind, box=(x0, y0, x0 + n * adv, y0 + cell_h))]
    return [Text(x0 + i * adv, y0, ch, size, colour, "la", kind, box=(x0 + i * adv, y0, x0 + (i + 1) * adv, y0 + cell_h))
            for i, ch in enumerate(text)]


# -- static panels -------------------------------------------------------------------------

@dataclass
class MapTransform:
    """Track map: metres east/north -> frame pixels (north up): ``px = x0 + scale * x_m``,
    ``py = y0 - scale * y_m``."""

    scale: float  #: pixels per metre
    x0: float
    y0: float
    rect: tuple[int, int, int, int]  #: the panel (x0, y0, x1, y1) in frame pixels

    def __call__(self, x_m: np.ndarray | float, y_m: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        return self.x0 + self.scale * np.asarray(x_m), self.y0 - self.scale * np.asarray(y_m)

    def to_dict(self) -> dict[str, object]:
        return {"scale_px_per_m": self.scale, "x0": self.x0, "y0": self.y0, "rect": list(self.rect)}


def fit_map(x_m: np.ndarray, y_m: np.ndarray, rect: tuple[int, int, int, int], margin: float = 0.06
            ) -> MapTransform:
    """The transform that fits the points into ``rect`` with a margin, keeping the aspect."""
    ok = np.isfinite(x_m) & np.isfinite(y_m)
    xs, ys = np.asarray(x_m)[ok], np.asarray(y_m)[ok]
    w, h = rect[2] - rect[0], rect[3] - rect[1]
    span_x, span_y = max(float(np.ptp(xs)), 1.0), max(float(np.ptp(ys)), 1.0)
    scale = min(w * (1 - 2 * margin) / span_x, h * (1 - 2 * margin) / span_y)
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    return MapTransform(float(scale), rect[0] + w / 2 - scale * cx, rect[1] + h / 2 + scale * cy, rect)


def draw_track(d: ImageDraw.ImageDraw, tf: MapTransform, x_m: np.ndarray, y_m: np.ndarray, width: float,
               colours: np.ndarray | None = None, closed: bool = True) -> None:
    """The track line; with ``colours`` (n x 3 uint8, one per point) each piece in its colour."""
    px, py = tf(x_m, y_m)
    ok = np.isfinite(px) & np.isfinite(py)
    w = max(1, int(round(width)))
    ok &= _spaced(px, py, max(2.0, w / 3))  # wide lines through dense points leave specks at the joints
    px, py = px[ok], py[ok]
    d.line(list(zip(px.tolist(), py.tolist(), strict=True)) + ([(float(px[0]), float(py[0]))] if closed else []),
           fill=TRACK, width=w + 4, joint="curve")
    if colours is None:
        return
    cols = np.asarray(colours)[ok]
    # runs of one colour as one polyline each (a few dozen calls, not thousands)
    change = np.flatnonzero(np.any(cols[1:] != cols[:-1], axis=1)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(px) - 1]])
    for a, b in zip(starts, ends, strict=True):
        seg = list(zip(px[a:b + 1].tolist(), py[a:b + 1].tolist(), strict=True))
        if len(seg) >= 2:
            d.line(seg, fill=tuple(int(c) for c in cols[a]), width=w, joint="curve")


def _spaced(px: np.ndarray, py: np.ndarray, min_px: float) -> np.ndarray:
    """Mask of points at least ``min_px`` apart along the path (first and last kept)."""
    keep = np.zeros(len(px), dtype=bool)
    if len(px) == 0:
        return keep
    step = np.hypot(np.diff(px, prepend=px[0]), np.diff(py, prepend=py[0]))
    step[~np.isfinite(step)] = 0.0
    travelled = np.cumsum(step)
    bucket = np.floor(travelled / min_px)
    keep[np.concatenate([[0], np.flatnonzero(np.diff(bucket)) + 1])] = True
    keep[-1] = True
    return keep


def gain_loss_colours(delta_s: np.ndarray, distance_m: np.ndarray, window_m: float = 30.0) -> np.ndarray:
    """Per point: green where the lap gains on the reference, red where it loses, grey where
    the rate is small (rate of the delta over ``window_m``, in ms per metre)."""
    dd = np.asarray(delta_s, dtype=np.float64)
    dd = np.where(np.isfinite(dd), dd, np.nan)
    step = max(float(np.median(np.diff(distance_m))), 1e-6) if len(distance_m) > 1 else 1.0
    n = max(1, int(round(window_m / step)))
    filled = np.interp(np.arange(len(dd)), np.flatnonzero(np.isfinite(dd)), dd[np.isfinite(dd)]) \
        if np.isfinite(dd).any() else np.zeros(len(dd))
    rate = (np.roll(filled, -n) - np.roll(filled, n)) / (2 * n * step) * 1000.0  # ms/m
    rate[:n] = rate[n] if len(rate) > n else 0.0
    rate[-n:] = rate[-n - 1] if len(rate) > n else 0.0
    out = np.tile(np.array(TRACK, dtype=np.uint8), (len(dd), 1))
    out[rate > 0.4] = LOSS
    out[rate < -0.4] = GAIN
    return out


@dataclass
class TracePanel:
    """A channel (or the delta) by distance: ``px = x0 + (d - d0) * sx``, ``py = y0 - (v - v0) * sy``."""

    name: str
    rect: tuple[int, int, int, int]
    d0: float
    d1: float
    v0: float
    v1: float
    values: list[np.ndarray] = field(default_factory=list)

    def x(self, d: np.ndarray | float) -> np.ndarray:
        x0, _, x1, _ = self.rect
        return x0 + (np.asarray(d, dtype=np.float64) - self.d0) * (x1 - x0) / (self.d1 - self.d0)

    def y(self, v: np.ndarray | float) -> np.ndarray:
        _, y0, _, y1 = self.rect
        span = self.v1 - self.v0 if self.v1 != self.v0 else 1.0
        return y1 - (np.asarray(v, dtype=np.float64) - self.v0) * (y1 - y0) / span

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "rect": list(self.rect), "d0_m": self.d0, "d1_m": self.d1}


def nice_range(values: Sequence[np.ndarray], pad: float = 0.06, floor: float = 1e-6) -> tuple[float, float]:
    vals = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = float(vals.min()), float(vals.max())
    span = max(hi - lo, floor)
    return lo - pad * span, hi + pad * span


def draw_trace_panel(d: ImageDraw.ImageDraw, p: TracePanel, distance: Sequence[np.ndarray],
                     series: Sequence[np.ndarray], colours: Sequence[RGB], label: str, size: float,
                     width: int = 2, step: bool = False) -> None:
    """Panel background, zero line, one line per series (``step`` for gears), the label."""
    x0, y0, x1, y1 = p.rect
    d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=PANEL)
    if p.v0 < 0 < p.v1:
        zy = float(p.y(0.0))
        d.line([(x0, zy), (x1 - 1, zy)], fill=GRID, width=1)
    for dist, vals, col in zip(distance, series, colours, strict=True):
        keep = (dist >= p.d0) & (dist <= p.d1) & np.isfinite(vals)
        if keep.sum() < 2:
            continue
        xs, ys = p.x(dist[keep]), p.y(vals[keep])
        if step:  # hold each value until the next point
            xs = np.repeat(xs, 2)[1:]
            ys = np.repeat(ys, 2)[:-1]
        pts = _thin(xs, ys)
        d.line(pts, fill=col, width=width, joint="curve")
    d.text((x0 + 6, y0 + 3), label, font=font(size), fill=MUTED, anchor="la")


def _thin(xs: np.ndarray, ys: np.ndarray) -> list[tuple[float, float]]:
    """At most a few points per pixel column (min and max kept), so long laps draw fast."""
    cols = np.floor(xs * 2).astype(np.int64)
    if len(cols) < 4 * (cols.max() - cols.min() + 1):
        return list(zip(xs.tolist(), ys.tolist(), strict=True))
    keep = np.zeros(len(xs), dtype=bool)
    keep[[0, -1]] = True
    change = np.flatnonzero(np.diff(cols)) + 1
    keep[change] = True
    keep[change - 1] = True
    return list(zip(xs[keep].tolist(), ys[keep].tolist(), strict=True))


def draw_delta_ribbon(d: ImageDraw.ImageDraw, p: TracePanel, distance: np.ndarray, delta_s: np.ndarray,
                      label: str, size: float) -> None:
    """The delta by distance as a filled ribbon: red above zero (lap behind), green below."""
    x0, y0, x1, y1 = p.rect
    d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=PANEL)
    keep = (distance >= p.d0) & (distance <= p.d1) & np.isfinite(delta_s)
    if keep.sum() >= 2:
        xs, ys = p.x(distance[keep]), p.y(delta_s[keep])
        zy = float(p.y(0.0))
        # one vertical span per pixel column from zero to the delta (min and max within the column)
        cols = np.arange(int(np.ceil(xs[0])), int(np.floor(xs[-1])) + 1)
        at = np.interp(cols, xs, ys)
        idx = np.clip(np.searchsorted(xs, cols), 0, len(xs) - 1)
        for c, v, i in zip(cols.tolist(), at.tolist(), idx.tolist(), strict=True):
            lo = min(v, float(ys[max(i - 1, 0)]), float(ys[i]))
            hi = max(v, float(ys[max(i - 1, 0)]), float(ys[i]))
            top, bottom = min(lo, zy), max(hi, zy)
            d.line([(c, top), (c, bottom)], fill=LOSS if v < zy else GAIN, width=1)
        d.line([(x0, zy), (x1 - 1, zy)], fill=GRID, width=1)
        d.line(_thin(xs, ys), fill=TEXT, width=1)
    d.text((x0 + 6, y0 + 3), label, font=font(size), fill=MUTED, anchor="la")
