"""Corners: found on a lap's curvature, named from the track's corner file, given segments
that tile the lap, split into braking, entry, apex and exit, and measured on every lap.

One module per job:

* :mod:`~pitbox.analysis.corners.model` -- the immutable :class:`Corner`;
* :mod:`~pitbox.analysis.corners.detect` -- curvature and :func:`find_corners`;
* :mod:`~pitbox.analysis.corners.naming` -- which corner file applies (the format and its
  loading live in :mod:`pitbox.tracks`) and naming detected corners after it;
* :mod:`~pitbox.analysis.corners.segments` -- segments from the file or the braking points;
* :mod:`~pitbox.analysis.corners.window` -- a stretch of a lap on the distance grid;
* :mod:`~pitbox.analysis.corners.metrics` -- per-lap metrics (:func:`corner_table`);
* :mod:`~pitbox.analysis.corners.phases` -- braking/entry/apex/exit phases and their times.
"""

from pitbox.analysis.corners.detect import curvature, find_corners
from pitbox.analysis.corners.metrics import corner_table, lap_corner_metrics, segment_clean
from pitbox.analysis.corners.model import Corner
from pitbox.analysis.corners.naming import file_corners, load_track_file, name_corners
from pitbox.analysis.corners.phases import phase_bounds, phase_times
from pitbox.analysis.corners.segments import (
    assign_segments,
    brake_points,
    segments_from_braking,
    segments_from_file,
)

__all__ = [
    "Corner", "assign_segments", "brake_points", "corner_table", "curvature", "file_corners", "find_corners",
    "lap_corner_metrics", "load_track_file", "name_corners", "phase_bounds", "phase_times", "segment_clean",
    "segments_from_braking", "segments_from_file",
]
