"""The after-lap analysis of the live coach: the same analysis and coaching engine as
``pitbox coach``, on the live session as recorded so far.

:class:`Analyst` keeps the rows the core hands it (:class:`~pitbox.livecoach.jobs.Rows`) and
answers the core's jobs. It builds a :class:`pitbox.analysis.Session` over those rows
(:class:`LiveSource`, a :class:`~pitbox.analysis.source.Source` like the store's and the
``.ibt`` reader's: the same lap table, the same channel reduction), so that:

* a lap's **lap-table row** is :func:`pitbox.laps.lap_table`'s;
* the **tips** of lap N are those of ``coach(analyse(session))`` -- what ``pitbox coach``
  prints -- on the session **cut after the row at which the core asked** (``Coach.cut_row``,
  the first tick after the lap's last corner segment ended on the next lap; reported as
  ``cut_tick``), with the same reference;
* references are the analysis' own traces (:meth:`pitbox.analysis.Lap.trace`, 1 m grid), so
  the live delta is ``pitbox compare``'s.

It takes hundreds of milliseconds per lap: run it in its own process
(:mod:`pitbox.livecoach.worker`), never on the recorder's threads.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pitbox.analysis.source import Source
from pitbox.laps import lap_table
from pitbox.livecoach import jobs as J
from pitbox.livecoach.reference import ReferenceLap

log = logging.getLogger(__name__)

LAP_CHANNELS = ("SessionTime", "SessionTick", "SessionNum", "Lap", "LapDistPct", "LapLastLapTime",
                "OnPitRoad", "PlayerTrackSurface", "PlayerCarMyIncidentCount", "Speed")
TIP_FIELDS = ("lap", "lap_index", "corner", "fault", "change", "time_loss_s")
TIP_EXTRAS = ("time_loss_sd_s", "deviation", "deviation_gap", "unit", "z", "segment_loss_s", "repeat")


class LiveSource(Source):
    """The live session's rows so far (rows ``[0, n_rows)``), as the analysis reads sessions."""

    def __init__(self, sid: str, meta: dict[str, Any], info: dict[str, Any], columns: dict[str, np.ndarray],
                 tick_rate: float):
        super().__init__()
        self.id = sid
        self.path = Path(f"<live session {sid}>")
        self.meta = {**meta, "id": sid, "tick_rate": tick_rate}
        self.info = info
        self._columns = columns
        self.n_rows = len(next(iter(columns.values()))) if columns else 0
        self.units = {n: _unit(n) for n in columns}
        self.kinds = {n: "linear" if v.dtype.kind == "f" else "step" for n, v in columns.items()}
        self.laps = lap_table({n: columns[n] for n in LAP_CHANNELS if n in columns}, tick_rate) \
            if {"SessionTime", "Lap", "LapDistPct"} <= set(columns) else _empty_laps()

    def _read(self, names: list[str]) -> dict[str, np.ndarray]:
        return {n: self._columns[n] for n in names}


def _unit(name: str) -> str:
    try:
        from pitbox.catalogue import channel_info

        return channel_info(name).unit or ""
    except Exception:  # noqa: BLE001 - units are informative only
        return ""


def _empty_laps() -> pd.DataFrame:
    from pitbox.laps import LAP_COLUMNS

    return pd.DataFrame(columns=LAP_COLUMNS)


def _jsonable(row: Any) -> Any:
    from pitbox.analysis.compare import jsonable

    return jsonable(row)


