"""The live dashboard (issue 10): ``Dashboard(url, token=None, reference=None)`` in a
notebook or a Voilà page, ``TeamDashboard(url)`` on a relay, and ``pitbox live-demo``.

>>> from pitbox.dashboard import Dashboard
>>> Dashboard("ws://127.0.0.1:8765")          # the last expression of a cell shows it

The widgets (ipywidgets, anywidget, plotly) are imported when first used, so the CLI can
import this package cheaply. See ``docs/dashboard.md``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Dashboard", "DriverState", "LiveCanvas", "TeamDashboard", "TeamState"]


def __getattr__(name: str) -> Any:
    if name in ("Dashboard", "TeamDashboard"):
        from pitbox.dashboard import app

        return getattr(app, name)
    if name == "LiveCanvas":
        from pitbox.dashboard.canvas import LiveCanvas

        return LiveCanvas
    if name in ("DriverState", "TeamState"):
        from pitbox.dashboard import state

        return getattr(state, name)
    raise AttributeError(f"module 'pitbox.dashboard' has no attribute {name!r}")
