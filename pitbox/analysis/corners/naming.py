"""Corner names from a track's corner file (:mod:`pitbox.tracks`): which file applies to a
session, its ranges in metres, and the detected corners named after them."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

from pitbox.analysis.corners.detect import join
from pitbox.analysis.corners.model import Corner
from pitbox.tracks import CornerFile, load_corner_file, read_corner_file

log = logging.getLogger(__name__)

#: ``corner_file`` argument: a path, None (look the track up) or False (no file: detection alone)
CornerFileSpec = str | os.PathLike[str] | bool | None


def load_track_file(track: str, config: str = "", path: CornerFileSpec = None) -> CornerFile | None:
    """The corner file of a track as iRacing names it (``WeekendInfo.TrackName`` and
    ``TrackConfigName``), looked up as :func:`pitbox.tracks.load_corner_file` does; ``path``
    names a file explicitly (a user's own), ``False`` asks for none (corners from the
    telemetry alone). None when there is none."""
    if path is False:
        return None
    if path is not None and path is not True:
        return read_corner_file(path)
    return load_corner_file(track, config)


def file_corners(cf: CornerFile | None, length_m: float) -> list[dict[str, Any]]:
    """Corners of a corner file in metres: ``name``, ``start_m``, ``end_m`` (> length when the
    range wraps over the line), ``apex_m`` and ``brake_m`` (None when not given)."""
    out = []
    for c in cf.corners if cf is not None else []:
        a, b = c.start_pct * length_m, c.end_pct * length_m
        if b <= a:
            b += length_m
        out.append({"name": c.name, "start_m": a, "end_m": b,
                    "apex_m": None if c.apex_pct is None else c.apex_pct * length_m,
                    "brake_m": None if c.brake_pct is None else c.brake_pct * length_m})
    return out


def _inside(x: float, n: dict[str, Any], length_m: float) -> bool:
    return any(n["start_m"] <= v < n["end_m"] for v in (x, x + length_m))


def name_corners(corners: list[Corner], named: list[dict[str, Any]], length_m: float) -> list[Corner]:
    """Corners named from a file: each file corner takes the detected corners whose apex lies
    in its range (merged into one when several: a chicane, a double apex); detected corners
    outside every range keep a number (``X1``, ``X2`` …). Returns new corners in lap order."""
    out: list[Corner] = []
    used: set[int] = set()
    for n in named:
        hits = [i for i, c in enumerate(corners) if i not in used and _inside(c.apex_m, n, length_m)]
        if not hits:
            log.warning("corner %s of the corner file: no corner detected in its range (%.0f-%.0f m); "
                        "it is left out", n["name"], n["start_m"], n["end_m"])
            continue
        used.update(hits)
        out.append(join([corners[i] for i in hits], n["name"]))
    extra = [replace(c, name=f"X{k + 1}") for k, c in enumerate(c for i, c in enumerate(corners) if i not in used)]
    return [replace(c, number=i + 1) for i, c in enumerate(sorted(out + extra, key=lambda c: c.apex_m))]
