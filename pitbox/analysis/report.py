"""One self-contained HTML report per session (plotly's JavaScript inlined once), a file a
coach can mail: session and conditions, lap table with sectors and fuel, the tips per lap and
their follow-up, theoretical best with its continuity check, corners, consistency, what
explains each corner's spread, figures (delta, overlays, track maps, losses)."""

from __future__ import annotations

import html
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from pitbox.analysis import best as B
from pitbox.analysis import context as X
from pitbox.analysis import figures as F
from pitbox.analysis.coaching import CoachResult, coach, cost_text
from pitbox.analysis.explain import explain_messages
from pitbox.analysis.laps_analysis import SessionAnalysis, analyse
from pitbox.analysis.session import Session, load_session
from pitbox.analysis.trackmap import lap_xy
from pitbox.errors import MissingChannel, writing

log = logging.getLogger(__name__)

CSS = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;max-width:1400px;color:#222}
h1{margin-bottom:0} h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table.pb{border-collapse:collapse;font-size:13px;margin:8px 0}
table.pb td,table.pb th{border:1px solid #ddd;padding:3px 8px;text-align:right}
table.pb th{background:#f3f3f3} .muted{color:#777} .tip{font-size:15px;margin:4px 0}
"""


def _table(df: pd.DataFrame, decimals: int = 3) -> str:
    if df is None or df.empty:
        return "<p class='muted'>(none)</p>"
    return df.to_html(index=False, classes="pb", border=0, na_rep="",
                      float_format=lambda v: f"{v:.{decimals}f}", escape=True)


def lap_overview(a: SessionAnalysis, result: CoachResult) -> pd.DataFrame:
    """Lap table with delta to the reference, sectors, fuel used and tip count."""
    s = a.session
    laps = s.source.laps[["lap_index", "lap", "time_s", "iracing_time_s", "valid", "reason"]].copy()
    laps["delta_s"] = laps.time_s - (a.reference.time_s or np.nan)
    sec = X.sector_times(s).drop(columns=["lap", "valid", "sum_s"], errors="ignore")
    fuel = X.fuel_per_lap(s)[["lap_index", "fuel_used_l"]]
    out = laps.merge(sec, on="lap_index", how="left").merge(fuel, on="lap_index", how="left")
    counts = result.tips.groupby("lap_index").size()
    out["tips"] = out.lap_index.map(counts).fillna(0).astype(int)
    return out


def _fig_html(fig: go.Figure, first: bool) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=True if first else False,
                       config={"displaylogo": False, "responsive": True})


def _accuracy(a: SessionAnalysis) -> dict[str, Any]:
    ds = [d for d in a.deltas.values() if d.closure_s is not None]
    ir = [abs(d.closure_iracing_s) for d in ds if d.closure_iracing_s is not None]
    return {"laps compared": len(ds),
            "max closure vs our lap times [ms]": max((abs(d.closure_s) for d in ds), default=np.nan) * 1e3,
            "max closure vs iRacing LapLastLapTime [ms]": (max(ir) * 1e3) if ir else np.nan,
            "max alignment error estimate [ms]": max((d.alignment_error_s for d in ds), default=np.nan) * 1e3}


def figures(a: SessionAnalysis, result: CoachResult, data: str | os.PathLike[str] | None = None) -> list[go.Figure]:
    """The report's figures, in order."""
    figs: list[go.Figure] = []
    ref = a.reference
    labels = {i: f"lap {int(a.session.source.laps.set_index('lap_index').lap[i])} [{i}]" for i in a.traces}
    deltas = {labels[i]: d for i, d in a.deltas.items() if i != ref.lap_index or ref.session is not a.session}
    if deltas:
        figs.append(F.delta_figure(deltas, a.corners, f"Delta to reference {ref.label} ({ref.time_s:.3f} s)"))
    worst = None
    if not result.tips.empty:
        worst = int(result.tips.groupby("lap_index").time_loss_s.sum().idxmax())
    show = [i for i in dict.fromkeys([worst, *a.valid_lap_indices()[:1]]) if i is not None and i in a.traces]
    show = [i for i in show if not (i == ref.lap_index and ref.session is a.session)][:2]
    traces = [a.traces[i] for i in show] + [a.ref_trace]
    figs.append(F.overlay_figure(traces, [labels[i] for i in show] + [f"reference {ref.label}"],
                                 deltas=[a.deltas[i] for i in show] + [None], corners=a.corners,
                                 title="Inputs by distance"))
    try:
        xy = lap_xy(ref.session, a.ref_trace, data=data)
    except MissingChannel as exc:
        log.warning("report of session %s: no track map: %s", a.session.id, exc)
        xy = None
    if xy is not None:
        figs.append(F.track_map_figure(xy, a.ref_trace.channels.get("Speed", np.zeros(len(xy))) * 3.6,
                                       "Speed [km/h]", a.corners, f"Reference lap speed ({xy.attrs['source']})"))
    if worst is not None and xy is not None:
        d = a.deltas[worst]
        local = np.gradient(d.delta_s)  # where time is lost, per metre
        figs.append(F.track_map_figure(xy, local * 1000, "Δ per metre [ms/m]", a.corners,
                                       f"Where {labels[worst]} loses time against the reference", diverging=True))
    if not result.corners.empty:
        figs.append(F.corner_loss_figure(result.corners[result.corners.valid]))
    return figs


def _header(a: SessionAnalysis) -> str:
    s = a.session
    return (f"<h1>{html.escape(s.track)} · {html.escape(s.car)} · {html.escape(s.driver)}</h1>"
            f"<p class='muted'>session {html.escape(s.id)} · {html.escape(str(s.meta.get('session_type', '')))} · "
            f"{html.escape(str(s.meta.get('start', '')))} · track {a.ref_trace.length_m:.1f} m · "
            f"reference {html.escape(a.reference.label)} ({a.reference.time_s:.3f} s) · "
            f"{'simulated' if s.simulated else 'recorded'} data</p>")


def _tips_section(a: SessionAnalysis, r: CoachResult) -> str:
    parts = ["<h2>Top tips</h2>"]
    top = r.top(5)
    if top.empty:
        parts.append("<p>No tips: every lap was within the driver's own spread at every corner.</p>")
    for _, t in top.iterrows():
        parts.append(f"<p class='tip'><b>Lap {t.lap} [{t.lap_index}], {html.escape(t.corner)}</b>: "
                     f"{html.escape(t.change)} <span class='muted'>({t.fault}, {cost_text(t)})</span></p>")
    parts.append("<h2>Laps</h2>" + _table(lap_overview(a, r)))
    parts.append("<h2>Tips per lap</h2>" + _table(r.tips.drop(columns=["z"], errors="ignore")))
    parts.append("<h2>Did the tips work? (next laps)</h2>" + _table(r.follow_up))
    return "".join(parts)


def _best_section(a: SessionAnalysis) -> str:
    tb = B.theoretical_best(a)
    bs = X.best_sectors(a.session)
    parts = ["<h2>Theoretical best</h2>"]
    if tb["time_s"] is not None:
        jump = tb["continuity"].jump_kmh.max() if len(tb["continuity"]) else 0.0
        parts.append(f"<p>Best corner segments add up to <b>{tb['time_s']:.3f} s</b> "
                     f"(best lap {a.session.fastest_lap().time_s:.3f} s); the stitched lap is "
                     f"{'continuous' if tb['continuous'] else '<b>not continuous</b>'} "
                     f"(largest speed jump at a seam {jump:.1f} km/h).</p>")
    parts.append(_table(tb["segments"]) + _table(tb["continuity"], 1))
    opt = bs.attrs.get("optimal_lap_s")
    parts.append(f"<p>Sectors (SplitTimeInfo): optimal lap {opt:.3f} s</p>" if opt else "")
    return "".join(parts) + _table(bs)


def _corners_section(a: SessionAnalysis, r: CoachResult) -> str:
    parts = ["<h2>Corners</h2>" + _table(a.corner_summary(), 3), "<h2>Consistency</h2>" + _table(B.consistency(a)),
             "<h2>What explains each corner's time spread</h2>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in explain_messages(r.explain)]
    parts += [f"<p><b>{html.escape(e['corner'])}</b></p>" + _table(pd.DataFrame(e["importance"]), 4)
              for e in r.explain if e.get("fitted")]
    return "".join(parts)


def _context_section(a: SessionAnalysis) -> str:
    s = a.session
    parts = ["<h2>Conditions and setup</h2>", _table(pd.DataFrame([X.conditions(s)]), 2)]
    setup = X.car_setup(s)
    if setup:
        parts.append(_table(pd.DataFrame(list(setup.items()), columns=["item", "value"])))
    parts.append("<h2>Accuracy of the deltas</h2>" + _table(pd.DataFrame([_accuracy(a)]), 3))
    parts.append("<p class='muted'>Closure: delta at the line minus the lap-time difference. Alignment error: "
                 "largest gap between linear and monotone-cubic interpolation of time over distance (both laps). "
                 "See docs/analysis.md.</p>")
    return "".join(parts)


def build_report(session: Session | str, reference: object = None, out: str | os.PathLike[str] = "report.html",
                 data: str | os.PathLike[str] | None = None, analysis: SessionAnalysis | None = None,
                 result: CoachResult | None = None) -> Path:
    """Write the session's HTML report to ``out`` and return its path."""
    out = Path(out)
    with writing(out):  # a folder that cannot be made fails before the analysis, not after
        out.parent.mkdir(parents=True, exist_ok=True)
    s = load_session(session, data)
    a = analysis or analyse(s, reference, data)
    r = result or coach(a)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>PitBox report {html.escape(s.id)}</title>"
             f"<style>{CSS}</style></head><body>", _header(a), _tips_section(a, r), _best_section(a),
             _corners_section(a, r), _context_section(a), "<h2>Figures</h2>"]
    parts += [_fig_html(fig, i == 0) for i, fig in enumerate(figures(a, r, data))]
    parts.append(f"<p class='muted'>PitBox · {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p></body></html>")
    with writing(out):
        out.write_text("".join(parts), encoding="utf-8")
    return out
