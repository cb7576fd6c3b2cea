"""Comparing two laps from anywhere (same session, two sessions, an ``.ibt`` file)."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from pitbox.analysis import corners as C
from pitbox.analysis.align import DEFAULT_STEP_M
from pitbox.analysis.errors import BadReference
from pitbox.analysis.laps_analysis import detect_corners
from pitbox.analysis.session import Lap, check_same_track, resolve_lap
from pitbox.errors import MissingChannel

log = logging.getLogger(__name__)


def _complete(lap: Lap, what: str) -> None:
    if not lap.complete:
        raise BadReference(f"{what} {lap.label} is not a complete lap ({lap.row.reason}): "
                           "compare needs laps that start and end at the line")


def compare_laps(lap: Lap | str, ref: Lap | str, data: str | os.PathLike[str] | None = None,
                 step_m: float = DEFAULT_STEP_M) -> dict[str, Any]:
    """Lap against reference: both lap times [s], the delta at the line, its closure against
    our and iRacing's lap times, the alignment error and per-corner deltas (corners of the
    reference lap, segments from the track's corner file or both laps' braking points; the
    segment over the line is closed with each lap's own start, so the deltas add up to the
    delta at the line)."""
    lap = resolve_lap(lap, data)
    ref = resolve_lap(ref, data)
    check_same_track(lap.session, ref.session)
    _complete(lap, "lap")
    _complete(ref, "reference")
    delta = lap.delta_to(ref, step_m)
    try:
        corners, source, cf = detect_corners(ref, data, step_m)
    except MissingChannel as exc:  # the delta stands without corners
        log.warning("no per-corner deltas: %s", exc)
        corners, source, cf = [], "none", None
    lt, rt = lap.trace(step_m), ref.trace(step_m)
    per_corner = pd.DataFrame()
    if corners:
        corners, _ = C.assign_segments(corners, cf, rt, [lt])
        per_corner = C.corner_table([lt], corners, rt, next_lap=False)  # segments add up to the lap
        keep = ["corner", "segment_time_s", "ref_segment_time_s", "delta_s", "brake_point_m", "min_speed_kmh",
                "exit_speed_kmh", "throttle_pickup_m"]
        per_corner = per_corner[[k for k in keep if k in per_corner]]
        ref_m = C.corner_table([rt], corners, next_lap=False).set_index("corner")
        for col in ("brake_point_m", "min_speed_kmh", "exit_speed_kmh", "throttle_pickup_m"):
            if col in ref_m:
                per_corner[f"ref_{col}"] = per_corner.corner.map(ref_m[col])
    return {
        "lap": {"session": lap.session.id, "lap_index": lap.lap_index, "lap": int(lap.row.lap),
                "time_s": lap.time_s, "iracing_time_s": _f(lap.row.iracing_time_s), "valid": lap.valid},
        "reference": {"session": ref.session.id, "lap_index": ref.lap_index, "lap": int(ref.row.lap),
                      "time_s": ref.time_s, "iracing_time_s": _f(ref.row.iracing_time_s), "valid": ref.valid},
        "track": lap.session.track, "track_length_m": rt.length_m,
        "delta_at_line_s": delta.at_line_s, "closure_s": delta.closure_s,
        "closure_iracing_s": delta.closure_iracing_s, "alignment_error_s": delta.alignment_error_s,
        "corner_source": source,
        "corners": [c.to_dict() for c in corners],
        "per_corner": per_corner,
        "delta": delta,
        "traces": (lt, rt),
    }


def _f(v: object) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def jsonable(obj: Any) -> Any:
    """Numbers, lists and dicts only (DataFrames as records, numpy scalars as Python)."""
    if isinstance(obj, pd.DataFrame):
        return [jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj
