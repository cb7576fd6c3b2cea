"""Plotly figures: input overlays by distance, delta, track map, corner table.

Display units: speed km/h, pedals %, steering deg, distance m, time s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pitbox.analysis.align import Delta, Trace

if TYPE_CHECKING:
    from pitbox.analysis.corners import Corner

#: channel -> (label, factor from iRacing's unit)
DISPLAY = {
    "Speed": ("Speed [km/h]", 3.6),
    "Throttle": ("Throttle [%]", 100.0),
    "Brake": ("Brake [%]", 100.0),
    "SteeringWheelAngle": ("Steering [deg]", 180.0 / np.pi),
    "Gear": ("Gear", 1.0),
    "RPM": ("RPM", 1.0),
    "LatAccel": ("Lat accel [m/s²]", 1.0),
    "LongAccel": ("Long accel [m/s²]", 1.0),
}
OVERLAY_CHANNELS = ("Speed", "Throttle", "Brake", "SteeringWheelAngle", "Gear")
COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def _corner_marks(fig: go.Figure, corners: Sequence[Corner] | None, length_m: float) -> None:
    for c in corners or []:
        end = min(c.end_m, length_m)
        fig.add_vrect(x0=c.start_m, x1=end, fillcolor="grey", opacity=0.08, line_width=0, layer="below")
        fig.add_annotation(x=c.apex_m, y=1.0, yref="paper", text=c.name, showarrow=False, font={"size": 10})


def overlay_figure(traces: Sequence[Trace], labels: Sequence[str] | None = None,
                   channels: Sequence[str] = OVERLAY_CHANNELS, deltas: Sequence[Delta | None] | None = None,
                   corners: Sequence[Corner] | None = None, title: str = "") -> go.Figure:
    """Channels of several laps by distance, one panel each, with the delta on top when given."""
    labels = list(labels or [f"{t.session_id}:{t.lap_index}" for t in traces])
    chans = [c for c in channels if any(c in t.channels for t in traces)]
    with_delta = deltas is not None and any(d is not None for d in deltas)
    rows = len(chans) + int(with_delta)
    heights = ([0.22] if with_delta else []) + [0.78 / max(len(chans), 1)] * len(chans) if with_delta else None
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.02, row_heights=heights)
    r0 = 1
    if with_delta:
        for k, d in enumerate(deltas or []):
            if d is not None:
                fig.add_trace(go.Scatter(x=d.distance_m, y=d.delta_s, name=f"Δ {labels[k]}", mode="lines",
                                         line={"color": COLOURS[k % len(COLOURS)], "width": 1.2},
                                         legendgroup=labels[k], showlegend=False), row=1, col=1)
        fig.update_yaxes(title_text="Delta [s]", row=1, col=1)
        r0 = 2
    for i, ch in enumerate(chans):
        label, factor = DISPLAY.get(ch, (ch, 1.0))
        for k, tr in enumerate(traces):
            if ch not in tr.channels:
                continue
            fig.add_trace(go.Scatter(x=tr.distance_m, y=np.asarray(tr.channels[ch], float) * factor, mode="lines",
                                     name=labels[k], legendgroup=labels[k], showlegend=(i == 0),
                                     line={"color": COLOURS[k % len(COLOURS)], "width": 1.2,
                                           "shape": "hv" if ch == "Gear" else "linear"}),
                          row=r0 + i, col=1)
        fig.update_yaxes(title_text=label, row=r0 + i, col=1)
    fig.update_xaxes(title_text="Distance [m]", row=rows, col=1)
    if traces:
        _corner_marks(fig, corners, traces[0].length_m)
    fig.update_layout(title=title or "Lap comparison", height=170 * rows + 120, hovermode="x unified",
                      margin={"l": 60, "r": 20, "t": 60, "b": 40})
    return fig


def delta_figure(deltas: dict[str, Delta], corners: Sequence[Corner] | None = None, title: str = "") -> go.Figure:
    """Delta time [s] against the reference for several laps."""
    fig = go.Figure()
    for k, (label, d) in enumerate(deltas.items()):
        fig.add_trace(go.Scatter(x=d.distance_m, y=d.delta_s, mode="lines", name=label,
                                 line={"color": COLOURS[k % len(COLOURS)], "width": 1.2}))
    length = max((float(d.distance_m[-1]) for d in deltas.values()), default=0.0)
    _corner_marks(fig, corners, length)
    fig.add_hline(y=0, line_width=1, line_color="black")
    fig.update_layout(title=title or "Delta to reference", xaxis_title="Distance [m]", yaxis_title="Delta [s] (+ slower)",
                      hovermode="x unified", height=420)
    return fig


def track_map_figure(xy: pd.DataFrame, values: np.ndarray | None = None, label: str = "Speed [km/h]",
                     corners: Sequence[Corner] | None = None, title: str = "", diverging: bool = False) -> go.Figure:
    """The lap's path in metres coloured by ``values`` (one per row of ``xy``: speed, any
    channel, or delta); ``diverging`` centres the colour scale on 0 (for delta)."""
    marker: dict = {"size": 4}
    if values is not None:
        v = np.asarray(values, float)
        marker.update({"color": v, "colorscale": "RdBu_r" if diverging else "Viridis", "showscale": True,
                       "colorbar": {"title": label}})
        if diverging:
            lim = float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else 1.0
            marker.update({"cmin": -lim, "cmax": lim})
    fig = go.Figure(go.Scattergl(x=xy.x_m, y=xy.y_m, mode="markers", marker=marker,
                                 text=[f"{d:.0f} m" for d in xy.distance_m], name="lap"))
    d = xy.distance_m.to_numpy()
    for c in corners or []:
        i = int(np.clip(np.searchsorted(d, c.apex_m), 0, len(d) - 1))
        fig.add_annotation(x=float(xy.x_m.iloc[i]), y=float(xy.y_m.iloc[i]), text=c.name, showarrow=True, arrowhead=0)
    fig.add_trace(go.Scatter(x=[xy.x_m.iloc[0]], y=[xy.y_m.iloc[0]], mode="markers+text", text=["start"],
                             marker={"symbol": "square", "size": 10, "color": "black"}, name="start/finish"))
    src = xy.attrs.get("source", "")
    fig.update_layout(title=title or f"Track map ({src})", xaxis_title="x [m]", yaxis_title="y [m]", height=600,
                      yaxis={"scaleanchor": "x", "scaleratio": 1}, showlegend=False)
    return fig


def table_figure(df: pd.DataFrame, title: str = "", decimals: int = 3) -> go.Figure:
    """A DataFrame as a plotly table (numbers rounded)."""
    shown = df.copy()
    for c in shown.columns:
        if pd.api.types.is_float_dtype(shown[c]):
            shown[c] = shown[c].round(decimals)
    fig = go.Figure(go.Table(header={"values": list(shown.columns), "align": "left"},
                             cells={"values": [shown[c].astype(str).tolist() for c in shown.columns], "align": "left"}))
    fig.update_layout(title=title, height=min(120 + 28 * len(shown), 900), margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def corner_loss_figure(losses: pd.DataFrame, title: str = "") -> go.Figure:
    """Per corner: time lost against the baseline on each lap (box per corner)."""
    fig = go.Figure()
    for corner, ct in losses.groupby("corner", sort=False):
        fig.add_trace(go.Box(y=ct.loss_s, name=str(corner), boxpoints="all", text=[f"lap {i}" for i in ct.lap_index]))
    fig.update_layout(title=title or "Time lost per corner against the baseline", yaxis_title="Loss [s]",
                      showlegend=False, height=420)
    return fig