class Analyst:
    """Answers the core's jobs (see the module docs). ``data``: the store, for references
    from other sessions (all-time best, ``SESSION:LAP``) and the track map."""

    def __init__(self, data: str | os.PathLike[str] | None = None):
        self.data = None if data is None else Path(data)
        self._new(0, None, None, 60.0)

    def _new(self, key: int, meta: dict[str, Any] | None, info: dict[str, Any] | None, tick_rate: float) -> None:
        self.key = key
        self.meta: dict[str, Any] = dict(meta or {})
        self.info: dict[str, Any] = dict(info or {})
        self.tick_rate = tick_rate
        self._chunks: list[np.ndarray] = []
        self.n_rows = 0
        self._cols: dict[str, np.ndarray] | None = None
        self._model: Any = False  # not looked for yet
        self._best: tuple[int, float] | None = None  # session best (lap_index, time)
        self._ref_label: str | None = None  # what the core was last sent
        self._optimal_key: tuple | None = None
        self._all_time: tuple[str, int, float] | None | bool = False
        self._ref_time: float | None = None

    # -- rows and sessions -----------------------------------------------------------------
    @property
    def session_id(self) -> str:
        return str(self.meta.get("id") or f"live-{self.key}")

    def columns(self, stop: int | None = None) -> dict[str, np.ndarray]:
        """Every kept channel over rows ``[0, stop)``."""
        if self._cols is None:
            if self._chunks:
                arr = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
                self._chunks = [arr]
                self._cols = {n: arr[n] for n in arr.dtype.names or ()}
            else:
                self._cols = {}
        return self._cols if stop is None else {n: v[:stop] for n, v in self._cols.items()}

    def session(self, stop: int | None = None) -> Any:
        """The live session cut before row ``stop`` as a :class:`pitbox.analysis.Session`."""
        from pitbox.analysis.session import Session

        src = LiveSource(self.session_id, self.session_meta(), self.info, self.columns(stop), self.tick_rate)
        return Session(src, self.data)

    def session_meta(self) -> dict[str, Any]:
        """Track, car, driver … from the YAML (as the store derives them), then what the
        recorder's ``session`` message said."""
        from pitbox.store import session_meta

        base: dict[str, Any] = {}
        if self.info:
            cols = self._cols or {}
            num = int(cols["SessionNum"][0]) if "SessionNum" in cols and len(cols["SessionNum"]) else 0
            try:
                base = session_meta(None, self.info, int(self.meta.get("session_num", num)))
            except Exception as exc:  # noqa: BLE001 - a YAML without the usual sections
                log.info("live coach: session metadata from the YAML: %s", exc)
        return {**base, **self.meta}

    # -- jobs ------------------------------------------------------------------------------
    def handle(self, job: Any) -> list[Any]:
        """Results for one job (an empty list for jobs that answer nothing)."""
        if isinstance(job, J.NewSession):
            self._new(job.session, job.meta, job.info, job.tick_rate)
            return []
        if job.session != self.key:
            return []
        if isinstance(job, J.SessionInfo):
            if job.meta is not None:
                self.meta.update(job.meta)
            if job.info is not None:
                self.info = dict(job.info)
            return []
        if isinstance(job, J.Rows):
            if job.first_row != self.n_rows:
                log.warning("live coach: rows %d.. arrived after %d rows; the after-lap analysis restarts",
                            job.first_row, self.n_rows)
                self._chunks, self.n_rows = [], 0
            if len(job.rows):
                self._chunks.append(job.rows)
                self.n_rows += len(job.rows)
                self._cols = None
            return []
        try:
            if isinstance(job, J.LapDone):
                return [self._lap_done(job)]
            if isinstance(job, J.Coach):
                return [self._coach(job)]
            if isinstance(job, J.SetReference):
                return [self._set_reference(job)]
        except Exception as exc:  # noqa: BLE001 - the live coach goes on; the error is reported
            log.exception("live coach: %s failed", type(job).__name__)
            if isinstance(job, J.SetReference):
                return [J.ReferenceResult(self.key, job.seq, job.kind, job.lap, None, f"{exc}")]
            if isinstance(job, J.Coach):
                return [J.CoachResult(self.key, job.crossing_row, job.cut_tick, None, None, error=str(exc))]
            return [J.LapResult(self.key, job.crossing_row, None, None)]
        raise TypeError(f"unknown live coach job {type(job).__name__}")

    def _lap_done(self, job: J.LapDone) -> J.LapResult:
        s = self.session(job.crossing_row + 1)
        laps = s.source.laps
        hit = laps[(laps.end_row == job.crossing_row) & laps.complete]
        row = _jsonable(hit.iloc[0].to_dict()) if len(hit) else None
        valid = laps[laps.valid & laps.complete & laps.time_s.notna()]
        best = None
        if len(valid):
            i = valid.time_s.idxmin()
            best = (int(valid.loc[i, "lap_index"]), float(valid.loc[i, "time_s"]))
        self._best = best
        ref = self._auto_reference(s, job.reference_kind, job.reference_lap)
        return J.LapResult(self.key, job.crossing_row, row, None if best is None else best[1], ref)

    def _auto_reference(self, s: Any, kind: str, spec: str | None) -> ReferenceLap | None:
        """A new reference when the chosen kind's lap changed with this lap."""
        if kind == "session_best":
            if self._best is None:
                return None
            label = f"{s.id}:{self._best[0]}"
            if label == self._ref_label:
                return None
            return self._from_lap(s.lap(self._best[0]), "session_best", s)
        if kind == "optimal":
            return self._optimal(s, only_if_changed=True)
        if kind == "all_time_best" and self._best is not None and self._ref_time is not None \
                and self._best[1] < self._ref_time - 1e-9:
            return self._from_lap(s.lap(self._best[0]), "all_time_best", s)
        return None

    def _coach(self, job: J.Coach) -> J.CoachResult:
        from pitbox.analysis.coaching import coach, coachable_laps
        from pitbox.analysis.errors import AnalysisError
        from pitbox.analysis.laps_analysis import analyse

        t0 = time.perf_counter()
        s = self.session(job.cut_row + 1)
        laps = s.source.laps
        hit = laps[(laps.end_row == job.crossing_row) & laps.complete]
        out = J.CoachResult(self.key, job.crossing_row, job.cut_tick, None, None)
        if hit.empty:
            return out
        lap_index, lap = int(hit.iloc[0].lap_index), int(hit.iloc[0].lap)
        out.lap_index, out.lap = lap_index, lap
        ref_spec = self._coach_reference(s, job.reference_kind, job.reference_lap)
        try:
            a = analyse(s, reference=ref_spec, data=self.data)
        except AnalysisError as exc:  # no valid lap yet, or the reference is gone
            log.info("live coach: lap %d not coached: %s", lap, exc)
            out.elapsed_s = time.perf_counter() - t0
            return out
        if lap_index in coachable_laps(a):
            r = coach(a, explain=False)
            tips = r.for_lap(lap_index)
            label = a.reference.label
            out.tips = [{**{k: _jsonable(t[k]) for k in TIP_FIELDS}, "rank": rank, "reference": label,
                         **{k: _jsonable(t[k]) for k in TIP_EXTRAS if k in t}, "session": s.id,
                         "cut_tick": job.cut_tick}
                        for rank, (_, t) in enumerate(tips.iterrows(), start=1)]
            out.reference_label = label
        if len(a.table):
            rows = a.table[a.table.lap_index == lap_index]
            out.corner_row = _jsonable(rows.drop(columns=["session_id"], errors="ignore"))
        if a.corners:
            length = a.ref_trace.length_m
            out.overrun_m = max(0.0, max(float(c.seg_end_m) - length for c in a.corners))
        out.elapsed_s = time.perf_counter() - t0
        return out

    def _coach_reference(self, s: Any, kind: str, spec: str | None) -> Any:
        """The reference lap the coaching engine uses (what ``pitbox coach --reference``
        would get): the session's best valid lap for ``session_best`` and ``optimal`` (an
        optimal lap is not a driven lap), the chosen lap otherwise."""
        if kind == "lap" and spec is not None:
            return self._resolve_spec(s, spec)
        if kind == "all_time_best":
            best = self._all_time_best()
            if best is not None and (self._best is None or best[2] < self._best[1]):
                return f"{best[0]}:{best[1]}"
        return None

    # -- references ------------------------------------------------------------------------
    def _set_reference(self, job: J.SetReference) -> J.ReferenceResult:
        s = self.session()
        self._ref_label = None
        ref: ReferenceLap | None
        if job.kind == "session_best":
            laps = s.valid_laps()
            ref = None if laps.empty else self._from_lap(s.fastest_lap(), "session_best", s)
            if ref is not None:
                self._best = (int(ref.lap_index or 0), ref.time_s)
        elif job.kind == "optimal":
            ref = self._optimal(s, only_if_changed=False)
        elif job.kind == "all_time_best":
            ref = self._all_time_reference(s)
        else:
            assert job.lap is not None
            spec = self._resolve_spec(s, job.lap)
            lap = s.reference(spec)
            ref = self._from_lap(lap, "lap", s)
        err = None if ref is not None or job.kind in ("session_best", "optimal") else "no such lap"
        return J.ReferenceResult(self.key, job.seq, job.kind, job.lap, ref, err)

    def _resolve_spec(self, s: Any, spec: str) -> Any:
        """``SESSION:LAP``; SESSION may be this live session's id, empty or ``live``."""
        sess, _, idx = spec.rpartition(":")
        if sess in ("", "live", s.id):
            return int(idx)
        return spec

    def _all_time_best(self) -> tuple[str, int, float] | None:
        """The fastest valid lap of this car, track and layout in the store: (session, lap_index, time)."""
        if self._all_time is not False:
            return self._all_time  # type: ignore[return-value]
        self._all_time = None
        if self.data is None:
            return None
        from pitbox.analysis.session import load_session
        from pitbox.store import Store

        try:
            cat = Store(self.data).sessions()
        except Exception as exc:  # noqa: BLE001 - no store: no stored reference
            log.info("live coach: no store at %s: %s", self.data, exc)
            return None
        meta = self.session_meta()
        track, car = meta.get("track"), meta.get("car")
        config = str(meta.get("track_config") or "")
        same = cat[(cat.track == track) & (cat.car == car) & (cat.id != self.session_id) & cat.best_lap_s.notna()]
        for sid in same.sort_values("best_lap_s").id:
            other = load_session(str(sid), self.data)
            if other.track_config != config:
                continue
            lap = other.fastest_lap()
            self._all_time = (other.id, lap.lap_index, float(lap.time_s or math.inf))
            break
        return self._all_time  # type: ignore[return-value]

    def _all_time_reference(self, s: Any) -> ReferenceLap | None:
        from pitbox.analysis.session import load_session

        stored = self._all_time_best()
        if self._best is None and not s.valid_laps().empty:
            lap = s.fastest_lap()
            self._best = (lap.lap_index, float(lap.time_s or math.inf))
        if stored is not None and (self._best is None or stored[2] <= self._best[1]):
            other = load_session(stored[0], self.data)
            return self._from_lap(other.lap(stored[1]), "all_time_best", s)
        if self._best is not None:
            return self._from_lap(s.lap(self._best[0]), "all_time_best", s)
        return None

    def _from_lap(self, lap: Any, kind: str, live: Any) -> ReferenceLap:
        """A reference from a driven lap: its analysis trace, corners and map."""
        from pitbox.analysis.corners import assign_segments
        from pitbox.analysis.laps_analysis import detect_corners

        tr = lap.trace()
        corners: list[dict[str, Any]] = []
        try:
            found, _, cf = detect_corners(lap, self.data)
            if found:
                found, _ = assign_segments(found, cf, tr, [tr])
                corners = [{"name": c.name, "start_m": c.start_m, "apex_m": c.apex_m, "end_m": c.end_m,
                            "seg_start_m": c.seg_start_m, "seg_end_m": c.seg_end_m, "direction": c.direction}
                           for c in found]
        except ValueError as exc:  # no channel to find corners on
            log.info("live coach: no corners for %s: %s", lap.label, exc)
        ref = ReferenceLap(kind, lap.label, lap.session.id, lap.lap_index, float(lap.time_s), float(tr.length_m),
                           np.asarray(tr.distance_m, np.float64), np.asarray(tr.time_s, np.float64),
                           {k: np.asarray(v) for k, v in tr.channels.items()
                            if k in ("Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear")},
                           corners, coach_reference=lap.label if kind != "optimal" else None)
        self._add_map(ref, lap, tr, live)
        self._ref_label = lap.label
        self._ref_time = ref.time_s
        return ref

    def _add_map(self, ref: ReferenceLap, lap: Any, tr: Any, live: Any) -> None:
        from pitbox.analysis.trackmap import dead_reckoning, find_track_model, has_gps, lap_xy

        try:
            if has_gps(tr):
                xy = lap_xy(lap.session, tr)
                ref.map_x_m, ref.map_y_m, ref.map_source = xy.x_m.to_numpy(), xy.y_m.to_numpy(), "gps"
                return
            if self._model is False:
                self._model = find_track_model(live, self.data) if self.data is not None else None
            if self._model is not None:
                x, y = self._model.xy(tr.distance_m / tr.length_m)
                ref.map_x_m, ref.map_y_m, ref.map_source = x, y, "model"
                return
            x, y = dead_reckoning(tr)
            ref.map_x_m, ref.map_y_m, ref.map_source = x, y, "dead_reckoning"
        except Exception as exc:  # noqa: BLE001 - a map is optional
            log.info("live coach: no map for %s: %s", lap.label, exc)

    def _optimal(self, s: Any, only_if_changed: bool) -> ReferenceLap | None:
        """The optimal lap from best sectors of this session (``SplitTimeInfo`` sectors; the
        whole lap when there are none): time at each distance is the best sectors' times
        before it plus the time into the sector of the lap that drove it best."""
        from pitbox.analysis.context import best_sectors

        bs = best_sectors(s)
        if bs.empty or bs.best_s.isna().any():
            return None
        key = tuple(int(i) for i in bs.lap_index)
        if only_if_changed and key == self._optimal_key:
            return None
        self._optimal_key = key
        length = s.track_length_m
        grid = s.trace(int(bs.lap_index.iloc[0])).distance_m
        starts = [float(p) * length for p in bs.start_pct] + [length]
        t = np.empty(len(grid))
        chans: dict[str, np.ndarray] = {}
        base = 0.0
        for k, (_, sec) in enumerate(bs.iterrows()):
            tr = s.trace(int(sec.lap_index))
            inside = (grid >= starts[k]) & ((grid < starts[k + 1]) if k + 1 < len(bs) else (grid <= length))
            t[inside] = base + tr.time_at(grid[inside]) - tr.time_at(starts[k])
            for name in ("Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear"):
                if name in tr.channels:
                    chans.setdefault(name, np.zeros(len(grid), dtype=np.float64))[inside] = \
                        np.interp(grid[inside], tr.distance_m, tr.channels[name].astype(np.float64))
            base += float(sec.best_s)
        laps = ", ".join(str(i) for i in dict.fromkeys(key))
        best = s.fastest_lap()
        corners_ref = self._from_lap(best, "session_best", s)
        ref = ReferenceLap("optimal", f"optimal (best sectors of laps {laps})", s.id, None, base, float(length),
                           np.asarray(grid, np.float64), t, chans, corners_ref.corners,
                           corners_ref.map_x_m, corners_ref.map_y_m, corners_ref.map_source,
                           coach_reference=best.label)
        self._ref_time = ref.time_s
        return ref


def warm_up() -> None:
    """Import what the first analysis needs (a second or two on a cold start), so the first
    lap's tips do not wait for it."""
    import scipy.interpolate  # noqa: F401
    import scipy.ndimage  # noqa: F401
    import scipy.signal  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import pitbox.analysis.coaching  # noqa: F401
    import pitbox.analysis.laps_analysis  # noqa: F401


def run_jobs(coach: Any, analyst: Analyst) -> int:
    """Hand a :class:`~pitbox.livecoach.LiveCoach`'s pending jobs to ``analyst`` in this
    thread and deliver the results; returns the number of jobs done."""
    n = 0
    while True:
        todo = coach.jobs()
        if not todo:
            return n
        for job in todo:
            for result in analyst.handle(job):
                coach.deliver(result)
            n += 1
