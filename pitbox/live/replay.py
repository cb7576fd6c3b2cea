"""Frames from a telemetry file, for demos, tests and benchmarks without the recorder.

The recorder publishes live ticks; this plays an ``.ibt`` through the same
:class:`~pitbox.live.Publisher` calls, paced by ``SessionTime``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from pitbox.errors import MissingChannel
from pitbox.ibt import open_telemetry
from pitbox.live.protocol import LiveError


def ibt_frames(path: str | os.PathLike[str], channels: Sequence[str] | None = None, start: int = 0,
               stop: int | None = None) -> list[tuple[int, float, dict[str, Any]]]:
    """Rows ``start:stop`` of a telemetry file as ``(tick, session_time_s, values)``.

    ``tick`` is the row index (an ``.ibt`` has no tick counter); ``values`` maps each
    channel (all when ``channels`` is None) to its numpy value for that row."""
    with open_telemetry(path) as f:
        if "SessionTime" not in f.channels:
            raise MissingChannel(path, "SessionTime", "every iRacing telemetry file has it")
        names = list(f.channels) if channels is None else list(dict.fromkeys([*channels]))
        data = f.read(list(dict.fromkeys([*names, "SessionTime"])), start, stop)
    t = data["SessionTime"]
    cols = [(n, data[n]) for n in names]
    return [(start + i, float(t[i]), {n: col[i] for n, col in cols}) for i in range(len(t))]


def iter_paced(frames: Sequence[tuple[int, float, dict[str, Any]]], speed: float = 1.0,
               stop: threading.Event | None = None) -> Iterator[tuple[int, float, dict[str, Any]]]:
    """Yield frames at ``speed`` times real time (by their session time)."""
    if speed <= 0:
        raise LiveError(f"speed: expected a positive factor of real time, got {speed}")
    if not frames:
        return
    t0, wall0 = frames[0][1], time.perf_counter()
    for frame in frames:
        due = wall0 + (frame[1] - t0) / speed
        delay = due - time.perf_counter()
        if delay > 0 and stop is not None:
            if stop.wait(delay):
                return
        elif delay > 0:
            time.sleep(delay)
        if stop is not None and stop.is_set():
            return
        yield frame
