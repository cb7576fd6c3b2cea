"""One pass over a session: reference lap, corners, every complete lap on the distance
grid, its delta to the reference and its per-corner metrics.

>>> a = analyse(load_session("20150528"))
>>> a.corners            # [Corner(T1 …), Corner(T2 …)]
>>> a.table              # one row per (lap, corner): brake point, min speed, delta_s …
>>> a.deltas[2]          # Delta of lap 2 against the reference
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pitbox.analysis import corners as C
from pitbox.analysis.align import DEFAULT_STEP_M, Delta, Trace, compute_delta
from pitbox.analysis.channels import TRACE_CHANNELS
from pitbox.analysis.corners.naming import CornerFileSpec
from pitbox.analysis.errors import AnalysisError
from pitbox.analysis.session import Lap, Session, load_session
from pitbox.analysis.trackmap import has_gps, lap_xy
from pitbox.tracks import CornerFile

log = logging.getLogger(__name__)


@dataclass
class SessionAnalysis:
    """Everything the coach, figures and reports use for one session."""

    session: Session
    reference: Lap
    corners: list[C.Corner]
    traces: dict[int, Trace]
    deltas: dict[int, Delta]
    table: pd.DataFrame  #: per (lap_index, corner): metrics, segment_time_s, delta_s, valid
    corner_source: str  #: "gps", "yaw_rate" or "lat_accel"
    segment_source: str  #: "track_file", "braking_points" or "none" (no corners)
    track_file: CornerFile | None = None  #: the corner file that named the corners (None: detection alone)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref_trace(self) -> Trace:
        return self.reference.trace()

    def valid_lap_indices(self) -> list[int]:
        laps = self.session.valid_laps()
        return [int(i) for i in laps.lap_index if int(i) in self.traces]

    def corner_names(self) -> list[str]:
        return [c.name for c in self.corners]

    def corner(self, name: str) -> C.Corner:
        for c in self.corners:
            if c.name == name:
                return c
        raise AnalysisError(f"session {self.session.id}: no corner {name!r}; corners are "
                            f"{', '.join(self.corner_names()) or '(none found)'}")

    def corner_summary(self) -> pd.DataFrame:
        """One row per corner: geometry, reference values and the spread over valid laps."""
        t = self.table[self.table.valid]
        rows = []
        for c in self.corners:
            ct = t[t.corner == c.name]
            ref = self.table[(self.table.lap_index == self.reference.lap_index)
                             & (self.table.session_id == self.reference.session.id) & (self.table.corner == c.name)]
            rows.append({
                "corner": c.name, "direction": c.direction, "start_m": c.start_m, "apex_m": c.apex_m,
                "end_m": c.end_m, "angle_deg": c.angle_deg, "seg_start_m": c.seg_start_m, "seg_end_m": c.seg_end_m,
                "ref_segment_time_s": float(ref.segment_time_s.iloc[0]) if len(ref) else np.nan,
                "best_segment_time_s": float(ct.segment_time_s.min()) if len(ct) else np.nan,
                "median_segment_time_s": float(ct.segment_time_s.median()) if len(ct) else np.nan,
                "ref_min_speed_kmh": float(ref.min_speed_kmh.iloc[0]) if len(ref) and "min_speed_kmh" in ref else np.nan,
                "ref_brake_point_m": float(ref.brake_point_m.iloc[0]) if len(ref) and ref.brake_point_m.notna().any() else np.nan,
            })
        return pd.DataFrame(rows)


def _xy(session: Session, trace: Trace, data: str | os.PathLike[str] | None) -> tuple[np.ndarray, np.ndarray] | None:
    if not has_gps(trace):
        return None
    g = lap_xy(session, trace, data=data)
    return g.x_m.to_numpy(), g.y_m.to_numpy()


def detect_corners(ref: Lap, data: str | os.PathLike[str] | None = None, step_m: float = DEFAULT_STEP_M,
                   corner_file: CornerFileSpec = None) -> tuple[list[C.Corner], str, CornerFile | None]:
    """Corners of the reference lap, their source (``"gps"``, ``"yaw_rate"``, ``"lat_accel"``)
    and the corner file that named them: the track's own (see :mod:`pitbox.tracks`), or
    ``corner_file`` (a path), or none when ``corner_file`` is False (detection alone)."""
    tr = ref.trace(step_m)
    xy = _xy(ref.session, tr, data)
    _, source = C.curvature(tr, xy)
    corners = C.find_corners(tr, xy)
    cf = C.load_track_file(ref.session.track, ref.session.track_config, corner_file)
    if cf is not None:
        corners = C.name_corners(corners, C.file_corners(cf, tr.length_m), tr.length_m)
    return corners, source, cf


PHASES = ("braking", "entry", "apex", "exit")


def _with_phases(table: pd.DataFrame, traces: dict[int, Trace], corners: list[C.Corner], ref: Trace) -> pd.DataFrame:
    """Add each lap's time in the braking, entry, apex and exit phases of every corner (fixed
    distances from the reference lap) and their difference to the reference's."""
    bounds = {c.name: C.phase_bounds(ref, c) for c in corners}
    ref_t = {name: C.phase_times(ref, b) for name, b in bounds.items()}
    rows = [{"lap_index": i, "corner": name, **C.phase_times(tr, b)} for i, tr in traces.items()
            for name, b in bounds.items()]
    ph = pd.DataFrame(rows)
    for p in PHASES:
        ph[f"{p}_delta_s"] = ph[f"{p}_s"] - ph.corner.map(lambda n, p=p: ref_t[n][f"{p}_s"])
    return table.merge(ph, on=["lap_index", "corner"], how="left")


def analyse(session: Session | str | os.PathLike[str], reference: object = None,
            data: str | os.PathLike[str] | None = None, step_m: float = DEFAULT_STEP_M,
            laps: list[int] | None = None, corner_file: CornerFileSpec = None) -> SessionAnalysis:
    """Analyse every complete lap of a session (or ``laps``) against a reference lap
    (default: the session's fastest valid lap; see :meth:`Session.reference`).
    ``corner_file``: a corners YAML to use instead of the track's own (:mod:`pitbox.tracks`),
    or False for corners found from the telemetry alone."""
    s = load_session(session, data)
    s.source.preload(["SessionTime", "Lap", "LapDistPct", "OnPitRoad", "PlayerTrackSurface", *TRACE_CHANNELS])
    ref = s.reference(reference)
    corners, source, cf = detect_corners(ref, data, step_m, corner_file)
    complete = s.source.laps[s.source.laps.complete]
    wanted = [int(i) for i in complete.lap_index] if laps is None else [int(i) for i in laps]
    traces = {i: s.trace(i, step_m) for i in wanted}
    ref_tr = ref.trace(step_m)
    valid = set(int(i) for i in s.valid_laps().lap_index)
    corners, seg_source = C.assign_segments(corners, cf, ref_tr, [t for i, t in traces.items() if i in valid])
    deltas = {i: compute_delta(t, ref_tr) for i, t in traces.items()}
    table = C.corner_table(list(traces.values()), corners, ref_tr) if corners else pd.DataFrame()
    if len(table):
        table = _with_phases(table, traces, corners, ref_tr)
        info = s.source.laps.set_index("lap_index")
        table.insert(0, "session_id", s.id)
        table["lap"] = table.lap_index.map(info.lap)
        table["valid"] = table.lap_index.map(info.valid).astype(bool) & table.segment_clean.astype(bool)
    return SessionAnalysis(s, ref, corners, traces, deltas, table, source, seg_source, cf)
