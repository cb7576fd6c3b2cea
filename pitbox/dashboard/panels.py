"""HTML of the dashboard's slow panels (they change at most once a second), from a
:class:`~pitbox.dashboard.state.DriverState`: title, per-corner delta, fuel, tyres, the lap
table with its tips. Pure functions returning strings; every element the browser tests
read carries a ``data-pitbox`` attribute."""

from __future__ import annotations

import html
import math
from typing import Any

from pitbox.analysis.coaching import cost_text
from pitbox.dashboard.state import DriverState

CSS = """<style>
.pitbox-panel{font:12px sans-serif;color:#222}
.pitbox-panel h4{margin:2px 0 4px;font-size:12px;text-transform:uppercase;color:#666}
.pitbox-panel table{border-collapse:collapse}
.pitbox-panel td,.pitbox-panel th{padding:1px 6px;text-align:right;font-variant-numeric:tabular-nums}
.pitbox-panel th{color:#666;font-weight:500;border-bottom:1px solid #ddd}
.pitbox-panel td.l,.pitbox-panel th.l{text-align:left}
.pitbox-panel .gain{color:#248a3d}.pitbox-panel .loss{color:#d70015}.pitbox-panel .muted{color:#888}
.pitbox-panel .tip{margin:1px 0}
</style>"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def fmt_lap(s: Any) -> str:
    if not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
        return "–"
    m, r = divmod(float(s), 60.0)
    return f"{int(m)}:{r:06.3f}" if m else f"{r:.3f}"


def fmt_delta(s: Any) -> str:
    if not isinstance(s, (int, float)) or not math.isfinite(s):
        return "–"
    return f"{s:+.3f}"


def _cls(delta: Any) -> str:
    if not isinstance(delta, (int, float)) or not math.isfinite(delta):
        return "muted"
    return "loss" if delta > 0.005 else "gain" if delta < -0.005 else ""


def _num(v: Any, fmt: str, unit: str = "") -> str:
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "–"
    return f"{v:{fmt}}{unit}"


def title_html(st: DriverState) -> str:
    t = st.title()
    parts = [f'<b data-pitbox="driver">{esc(t["driver"] or "driver ?")}</b>',
             f'<span data-pitbox="car">{esc(t["car"] or "car ?")}</span>',
             f'<span data-pitbox="track">{esc(t["track"] or "track ?")}</span>']
    if t["session"]:
        parts.append(f'<span data-pitbox="session">{esc(t["session"])}</span>')
    return f'<div class="pitbox-panel" style="font-size:15px">{" · ".join(parts)}</div>'


def corners_html(st: DriverState) -> str:
    coach = st.coach or {}
    rows = coach.get("corner_deltas") or []
    ref = coach.get("reference") or {}
    head = (f'<h4>corners, lap {esc(coach.get("lap", "–"))} so far vs {esc(ref.get("label", "reference"))}</h4>')
    if not rows:
        return f'<div class="pitbox-panel" data-pitbox="corners">{head}<span class="muted">none yet</span></div>'
    body = "".join(
        f'<tr data-corner="{esc(r.get("corner"))}"><td class="l">{esc(r.get("corner"))}</td>'
        f'<td class="{_cls(r.get("delta_s"))}">{fmt_delta(r.get("delta_s"))}</td></tr>' for r in rows)
    return (f'<div class="pitbox-panel" data-pitbox="corners">{head}<table><tr><th class="l">corner</th>'
            f'<th>delta s</th></tr>{body}</table></div>')


def fuel_html(st: DriverState) -> str:
    fuel = (st.coach or {}).get("fuel") or {}
    level = fuel.get("level_l")
    if not isinstance(level, (int, float)):
        level = st.latest.get("FuelLevel")
    left = fuel.get("laps_left")
    lo, hi = fuel.get("laps_left_min"), fuel.get("laps_left_max")
    rng = f" ({_num(lo, '.1f')}–{_num(hi, '.1f')})" if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else ""
    add = fuel.get("to_add_l")
    add_txt = (f'{_num(add.get("l"), ".1f", " l")} to finish {esc(add.get("laps"))} laps'
               if isinstance(add, dict) else "–")
    return (
        '<div class="pitbox-panel" data-pitbox="fuel"><h4>fuel</h4><table>'
        f'<tr><td class="l">level</td><td>{_num(level, ".2f", " l")}</td></tr>'
        f'<tr><td class="l">per lap (last 3)</td><td>{_num(fuel.get("per_lap_mean3_l"), ".2f", " l")}</td></tr>'
        f'<tr><td class="l">per lap (65th pct)</td><td>{_num(fuel.get("per_lap_p65_l"), ".2f", " l")}</td></tr>'
        f'<tr><td class="l">laps left</td><td data-pitbox="laps-left">{_num(left, ".1f")}{rng}</td></tr>'
        f'<tr><td class="l">to add</td><td>{add_txt}</td></tr></table></div>')


def _age(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def tyres_html(st: DriverState, now_ms: float | None = None) -> str:
    tyres = (st.coach or {}).get("tyres") or {}
    snap = tyres.get("snapshot")
    if not snap:
        return ('<div class="pitbox-panel" data-pitbox="tyres"><h4>tyres</h4><span class="muted">no pit-stall '
                'snapshot yet (iRacing updates tyre temperatures and pressures only in the pit stall)</span></div>')
    age = tyres.get("age_s")
    if isinstance(age, (int, float)) and st.coach_at_ms is not None and now_ms is not None:
        age = age + max(0.0, (now_ms - st.coach_at_ms) / 1000.0)
    rows = "".join(f'<tr><td class="l">{esc(k)}</td><td>{_num(v, ".1f") if isinstance(v, (int, float)) else esc(v)}'
                   f'</td></tr>' for k, v in sorted(snap.items()))
    lap = tyres.get("lap")
    return (f'<div class="pitbox-panel" data-pitbox="tyres"><h4>tyres: pit-stall snapshot, {_age(age)} old'
            f'{f" (lap {esc(lap)})" if lap is not None else ""}, not live</h4><table>{rows}</table></div>')


def tip_html(t: dict[str, Any]) -> str:
    return (f'<div class="tip" data-pitbox="tip" data-corner="{esc(t.get("corner"))}" data-fault="{esc(t.get("fault"))}">'
            f'<b>{esc(t.get("corner"))}</b> <code>{esc(t.get("fault"))}</code>: {esc(t.get("change"))} '
            f'<span class="loss">({esc(cost_text(t))})</span></div>')


def laps_html(st: DriverState, max_rows: int = 30) -> str:
    """The lap table, newest first, each lap with the tips the coach sent for it."""
    ref_time = st.reference.time_s if st.reference is not None else None
    tips_by_lap = st.tips
    keys = sorted(set(st.laps) | set(tips_by_lap), reverse=True)[:max_rows]
    rows = []
    for key in keys:
        r = st.laps.get(key, {})
        lap = r.get("lap", key)
        t = r.get("time_s")
        valid = r.get("valid")
        state = "valid" if valid else (r.get("reason") or ("incomplete" if r and not r.get("complete") else "–"))
        delta = t - ref_time if isinstance(t, (int, float)) and isinstance(ref_time, (int, float)) and valid else None
        tips = "".join(tip_html(tp) for tp in tips_by_lap.get(key, []))
        if not tips and r.get("complete") and valid:
            tips = '<span class="muted">no tip</span>'
        rows.append(f'<tr data-pitbox="lap-row" data-lap="{esc(lap)}"><td>{esc(lap)}</td><td>{fmt_lap(t)}</td>'
                    f'<td class="{_cls(delta)}">{fmt_delta(delta)}</td><td class="l">{esc(state)}</td>'
                    f'<td class="l">{tips}</td></tr>')
    voice = "".join(f'<div class="muted">spoken: {esc(v.get("text"))}</div>' for v in st.voice[-3:])
    if not rows:
        return f'<div class="pitbox-panel" data-pitbox="laps"><h4>laps</h4><span class="muted">no lap yet</span>{voice}</div>'
    return ('<div class="pitbox-panel" data-pitbox="laps"><h4>laps and tips</h4><table><tr><th>lap</th><th>time</th>'
            f'<th>vs ref</th><th class="l">state</th><th class="l">tips</th></tr>{"".join(rows)}</table>{voice}</div>')


def team_column_html(st: DriverState, name: str, color: str, laps: int = 3) -> str:
    """One driver's column in the team view: lap times, fuel, the tips of the last laps."""
    t = st.title()
    fuel = (st.coach or {}).get("fuel") or {}
    level = fuel.get("level_l") if isinstance(fuel.get("level_l"), (int, float)) else st.latest.get("FuelLevel")
    tips = []
    for key in sorted(st.tips, reverse=True)[:laps]:
        tips.extend(st.tips[key])
    tip_txt = "".join(tip_html(tp) for tp in tips) or '<span class="muted">no tips</span>'
    return (f'<div class="pitbox-panel" data-pitbox="team-column" data-driver="{esc(st.driver)}">'
            f'<h4 style="color:{color}">{esc(name)}</h4><div class="muted">{esc(t["car"])}</div>'
            f'<div>fuel {_num(level, ".1f", " l")}, {_num(fuel.get("laps_left"), ".1f")} laps left</div>'
            f'<div>{tip_txt}</div></div>')
