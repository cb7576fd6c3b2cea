"""When a polling hand-off should look next.

The stream's inbox (polled on the event loop's own timer) and the live coach's pump thread
move frames off the recorder's tick loop without the tick loop ever making a system call
(see :mod:`pitbox.live._inbox`), so they poll. Polling every millisecond is 1,000 wake-ups a second for 60 frames, and on a virtual
machine each wake-up costs 40-60 us of CPU: measured, the recorder with the stream on used
879 us of CPU per tick against 243 us without. Frames from a sim come on a fixed interval,
so the thread learns it from the frames themselves and sleeps until just after the next one
is due; it polls every ``poll_s`` only from there (a late frame) or while it has not learned
the interval yet (a replay faster than real time, a stall).
"""

from __future__ import annotations

import statistics
from collections import deque


class Pacer:
    """Learns the interval between published frames and says how long to sleep.

    :meth:`note` is given the count of frames published so far and the ``time.perf_counter()``
    of the newest; :meth:`delay` the time to sleep before the next look: until ``after_s``
    past the next frame's expected time (never more than ``max_s``, so other messages wait at
    most that long), or ``poll_s`` when the next frame is already due, or the interval is not
    known (fewer than ``min_gaps`` gaps seen), or no frame came for two intervals."""

    def __init__(self, poll_s: float = 0.001, after_s: float = 0.0002, max_s: float = 0.02, min_gaps: int = 3):
        self.poll_s = poll_s
        self.after_s = after_s
        self.max_s = max_s
        self.min_gaps = min_gaps
        self._gaps: deque[float] = deque(maxlen=9)
        self._n = 0
        self._t = 0.0

    def note(self, n: int, t: float) -> None:
        """``n`` frames published so far, the newest at ``t`` [perf_counter s]."""
        if n > self._n and t > self._t:
            if self._n:
                self._gaps.append((t - self._t) / (n - self._n))
            self._n, self._t = n, t

    @property
    def interval(self) -> float | None:
        """The learned interval between frames [s] (the median of the last nine), or None."""
        return statistics.median(self._gaps) if len(self._gaps) >= self.min_gaps else None

    def delay(self, now: float) -> float:
        """Seconds to sleep from ``now`` [perf_counter s] before the next look."""
        interval = self.interval
        if interval is None:
            return self.poll_s
        due = self._t + interval + self.after_s
        if now - self._t > 2 * interval + self.poll_s:  # frames stopped or stalled: plain polling
            return self.poll_s
        return min(max(due - now, self.poll_s), self.max_s)
