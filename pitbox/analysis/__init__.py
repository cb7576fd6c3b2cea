"""Lap analysis and coaching.

>>> import pitbox.analysis as pa
>>> s = pa.load_session("20150528-185046", data="data")
>>> s.laps.pitbox.pick_fastest()                     # fastest valid lap (a lap-table row)
>>> s.lap(2).delta_to(s.reference()).summary()        # delta with closure and alignment error
>>> a = pa.analyse(s)                                 # corners and per-corner metrics of every lap
>>> r = pa.coach(a); r.tips                           # at most two tips per lap, by time cost
>>> pa.build_report(s, out="report.html")             # one self-contained HTML file

See docs/analysis.md.
"""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path

import lazy_loader as _lazy

# Names load on first use (lazy_loader), so that the command line builds its parser without
# pandas, scipy or plotly (plotly comes in only when a figure or a report is made); the first
# one used also registers the ``DataFrame.pitbox`` accessor.
_getattr, _dir, _names = _lazy.attach(__name__, submodules=["figures", "report"], submod_attrs={
    "align": ["Delta", "Trace", "compute_delta"],
    "best": ["consistency", "progress", "theoretical_best"],
    "coaching": ["CoachResult", "coach", "follow_up_sessions"],
    "compare": ["compare_laps"],
    "context": ["best_sectors", "car_setup", "conditions", "fuel_per_lap", "sector_times", "setup_diff"],
    "corners": ["Corner", "corner_table", "find_corners"],
    "errors": ["AnalysisError", "BadReference", "NoValidLap", "ReferenceLapNotFound", "TrackMismatch"],
    "explain": ["explain_corners"],
    "export": ["MOTEC_CHANNELS", "export_csv", "export_motec"],
    "laps_analysis": ["SessionAnalysis", "analyse"],
    "report": ["build_report"],
    "session": ["Lap", "Session", "load_session", "resolve_lap"],
    "trackmap": ["TrackModel", "find_track_model", "lap_xy", "learn_track_model"],
})


def __getattr__(name: str) -> object:
    import_module("pitbox.analysis.accessor")  # registers DataFrame.pitbox
    return _getattr(name)


def __dir__() -> list[str]:
    return list(__all__)


def demo_summary(data: str | os.PathLike[str] | None = None, session_id: str | None = None,
                 report: str | os.PathLike[str] | None = None, n_tips: int = 5) -> str:
    """Text for ``make demo``: the session's top tips and the path of its HTML report.

    ``session_id`` defaults to the newest session with a valid lap; the report goes to
    ``report`` (default ``<data>/_reports/<session id>.html``, ignored by the store).
    """
    from pitbox.analysis.best import theoretical_best
    from pitbox.analysis.coaching import coach, cost_text
    from pitbox.analysis.errors import NoValidLap
    from pitbox.analysis.laps_analysis import analyse
    from pitbox.analysis.session import load_session
    from pitbox.config import data_dir
    from pitbox.store import Store

    root = data_dir(data)
    if session_id is None:
        cat = Store(root).sessions()
        cat = cat[cat.valid_laps.fillna(0) > 0]
        if cat.empty:
            raise NoValidLap(f"{root}: no session with a valid lap to coach")
        session_id = str(cat.sort_values("start").id.iloc[-1])
    s = load_session(session_id, root)
    a = analyse(s, data=root)
    r = coach(a)
    out = Path(report) if report is not None else root / "_reports" / f"{s.id}.html"
    from pitbox.analysis.report import build_report

    build_report(s, out=out, data=root, analysis=a, result=r)
    lines = [f"Coaching {s.id}: {s.track} / {s.car} / {s.driver}, reference {a.reference.label} "
             f"({a.reference.time_s:.3f} s), {len(a.corners)} corners"]
    top = r.top(n_tips)
    if top.empty:
        lines.append("  no tips: every lap was within the driver's own spread")
    for _, t in top.iterrows():
        lines.append(f"  lap {t.lap} [{t.lap_index}] {t.corner}: {t.change}  ({t.fault}, costs {cost_text(t)})")
    tb = theoretical_best(a)
    if tb["time_s"] is not None:
        lines.append(f"  theoretical best {tb['time_s']:.3f} s ({'continuous' if tb['continuous'] else 'not continuous'})")
    lines.append(f"HTML report: {out.resolve()}")
    return "\n".join(lines)


__all__ = sorted({*_names, "demo_summary"} - {"figures", "report"})
