"""The live coach (issue 10): a running delta to a switchable reference lap, a predicted lap
time, the per-corner delta of the lap so far, fuel and the last pit-stall tyre snapshot on
every tick; after each lap its lap-table row and at most two tips from the same coaching
engine as ``pitbox coach``.

Python API::

    from pitbox.livecoach import LiveCoach, Analyst, run_jobs

    coach = LiveCoach(reference="session_best")   # | "all_time_best" | "optimal" | "lap", lap="SESSION:LAP"
    analyst = Analyst(data="data")                # the after-lap analysis (beside a recorder: its own process)
    for tick, t, values in frames:                # values: dict channel -> value, or the recorder's np.void row
        derived = coach.feed(tick, t, values)     # {"pitbox_delta_s", "pitbox_predicted_lap_s", "pitbox_lap_dist_m"}
        run_jobs(coach, analyst)                  # jobs -> analyst -> results -> coach, in this thread
        for msg in coach.messages(): ...          # "reference", "coach", "tip" messages (contract A)
    coach.set_reference("lap", "20240825-114000:4")
    coach.state(); coach.tips; coach.laps; coach.reference   # coach message, tip messages, lap rows, ReferenceLap

    from pitbox.livecoach import attach           # the core on a stream that lacks it (notebooks)
    live = attach("ws://127.0.0.1:8765", data="data", on_message=print)
    live.state(); live.tips(); live.set_reference("optimal"); live.stop()

Beside the recorder: :class:`LiveCoachService` (on with ``pitbox record --stream`` or
``--publish``; ``--no-live-coach`` turns it off). See docs/live.md, "Live coach". Names load
on first use, so the command line builds its parser without numpy or pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "LiveCoach": "core", "DERIVED": "core", "ReferenceLap": "reference", "KINDS": "reference",
    "Analyst": "analyst", "run_jobs": "analyst", "LiveCoachService": "service", "attach": "notebook",
    "AttachedCoach": "notebook", "AnalystProcess": "worker", "InlineAnalyst": "worker",
}


def __getattr__(name: str) -> Any:
    mod = _NAMES.get(name)
    if mod is None:
        raise AttributeError(f"module 'pitbox.livecoach' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pitbox.livecoach.{mod}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES])


__all__ = sorted(_NAMES)
