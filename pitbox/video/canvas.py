"""Frames as YUV 4:2:0 buffers, composed from a static background and small dynamic patches.

H.264 stores YUV 4:2:0. Handing ffmpeg RGB frames makes it convert every pixel of every
frame; here the static background (maps, trace lines, labels) is converted once, and each
frame only converts the few small rectangles that change (a car's dot, a cursor, a timer):
:class:`Canvas` copies the background into the frame buffer, groups the frame's drawing
operations (:mod:`pitbox.video.draw`) into non-overlapping patches, draws each patch with
Pillow on its RGB background and writes it back as YUV.

Colours follow ITU-R BT.601 with limited range, which is what ffmpeg assumes for
untagged YUV (and what its own RGB -> YUV conversion writes); the output is tagged so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from PIL import ImageDraw

#: ffmpeg output options that tag the stream with the colour space the frames are in
COLOUR_TAGS = ["-colorspace", "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m",
               "-color_range", "tv"]

#: BT.601 limited range: Y, U and V from R, G, B (0-255), before the offsets 16, 128, 128
Y_FROM_RGB = np.array([65.481, 128.553, 24.966], dtype=np.float32) / 255.0
U_FROM_RGB = np.array([-37.797, -74.203, 112.0], dtype=np.float32) / 255.0
V_FROM_RGB = np.array([112.0, -93.786, -18.214], dtype=np.float32) / 255.0
_U4, _V4 = U_FROM_RGB / 4, V_FROM_RGB / 4  # chroma of the sum of a 2x2 block
#: patches kept per canvas (a readout that shows the same number again is not redrawn)
PATCH_CACHE = 8192


class Op(Protocol):
    """A drawing operation: its bounding box in frame pixels and how to draw it."""

    def bbox(self) -> tuple[float, float, float, float]: ...

    def draw(self, d: ImageDraw.ImageDraw, dx: float, dy: float) -> None: ...


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y (h, w), U and V (h/2, w/2) uint8 planes of an RGB uint8 image with even sides
    (chroma from the mean of each 2x2 block)."""
    f = rgb.astype(np.float32)
    y = (f @ Y_FROM_RGB + 16.5).astype(np.uint8)  # 16..235: rounding by truncation of x + 0.5
    quad = f[0::2, 0::2] + f[1::2, 0::2] + f[0::2, 1::2] + f[1::2, 1::2]
    u = (quad @ _U4 + 128.5).astype(np.uint8)  # 16..240
    v = (quad @ _V4 + 128.5).astype(np.uint8)
    return y, u, v


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """RGB uint8 image from Y, U, V planes (chroma repeated over each 2x2 block)."""
    yf = (y.astype(np.float32) - 16.0) * (255.0 / 219.0)
    uf = np.repeat(np.repeat(u.astype(np.float32) - 128.0, 2, axis=0), 2, axis=1) * (255.0 / 224.0)
    vf = np.repeat(np.repeat(v.astype(np.float32) - 128.0, 2, axis=0), 2, axis=1) * (255.0 / 224.0)
    r = yf + 1.402 * vf
    g = yf - 0.344136 * uf - 0.714136 * vf
    b = yf + 1.772 * uf
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


