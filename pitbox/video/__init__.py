"""Coaching videos: two laps compared, telemetry over the driver's onboard video, and one
clip per coaching tip with the tip spoken.

>>> from pitbox.video import compare_video, overlay_video, tip_clips
>>> compare_video("20240825-114000:4", "20240825-114000:3", "cmp.mp4", data="data")
>>> overlay_video("20240825-114000:4", "onboard.mp4", "out.mp4", offset_s=12.4)
>>> tip_clips("20240825-114000", "clips/", data="data")

Frames are drawn with Pillow and numpy and encoded by the ffmpeg that ``imageio-ffmpeg``
bundles (H.264), drawing and encoding at the same time. See docs/video.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VideoError", "VideoInfo", "VideoResult", "compare_video", "overlay_video", "probe", "tip_clips"]

_WHERE = {
    "compare_video": "pitbox.video.compare",
    "overlay_video": "pitbox.video.overlay",
    "tip_clips": "pitbox.video.clips",
    "ClipResult": "pitbox.video.clips",
    "VideoError": "pitbox.video.errors",
    "VideoInfo": "pitbox.video.encode",
    "probe": "pitbox.video.encode",
    "VideoResult": "pitbox.video.common",
}


def __getattr__(name: str) -> Any:  # imported on first use: Pillow and numpy only when a video is made
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'pitbox.video' has no attribute {name!r}")
