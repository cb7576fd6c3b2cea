"""Segments: each corner owns a stretch of the lap from its braking zone to the next
corner's, so the segments tile the lap and the time a mistake costs on the following
straight counts at the corner that caused it. The segment that contains the start line
wraps round it. Every function returns new corners; none changes the ones it is given."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pitbox.analysis.align import Trace
from pitbox.analysis.corners.model import Corner
from pitbox.analysis.corners.naming import file_corners
from pitbox.analysis.corners.window import brake_on, window
from pitbox.tracks import CornerFile

SEGMENT_MARGIN_M = 30.0  #: a segment starts this far before the earliest braking point


def brake_points(trace: Trace, corners: list[Corner]) -> list[float | None]:
    """Per corner: where braking for it starts on this lap [m] (None when it is taken flat)."""
    out: list[float | None] = []
    prev_end = corners[-1].end_m - trace.length_m if corners else 0.0
    for c in corners:
        out.append(brake_on(window(trace, max(prev_end, 0.0), c.apex_m)))
        prev_end = c.end_m
    return out


def segments_from_braking(corners: list[Corner], length_m: float,
                          braking: list[list[float | None]]) -> list[Corner]:
    """Corners with segments that start ``SEGMENT_MARGIN_M`` before the earliest braking point
    seen for the corner on any lap given (``braking``: per lap, :func:`brake_points`), or
    before its turn-in when nobody brakes, never inside the previous corner."""
    n = len(corners)
    starts = []
    for i, c in enumerate(corners):
        pts = [b[i] for b in braking if b[i] is not None]
        first = min(pts) if pts else c.start_m
        prev_end = corners[i - 1].end_m - (length_m if i == 0 else 0.0)
        start = max(min(first, c.start_m) - SEGMENT_MARGIN_M, (prev_end + min(first, c.start_m)) / 2)
        starts.append(start % length_m if start < 0 else start)
    if n == 1:
        return [replace(corners[0], seg_start_m=starts[0], seg_end_m=starts[0] + length_m)]
    out = []
    for i, c in enumerate(corners):
        nxt = starts[(i + 1) % n]
        out.append(replace(c, seg_start_m=starts[i], seg_end_m=nxt if nxt > starts[i] else nxt + length_m))
    return out


def segments_from_file(corners: list[Corner], named: list[dict[str, Any]], length_m: float) -> list[Corner] | None:
    """Corners with the file's ranges (:func:`~pitbox.analysis.corners.naming.file_corners`) as
    segments when the ranges tile the lap and name exactly these corners (the simulator's files
    do: each range runs to the next braking point); None when they do not."""
    if not named or {n["name"] for n in named} != {c.name for c in corners}:
        return None
    total = sum(n["end_m"] - n["start_m"] for n in named)
    if abs(total - length_m) > 0.01 * length_m:
        return None
    by_name = {n["name"]: n for n in named}
    return [replace(c, seg_start_m=by_name[c.name]["start_m"], seg_end_m=by_name[c.name]["end_m"]) for c in corners]


def assign_segments(corners: list[Corner], cf: CornerFile | None, ref: Trace,
                    laps: list[Trace]) -> tuple[list[Corner], str]:
    """The corners with their segments, and the source used: the corner file's ranges when
    they tile the lap (``"track_file"``), else from the braking points seen on ``laps`` and
    the reference (``"braking_points"``); ``"none"`` without corners."""
    if not corners:
        return [], "none"
    from_file = segments_from_file(corners, file_corners(cf, ref.length_m), ref.length_m)
    if from_file is not None:
        return from_file, "track_file"
    braking = [brake_points(t, corners) for t in [*laps, ref]]
    return segments_from_braking(corners, ref.length_m, braking), "braking_points"