class FrameBuffer:
    """One frame as a contiguous YUV 4:2:0 byte buffer with plane views (what ffmpeg reads
    as ``-pix_fmt yuv420p``)."""

    def __init__(self, width: int, height: int, data: np.ndarray | None = None):
        self.width, self.height = width, height
        self.dirty: list[tuple[int, int, int, int]] | None = None  #: patches drawn since the last full clear
        self.stale: list[tuple[int, int, int, int]] = []  #: patches of the previous frame still to restore
        n = width * height
        self.data = np.empty(n * 3 // 2, dtype=np.uint8) if data is None else data
        self.y = self.data[:n].reshape(height, width)
        self.u = self.data[n:n + n // 4].reshape(height // 2, width // 2)
        self.v = self.data[n + n // 4:].reshape(height // 2, width // 2)

    @classmethod
    def from_rgb(cls, rgb: np.ndarray) -> FrameBuffer:
        h, w = rgb.shape[:2]
        fb = cls(w, h)
        fb.y[:], fb.u[:], fb.v[:] = rgb_to_yuv420(rgb)
        return fb

    def rgb(self, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """RGB of the frame or of the even-aligned ``box`` (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = box or (0, 0, self.width, self.height)
        return yuv420_to_rgb(self.y[y0:y1, x0:x1], self.u[y0 // 2:y1 // 2, x0 // 2:x1 // 2],
                             self.v[y0 // 2:y1 // 2, x0 // 2:x1 // 2])

    def put_rgb(self, x0: int, y0: int, rgb: np.ndarray) -> None:
        """Write an RGB patch (even sides) at the even position (x0, y0)."""
        h, w = rgb.shape[:2]
        yy, uu, vv = rgb_to_yuv420(rgb)
        self.y[y0:y0 + h, x0:x0 + w] = yy
        self.u[y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2] = uu
        self.v[y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2] = vv


def even_box(box: tuple[float, float, float, float], width: int, height: int, pad: int = 2
             ) -> tuple[int, int, int, int] | None:
    """The box grown by ``pad`` pixels, aligned to even pixels and clipped to the frame."""
    x0 = max(0, int(np.floor(box[0])) - pad) & ~1
    y0 = max(0, int(np.floor(box[1])) - pad) & ~1
    x1 = min(width, (int(np.ceil(box[2])) + pad + 1) // 2 * 2)
    y1 = min(height, (int(np.ceil(box[3])) + pad + 1) // 2 * 2)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def merge_boxes(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Union of overlapping boxes until none overlap (boxes that only touch stay apart)."""
    return [b for b, _ in group_boxes(boxes)]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def group_boxes(boxes: list[tuple[int, int, int, int]]) -> list[tuple[tuple[int, int, int, int], list[int]]]:
    """Groups of overlapping boxes: each group's bounding box and the indices of its boxes
    (in order); no two groups overlap. A sweep from left to right (a group whose right edge
    is left of the next box takes no more boxes), then the groups that grew into each other."""
    done: list[tuple[tuple[int, int, int, int], list[int]]] = []
    active: list[tuple[tuple[int, int, int, int], list[int]]] = []
    for i in sorted(range(len(boxes)), key=lambda j: boxes[j][0]):
        b, members = boxes[i], [i]
        keep = []
        for g in active:
            (done if g[0][2] <= b[0] else keep).append(g)
        active = keep
        grown = True
        while grown:  # a grown box may now reach other groups
            grown = False
            for g in active:
                if _overlap(g[0], b):
                    a = g[0]
                    b = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    members += g[1]
                    active.remove(g)
                    grown = True
                    break
        active.append((b, members))
    groups = done + active
    # a group that grew after another was retired may have reached it: join those too
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                a, b = groups[i][0], groups[j][0]
                if _overlap(a, b):
                    groups[i] = ((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])),
                                 groups[i][1] + groups[j][1])
                    groups.pop(j)
                    merged = True
                    break
            if merged:
                break
    return [(b, sorted(m)) for b, m in groups]


class Canvas:
    """Draws a frame's operations onto a frame buffer, one patch per group of overlapping
    operations. ``background`` (RGB, the static parts) is what a patch is drawn on; without
    it (video overlays) a patch is drawn on the frame's own pixels."""

    def __init__(self, width: int, height: int, background: np.ndarray | None = None):
        if width % 2 or height % 2:
            raise ValueError(f"frame size {width}x{height}: expected even width and height (YUV 4:2:0)")
        self.width, self.height = width, height
        self.background_rgb = background
        self.background = FrameBuffer.from_rgb(background) if background is not None else None
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def new_buffer(self) -> FrameBuffer:
        return FrameBuffer(self.width, self.height)

    def clear(self, fb: FrameBuffer) -> None:
        """Put the static background back into ``fb``: only where the frame last drawn in
        this buffer drew (the whole frame the first time)."""
        bg = self.background
        if bg is None:
            return
        if fb.dirty is None:
            np.copyto(fb.data, bg.data)
            fb.dirty = []
        else:
            fb.stale = fb.dirty  # restored in draw(), except where the new frame draws the same box
            fb.dirty = []

    def _restore(self, fb: FrameBuffer, boxes: Sequence[tuple[int, int, int, int]]) -> None:
        bg = self.background
        assert bg is not None
        for x0, y0, x1, y1 in boxes:
            fb.y[y0:y1, x0:x1] = bg.y[y0:y1, x0:x1]
            fb.u[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = bg.u[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
            fb.v[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = bg.v[y0 // 2:y1 // 2, x0 // 2:x1 // 2]

    def draw(self, fb: FrameBuffer, ops: Sequence[Op]) -> None:
        """Draw ``ops`` (in order: later ones on top) onto ``fb``."""
        boxes, kept = [], []
        w, h = self.width, self.height
        for op in ops:
            pad = getattr(op, "pad", 2)
            box = even_box(op.bbox(), w, h, pad)
            if box is not None:
                boxes.append(box)
                kept.append(op)
        groups = group_boxes(boxes)
        if fb.stale:
            now = {b for b, _ in groups}
            self._restore(fb, [b for b in fb.stale if b not in now])
            fb.stale = []
        if fb.dirty is not None:
            fb.dirty.extend(b for b, _ in groups)
        for patch, members in groups:
            x0, y0, x1, y1 = patch
            mine = tuple(kept[i] for i in members)
            if self.background_rgb is None:
                y, u, v = self._patch(fb.rgb(patch), mine, x0, y0)
            else:  # on a static background the same drawing gives the same patch: keep it
                key = (patch, mine)
                hit = self._cache.get(key)
                if hit is None:
                    hit = self._patch(self.background_rgb[y0:y1, x0:x1], mine, x0, y0)
                    if len(self._cache) >= PATCH_CACHE:
                        self._cache.clear()
                    self._cache[key] = hit
                y, u, v = hit
            fb.y[y0:y1, x0:x1] = y
            fb.u[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = u
            fb.v[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = v

    @staticmethod
    def _patch(base: np.ndarray, ops: Sequence[Op], x0: int, y0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from PIL import Image, ImageDraw

        im = Image.fromarray(np.ascontiguousarray(base))
        d = ImageDraw.Draw(im)
        for op in ops:
            op.draw(d, -x0, -y0)
        return rgb_to_yuv420(np.asarray(im))
