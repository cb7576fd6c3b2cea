"""A stretch of one lap on the distance grid (which may run past the line), and the few
signal helpers the segment and metric modules share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pitbox.analysis.align import Trace

BRAKE_ON = 0.05  #: brake fraction that counts as braking


@dataclass
class Window:
    """Grid points of one lap between two distances: ``d`` [m], ``t`` [s since the lap's
    start line] and channels (may run past the line, onto the next lap)."""

    d: np.ndarray
    t: np.ndarray
    ch: dict[str, np.ndarray]
    #: per point: the stretch [m] of missing ticks it lies in, else 0 (:attr:`Trace.gap_m`)
    gap: np.ndarray | None = None

    def slice(self, i: int, j: int) -> Window:
        return Window(self.d[i:j], self.t[i:j], {k: v[i:j] for k, v in self.ch.items()},
                      None if self.gap is None else self.gap[i:j])

    def gap_at(self, x: float | None) -> float | None:
        """How far an event found at ``x`` [m] may be off because ticks are missing around it
        [m]: the gap at the grid points on either side (0 with every tick recorded; None
        when ``x`` is None or the gaps are not known)."""
        if x is None or self.gap is None or not len(self.d):
            return None
        i = int(np.searchsorted(self.d, x))
        return float(np.max(self.gap[max(i - 1, 0):i + 1]))


_GAP = "\0gap"  #: the gaps ride with the channels through the cuts below


def _arrays(trace: Trace, gaps: bool = True) -> dict[str, np.ndarray]:
    ch = dict(trace.channels)
    if gaps and trace.gap_m is not None:
        ch[_GAP] = trace.gap_m
    return ch


def _make(d: np.ndarray, t: np.ndarray, ch: dict[str, np.ndarray]) -> Window:
    gap = ch.pop(_GAP, None)
    return Window(d, t, ch, gap)


def window(trace: Trace, a: float, b: float, next_lap: bool = True) -> Window:
    """Grid points covering ``[a, b]`` [m] (one point beyond each end where there is one). Past
    the finish line the lap goes on with the next lap's start (:attr:`Trace.overrun`) or,
    when the next lap is unknown or ``next_lap`` is False, with its own start (time continued
    from the lap time)."""
    L = trace.length_m
    d, t = trace.distance_m, trace.time_s
    a = max(a, float(d[0]))
    i = max(int(np.searchsorted(d, a, "left")) - 1, 0)
    if b <= d[-1] + 1e-9 or not trace.complete:
        j = min(int(np.searchsorted(d, b, "right")) + 1, len(d))
        return _make(d[i:j], t[i:j], {k: v[i:j] for k, v in _arrays(trace).items()})
    ov = trace.overrun if next_lap else None
    if ov is not None and ov.distance_m[-1] >= b - 1e-9:
        j = min(int(np.searchsorted(ov.distance_m, b, "right")) + 1, len(ov.distance_m))
        nxt = _arrays(ov)
        return _make(np.concatenate([d[i:], ov.distance_m[:j]]), np.concatenate([t[i:], ov.time_s[:j]]),
                     {k: np.concatenate([v[i:], nxt[k][:j]]) for k, v in _arrays(trace, _GAP in nxt).items()})
    j = min(int(np.searchsorted(d, b - L, "right")) + 1, len(d))
    return _make(np.concatenate([d[i:-1], d[:j] + L]), np.concatenate([t[i:-1], t[:j] + t[-1]]),
                 {k: np.concatenate([v[i:-1], v[:j]]) for k, v in _arrays(trace).items()})


def cross_up(x: np.ndarray, d: np.ndarray, level: float, start: int = 0) -> float | None:
    """First distance [m] at or after index ``start`` where ``x`` rises through ``level`` (interpolated)."""
    above = np.flatnonzero(x[start:] >= level)
    if not len(above):
        return None
    i = start + int(above[0])
    if i == 0 or x[i - 1] >= level:
        return float(d[i])
    f = (level - x[i - 1]) / (x[i] - x[i - 1])
    return float(d[i - 1] + f * (d[i] - d[i - 1]))


def brake_on(w: Window, first: bool = False) -> float | None:
    """Where a braking event starts in the window [m]: the last one (``first=False``: the window
    runs from the previous corner to this apex, so earlier events belong to other corners) or
    the first (the window is the corner's own segment, which starts before its braking).
    None without braking (or without a ``Brake`` channel)."""
    if "Brake" not in w.ch or not len(w.d):
        return None
    brake = w.ch["Brake"]
    on = np.flatnonzero(brake >= BRAKE_ON)
    if not len(on):
        return None
    starts = on[np.concatenate([[True], np.diff(on) > 1])]
    k = int(starts[0] if first else starts[-1])
    return cross_up(brake, w.d, BRAKE_ON, k - 1 if k > 0 else 0)


def time_where(mask: np.ndarray, t: np.ndarray) -> float:
    """Seconds spent on grid points where ``mask`` holds (each point owns the interval to the next)."""
    if len(t) < 2:
        return 0.0
    dt = np.diff(t)
    return float(np.sum(dt[mask[:-1]]))
