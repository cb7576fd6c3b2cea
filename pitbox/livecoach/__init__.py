"""The live coach (issue 10): a running delta to a switchable reference lap, a predicted lap
time, the per-corner delta of the lap so far, fuel and the last pit-stall tyre snapshot on
every tick; after each lap its lap-table row and at most two tips from the same coaching
engine as ``pitbox coach``.

Python API::

    from pitbox.livecoach import LiveCoach, Analyst, run_jobs

    coach = LiveCoach(reference="session_best")   # | "all_time_best" | "optimal" | "lap", lap="SESSION:LAP"
    analyst = Analyst(data="data")                # the after-lap analysis (run it in another process)
    for tick, t, values in frames:                # values: dict channel -> value, or the recorder's np.void row
        derived = coach.feed(tick, t, values)     # {"pitbox_delta_s", "pitbox_predicted_lap_s", "pitbox_lap_dist_m"}
        run_jobs(coach, analyst)                  # jobs -> analyst -> results -> coach (inline; tests, notebooks)
        for msg in coach.messages(): ...          # "reference", "coach", "tip" messages (contract A)
    coach.set_reference("lap", "20240825-114000:4")
    coach.state(); coach.tips; coach.laps; coach.reference

    from pitbox.livecoach import attach           # the core on a feed that lacks it (notebooks)
    live = attach("ws://127.0.0.1:8765", reference=None, data="data", on_message=print)

Beside the recorder: :class:`pitbox.livecoach.service.LiveCoachService` (``pitbox record
--stream/--publish``; ``--no-live-coach`` turns it off). See docs/live.md, "Live coach".
"""

from __future__ import annotations

from typing import Any

from pitbox.livecoach.core import DERIVED, LiveCoach
from pitbox.livecoach.reference import KINDS, ReferenceLap


def run_jobs(coach: LiveCoach, analyst: Any) -> int:
    """Hand the core's pending jobs to ``analyst`` (an :class:`~pitbox.livecoach.analyst.Analyst`)
    in this thread and deliver the results; returns the number of jobs done."""
    n = 0
    while True:
        todo = coach.jobs()
        if not todo:
            return n
        for job in todo:
            for result in analyst.handle(job):
                coach.deliver(result)
            n += 1


def __getattr__(name: str) -> Any:
    if name == "Analyst":
        from pitbox.livecoach.analyst import Analyst

        return Analyst
    if name == "attach":
        from pitbox.livecoach.attach import attach

        return attach
    if name == "LiveCoachService":
        from pitbox.livecoach.service import LiveCoachService

        return LiveCoachService
    raise AttributeError(name)


__all__ = ["DERIVED", "KINDS", "Analyst", "LiveCoach", "LiveCoachService", "ReferenceLap", "attach", "run_jobs"]
