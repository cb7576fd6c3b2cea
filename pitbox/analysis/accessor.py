"""The ``.pitbox`` DataFrame accessor: FastF1-like picking on plain lap tables and
distance resampling on telemetry frames, without subclassing DataFrame.

Lap tables (``Session.laps``)::

    laps.pitbox.pick_valid()          # complete laps with no pit, off-track, incident or reset
    laps.pitbox.pick_fastest()        # the fastest valid lap (a row; pass it to Session.lap)
    laps.pitbox.pick_quicklaps(1.07)  # valid laps within 107 % of the fastest

Telemetry (``Lap.telemetry()``, measured samples with ``time_s`` and ``distance_m``)::

    tel.pitbox.on_distance(step_m=1.0)   # resampled once onto the distance grid
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pitbox.analysis.align import distance_grid, resample
from pitbox.analysis.errors import AnalysisError, NoValidLap


@pd.api.extensions.register_dataframe_accessor("pitbox")
class PitboxAccessor:
    """``df.pitbox``: helpers for PitBox lap tables and telemetry frames."""

    def __init__(self, df: pd.DataFrame):
        self._df = df

    def _need(self, *cols: str) -> None:
        missing = [c for c in cols if c not in self._df.columns]
        if missing:
            raise AnalysisError(f"DataFrame has no column {missing[0]!r}: expected a PitBox "
                                f"{'lap table' if 'lap_index' in cols else 'telemetry frame'}")

    # -- lap tables ----------------------------------------------------------------------
    def pick_complete(self) -> pd.DataFrame:
        """Laps that start and end at the line."""
        self._need("lap_index", "complete")
        return self._df[self._df.complete.astype(bool)]

    def pick_valid(self) -> pd.DataFrame:
        """Complete laps that are valid (no pit, off track, incident or reset)."""
        self._need("lap_index", "valid", "complete", "time_s")
        df = self._df
        return df[df.valid.astype(bool) & df.complete.astype(bool) & df.time_s.notna()]

    def pick_fastest(self, valid_only: bool = True) -> pd.Series:
        """The fastest lap as a lap-table row (valid laps only unless ``valid_only=False``)."""
        laps = self.pick_valid() if valid_only else self.pick_complete()
        if laps.empty:
            raise NoValidLap(f"session {self._df.attrs.get('pitbox_session', '?')}: no "
                             f"{'valid ' if valid_only else ''}complete lap")
        return laps.loc[laps.time_s.idxmin()]

    def pick_lap(self, lap_index: int) -> pd.Series:
        self._need("lap_index")
        hit = self._df[self._df.lap_index == lap_index]
        if hit.empty:
            from pitbox.analysis.errors import ReferenceLapNotFound

            raise ReferenceLapNotFound(f"no lap_index {lap_index} in this lap table")
        return hit.iloc[0]

    def pick_quicklaps(self, threshold: float = 1.07) -> pd.DataFrame:
        """Valid laps no slower than ``threshold`` x the fastest valid lap."""
        laps = self.pick_valid()
        if laps.empty:
            return laps
        return laps[laps.time_s <= threshold * laps.time_s.min()]

    # -- telemetry -----------------------------------------------------------------------
    def on_distance(self, step_m: float = 1.0) -> pd.DataFrame:
        """Measured samples resampled once onto the distance grid (``distance_m`` every
        ``step_m`` metres plus the finish line): time and float channels linearly, others
        from the last sample at or before each point."""
        self._need("time_s", "distance_m")
        df = self._df
        d = df.distance_m.to_numpy(np.float64)
        length = float(df.attrs.get("track_length_m") or np.nanmax(d))
        lap_time = df.attrs.get("lap_time_s")
        if lap_time is not None and d[0] <= 0 <= length <= d[-1]:
            grid = distance_grid(length, step_m)
        else:
            grid = distance_grid(length, step_m, d[0], d[-1])
        kinds = df.attrs.get("kinds", {})
        out = {"distance_m": grid}
        for c in df.columns:
            if c == "distance_m":
                continue
            kind = kinds.get(c) or ("linear" if np.issubdtype(df[c].dtype, np.floating) else "step")
            out[c] = resample(d, df[c].to_numpy(), grid, kind)
        res = pd.DataFrame(out)
        res.attrs.update({**df.attrs, "interpolated": True})
        return res

    def delta_to(self, ref: pd.DataFrame) -> pd.Series:
        """Delta time [s] of this distance frame against ``ref`` at this frame's grid points."""
        self._need("time_s", "distance_m")
        if "time_s" not in ref.columns or "distance_m" not in ref.columns:
            raise AnalysisError("reference frame needs time_s and distance_m columns")
        t_ref = np.interp(self._df.distance_m, ref.distance_m, ref.time_s, left=np.nan, right=np.nan)
        return pd.Series(self._df.time_s.to_numpy() - t_ref, index=self._df.index, name="delta_s")
