"""What every video command shares: sizes, the result of a render."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pitbox.video.encode import VideoInfo
from pitbox.video.errors import VideoError

DEFAULT_SIZE = (1280, 720)
DEFAULT_FPS = 30.0


def parse_size(text: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"1280x720"`` (or a tuple) -> (width, height), both even and at least 16."""
    if text is None:
        return DEFAULT_SIZE
    if isinstance(text, tuple):
        w, h = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
        if not m:
            raise VideoError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720")
        w, h = int(m.group(1)), int(m.group(2))
    if w % 2 or h % 2 or w < 160 or h < 90 or w > 7680 or h > 4320:
        raise VideoError(f"size {w}x{h}: expected even width and height between 160x90 and 7680x4320")
    return int(w), int(h)


def check_fps(fps: float) -> float:
    try:
        f = float(fps)
    except (TypeError, ValueError):
        raise VideoError(f"fps {fps!r}: expected a number of frames per second") from None
    if not 1 <= f <= 240:
        raise VideoError(f"fps {fps}: expected 1 to 240 frames per second")
    return f


@dataclass
class VideoResult:
    """A finished video: where it is, what ffmpeg reads back from it, and where things are
    drawn (``layout``: the map transform and the panels' rectangles, for checking frames)."""

    path: Path
    frames: int
    fps: float
    size: tuple[int, int]
    duration_s: float
    info: VideoInfo
    render_s: float  #: wall time of the render [s]
    layout: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def realtime_ratio(self) -> float:
        """Seconds of video per second of rendering."""
        return self.duration_s / self.render_s if self.render_s > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "frames": self.frames, "fps": self.fps, "size": list(self.size),
                "duration_s": self.duration_s, "render_s": round(self.render_s, 3),
                "realtime_ratio": round(self.realtime_ratio, 2), "has_audio": self.info.has_audio,
                "streams": [f"{s.kind}: {s.codec}" for s in self.info.streams], **self.meta}

    def _repr_html_(self) -> str:  # a video result shows itself in a notebook
        import base64

        data = base64.b64encode(self.path.read_bytes()).decode()
        return (f'<video controls width="{min(self.size[0], 960)}" src="data:video/mp4;base64,{data}"></video>'
                f"<div>{self.path.name}: {self.frames} frames, {self.duration_s:.1f} s</div>")
