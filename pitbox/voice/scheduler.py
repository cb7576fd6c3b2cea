"""When to speak: an I/O-free scheduler fed the live frames (session time, lap, distance).

**Quiet zones** (:class:`QuietZones`) come from the reference lap: every corner from
``lead_s`` before the reference's braking point to ``tail_s`` after the corner's end (so the
braking, entry, apex and exit phases the analysis finds are all inside), and any other
stretch where the reference brakes. A message starts only where its audio — the output
latency plus its measured duration — ends before the next quiet zone, at the reference's
pace shortened by ``pace_margin`` (a driver faster than the reference still finishes
hearing it before he brakes).

**Tips** about a corner X are spoken on the straight before X ("teach before the action"),
on a lap after the one they are about; if that straight is too short for the phrase, the
nearest earlier straight that can hold it. A car already past X's braking point waits for
the next lap's straight, or the tip expires (its time to live is re-checked at the moment it
would start).

**Priorities**: ``critical`` (safety: speaks at once, anywhere, even muted, and cuts anything
lower) > ``reply`` (an answer to a command: cuts a tip or information) > ``tip`` > ``info``.
Never two at once; nothing is cut for anything but a higher priority (a cut tip goes back in
the queue while its time to live allows). Tips and information share one **budget per
lap** (a number of messages and seconds of speech) with a **cooldown** between them.
**Verbosity**: ``quiet`` (critical and replies), ``normal`` (+ tips), ``verbose`` (+ info);
**mute** leaves only critical messages. ``quiet in the corners`` (default) applies the zones
to every message but critical ones; ``talk anywhere`` drops them. On pit road anything may be
said anywhere.

The scheduler assumes each message plays for exactly ``latency_s + duration_s`` from the
moment it returns a ``start`` action; the caller plays the audio and honours ``stop``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pitbox.voice.errors import VoiceError

log = logging.getLogger(__name__)

PRIORITIES = ("critical", "reply", "tip", "info")
#: the coaching priorities: they share the per-lap budget and cooldown, and belong to their
#: session (a new session expires them; replies and critical messages outlive it)
COACHING = ("tip", "info")
#: the session time going back by more than this [s] is a new clock (a new session), not jitter
CLOCK_BACK_S = 1.0
RANK = {p: i for i, p in enumerate(PRIORITIES)}
VERBOSITY = ("quiet", "normal", "verbose")
#: default time to live per priority [s] (a tip's default is in laps: TIP_TTL_LAPS)
DEFAULT_TTL_S = {"critical": 30.0, "reply": 30.0, "info": 30.0}
TIP_TTL_LAPS = 1.6
BRAKE_ON = 0.05  #: brake fraction that counts as braking on the reference lap


# -- quiet zones --------------------------------------------------------------------------


@dataclass
class Zone:
    """A stretch of the lap where nothing but a critical message may be heard: from
    ``start_m`` to ``end_m`` [m from the line; ``end_m`` > length when it wraps]."""

    start_m: float
    end_m: float
    corners: list[str] = field(default_factory=list)  #: corners inside ([] for braking elsewhere)
    kind: str = "corner"  #: "corner" or "braking"

    def to_dict(self) -> dict[str, Any]:
        return {"start_m": round(self.start_m, 1), "end_m": round(self.end_m, 1), "corners": list(self.corners),
                "kind": self.kind}


class QuietZones:
    """The quiet zones of one track, with the reference lap's time at each distance (to
    turn distance into time) and each corner's braking point.

    Build it from the reference lap with :meth:`from_reference` (arrays),
    :meth:`from_analysis` (a :class:`~pitbox.analysis.SessionAnalysis`) or
    :meth:`from_reference_message` (the live stream's ``reference`` message).
    """

    def __init__(self, length_m: float, zones: Sequence[Zone], distance_m: np.ndarray, time_s: np.ndarray,
                 brake_points: Mapping[str, float], corner_ends: Mapping[str, float] | None = None):
        if not length_m or length_m <= 0:
            raise VoiceError(f"quiet zones: track length must be positive, got {length_m!r}")
        self.length_m = float(length_m)
        self.zones = sorted(zones, key=lambda z: z.start_m)
        d = np.asarray(distance_m, dtype=np.float64)
        t = np.asarray(time_s, dtype=np.float64)
        ok = np.isfinite(d) & np.isfinite(t)
        d, t = d[ok], t[ok]
        if len(d) < 2:
            raise VoiceError("quiet zones: the reference lap needs at least two points of distance and time")
        order = np.argsort(d)
        self._d, self._t = d[order], np.maximum.accumulate(t[order] - t[order][0])
        self.lap_time_s = float(np.interp(self.length_m, self._d, self._t))
        self.brake_points = dict(brake_points)
        self.corner_ends = dict(corner_ends or {})
        self._windows: list[tuple[float, float]] | None = None

    # construction ------------------------------------------------------------------------

    @classmethod
    def from_reference(cls, distance_m: Sequence[float], time_s: Sequence[float], brake: Sequence[float] | None,
                       corners: Iterable[Mapping[str, Any]], length_m: float | None = None,
                       lead_s: float = 1.0, tail_s: float = 0.5) -> QuietZones:
        """Zones from a reference lap on a distance grid: ``distance_m`` [m], ``time_s`` [s
        since the line], ``brake`` (0-1, or None) and ``corners`` (``name``, ``start_m``,
        ``end_m``; ``brake_m`` when known, else found on ``brake``). Each corner is quiet from
        ``lead_s`` [s] before its braking point to ``tail_s`` [s] after its end."""
        d = np.asarray(distance_m, dtype=np.float64)
        t = np.asarray(time_s, dtype=np.float64)
        L = float(length_m if length_m is not None else d[-1])
        b = np.nan_to_num(np.asarray(brake, dtype=np.float64)) if brake is not None else None
        proto = cls(L, [], d, t, {})
        cs = sorted(({"name": str(c["name"]), "start_m": float(c["start_m"]), "end_m": float(c["end_m"]),
                      "brake_m": c.get("brake_m")} for c in corners), key=lambda c: c["start_m"])
        zones: list[Zone] = []
        brake_points: dict[str, float] = {}
        ends: dict[str, float] = {}
        for i, c in enumerate(cs):
            start, end = c["start_m"], c["end_m"]
            if end < start:
                end += L
            prev_end = cs[i - 1]["end_m"] if i > 0 else (cs[-1]["end_m"] - L if cs else start - L)
            prev_end = prev_end if prev_end <= start else prev_end - L
            bp = c["brake_m"]
            if bp is None or not math.isfinite(float(bp)):
                bp = _brake_point(d, b, L, start, prev_end) if b is not None else start
            bp = min(float(bp), start)
            brake_points[c["name"]] = bp % L
            ends[c["name"]] = end % L if end > L else end
            z0 = proto.distance_before(bp, lead_s)
            z1 = proto.distance_after(end, tail_s)
            zones.append(Zone(z0, z1, [c["name"]], "corner"))
        if b is not None:
            for a0, a1 in _runs(b > BRAKE_ON, d):
                if not any(_overlap(a0, a1, z, L) for z in zones):
                    zones.append(Zone(proto.distance_before(a0, lead_s), proto.distance_after(a1, tail_s), [],
                                      "braking"))
        return cls(L, _merge(zones, L), d, t, brake_points, ends)

    @classmethod
    def from_analysis(cls, analysis: Any, lead_s: float = 1.0, tail_s: float = 0.5) -> QuietZones:
        """Zones from an offline analysis (``pitbox.analysis.analyse``): its corners as it
        detected them, and the reference lap's braking (``Brake``) and time."""
        tr = analysis.ref_trace
        summary = analysis.corner_summary()
        bps = dict(zip(summary.corner, summary.ref_brake_point_m, strict=True)) if len(summary) else {}
        corners = [{"name": c.name, "start_m": c.start_m, "end_m": c.end_m,
                    "brake_m": None if not np.isfinite(bps.get(c.name, np.nan)) else float(bps[c.name])}
                   for c in analysis.corners]
        return cls.from_reference(tr.distance_m, tr.time_s, tr.channels.get("Brake"), corners, tr.length_m,
                                  lead_s, tail_s)

    @classmethod
    def from_reference_message(cls, msg: Mapping[str, Any], lead_s: float = 1.0, tail_s: float = 0.5) -> QuietZones:
        """Zones from the live stream's ``reference`` message (contract A: ``distance_m``,
        ``channels.time_s``, ``channels.Brake``, ``corners``, ``length_m``)."""
        try:
            ch = msg["channels"]
            d = np.asarray(msg["distance_m"], dtype=np.float64)
            t = np.asarray([np.nan if v is None else v for v in ch["time_s"]], dtype=np.float64)
            brake = ch.get("Brake")
            b = None if brake is None else np.asarray([0.0 if v is None else v for v in brake], dtype=np.float64)
            corners = list(msg.get("corners") or [])
            length = float(msg.get("length_m") or d[-1])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise VoiceError(f"reference message: expected distance_m, channels.time_s and corners ({exc})") from None
        return cls.from_reference(d, t, b, corners, length, lead_s, tail_s)

    # queries ---------------------------------------------------------------------------

    def _time_at(self, d: float) -> float:
        return float(np.interp(d % self.length_m, self._d, self._t))

    def time_between(self, d_from: float, d_to: float) -> float:
        """Reference time [s] to drive forward from ``d_from`` to ``d_to`` (wrapping the line)."""
        a, b = self._time_at(d_from), self._time_at(d_to)
        dd = (d_to - d_from) % self.length_m
        if dd == 0:
            return 0.0
        return b - a if b >= a else self.lap_time_s - a + b

    def distance_before(self, d: float, seconds: float) -> float:
        """The distance [m, may be negative] the reference covered ``seconds`` [s] before ``d``."""
        base = d - d % self.length_m
        t = self._time_at(d) - seconds
        if t >= 0:
            return base + float(np.interp(t, self._t, self._d))
        return base - self.length_m + float(np.interp(t + self.lap_time_s, self._t, self._d))

    def distance_after(self, d: float, seconds: float) -> float:
        """The distance [m, may exceed the length] the reference covered ``seconds`` [s] after ``d``."""
        base = d - d % self.length_m
        t = self._time_at(d) + seconds
        if t <= self.lap_time_s:
            return base + float(np.interp(t, self._t, self._d))
        return base + self.length_m + float(np.interp(t - self.lap_time_s, self._t, self._d))

    def zone_at(self, d: float) -> Zone | None:
        """The quiet zone containing distance ``d`` [m], or None."""
        x = d % self.length_m
        for z in self.zones:
            if _inside(x, z.start_m, z.end_m, self.length_m):
                return z
        return None

    def next_zone(self, d: float) -> tuple[Zone, float] | None:
        """The next quiet zone ahead of ``d`` and the distance to its start [m]."""
        if not self.zones:
            return None
        x = d % self.length_m
        best = min(self.zones, key=lambda z: (z.start_m - x) % self.length_m)
        return best, (best.start_m - x) % self.length_m

    def time_to_next_zone(self, d: float) -> float:
        """Reference time [s] from ``d`` to the next quiet zone (a lap when there is none)."""
        nz = self.next_zone(d)
        if nz is None:
            return self.lap_time_s
        return self.time_between(d, nz[0].start_m)

    def corner_zone(self, corner: str) -> Zone | None:
        for z in self.zones:
            if corner in z.corners:
                return z
        return None

    def windows(self) -> list[tuple[float, float]]:
        """The straights between the zones: (start, end) [m], start in [0, length), end
        after start (past the length when the straight crosses the line); the i-th follows
        the i-th zone."""
        if self._windows is None:
            L = self.length_m
            if not self.zones:
                self._windows = [(0.0, L)]
            else:
                out = []
                for i, z in enumerate(self.zones):
                    nxt = self.zones[(i + 1) % len(self.zones)]
                    a, b = z.end_m, nxt.start_m
                    while b < a:
                        b += L
                    shift = math.floor(a / L) * L
                    out.append((a - shift, b - shift))
                self._windows = out
        return self._windows

    def window_for(self, corner: str, need_s: float) -> tuple[float, float] | None:
        """Where a tip about ``corner`` may be spoken: the straight right before the corner's
        zone, else the nearest earlier one that holds ``need_s`` [s]; None when the corner is
        unknown or no straight is long enough."""
        z = self.corner_zone(corner)
        if z is None:
            return None
        ws = self.windows()
        idx = min(range(len(ws)), key=lambda i: (z.start_m - ws[i][1]) % self.length_m)
        for k in range(len(ws)):
            a, b = ws[(idx - k) % len(ws)]
            if self.time_between(a, b % self.length_m if b - a < self.length_m else a) >= need_s \
                    or (b - a >= self.length_m and self.lap_time_s >= need_s):
                return a, b
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"length_m": self.length_m, "lap_time_s": round(self.lap_time_s, 3),
                "zones": [z.to_dict() for z in self.zones],
                "brake_points": {k: round(v, 1) for k, v in self.brake_points.items()}}


def _inside(x: float, a: float, b: float, L: float) -> bool:
    """Is ``x`` in [a, b] on a circle of length L (a may be negative, b may exceed L)."""
    return (a <= x <= b) or (a <= x + L <= b) or (a <= x - L <= b)


def _overlap(a0: float, a1: float, z: Zone, L: float) -> bool:
    return any(a0 + k * L <= z.end_m and z.start_m <= a1 + k * L for k in (-1, 0, 1))


def _merge(zones: list[Zone], L: float) -> list[Zone]:
    """Zones that overlap (also across the line) become one; starts are kept in [0, L)."""
    zs = []
    for z in zones:
        shift = math.floor(z.start_m / L) * L
        zs.append(Zone(z.start_m - shift, z.end_m - shift, list(z.corners), z.kind))
    zs.sort(key=lambda z: z.start_m)
    out: list[Zone] = []
    for z in zs:
        if out and z.start_m <= out[-1].end_m:
            last = out[-1]
            last.end_m = max(last.end_m, z.end_m)
            last.corners += [c for c in z.corners if c not in last.corners]
            last.kind = "corner" if last.corners else last.kind
        else:
            out.append(z)
    # the last zone may wrap into the first ones
    while len(out) > 1 and out[-1].end_m - L >= out[0].start_m:
        first = out.pop(0)
        last = out[-1]
        last.end_m = max(last.end_m, first.end_m + L)
        last.corners += [c for c in first.corners if c not in last.corners]
        last.kind = "corner" if last.corners else last.kind
    return out


def _runs(mask: np.ndarray, d: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) distances of each run of True in ``mask``."""
    out = []
    m = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        out.append((float(d[a]), float(d[b - 1])))
    return out


def _brake_point(d: np.ndarray, brake: np.ndarray, L: float, start: float, prev_end: float) -> float:
    """Where the reference starts braking for a corner starting at ``start``: the first
    point of the braking run that reaches into the 200 m before the turn-in, not before the
    previous corner's end. ``start`` itself when it does not brake."""
    on = brake > BRAKE_ON
    lo = max(prev_end, start - 400.0)
    dd = np.concatenate([d - L, d, d + L])
    oo = np.concatenate([on, on, on])
    sel = (dd >= lo) & (dd <= start)
    idx = np.flatnonzero(sel)
    if len(idx) == 0 or not oo[idx].any():
        return start
    near = idx[(dd[idx] >= start - 200.0) & oo[idx]]
    if len(near) == 0:
        return start
    j = int(near[-1])
    while j - 1 >= idx[0] and oo[j - 1]:
        j -= 1
    return float(dd[j])


# -- messages and the scheduler --------------------------------------------------------------


@dataclass
class Message:
    """Something to say. ``duration_s`` is the measured length of its audio [s].

    ``corner`` (a tip's corner) ties it to the straight before that corner; ``lap`` is the
    lap it is about (a tip is spoken on a later lap). ``ttl_s`` [s] from ``created_t`` (the
    session time when it was submitted). ``rank`` orders messages of one priority (1 first).
    ``audio`` is carried for the caller (a :class:`~pitbox.voice.Speech`)."""

    text: str
    priority: str = "tip"
    duration_s: float = 0.0
    spoken: str = ""
    corner: str | None = None
    lap: int | None = None
    rank: int = 1
    ttl_s: float | None = None
    created_t: float | None = None
    audio: Any = None
    key: str | None = None  #: a newer message with the same key replaces an older one waiting
    unmutable: bool = False  #: heard even when muted (the answer to "mute" itself)
    reply_to: str | int | None = None  #: the ``id`` of the client's command this answers
    id: int = 0

    def __post_init__(self) -> None:
        if self.priority not in RANK:
            raise VoiceError(f"message priority {self.priority!r}: expected one of {', '.join(PRIORITIES)}")


@dataclass
class Action:
    """What the caller must do now: ``start`` playing ``message``, or ``stop`` it (cut for a
    higher priority, or muted); ``expired``/``dropped`` say a message will never be spoken."""

    kind: str  #: "start", "stop", "expired", "dropped"
    message: Message
    t: float  #: session time [s]
    dist_m: float | None = None
    lap: int | None = None
    reason: str = ""


@dataclass
class Spoken:
    """A message that was started: when and where, and when it ends (or was cut)."""

    message: Message
    start_t: float  #: session time the start action was given [s]
    audible_t: float  #: start_t + latency [s]
    end_t: float  #: audible_t + duration [s] (or the cut time)
    start_m: float | None
    lap: int | None
    cut: bool = False


class Scheduler:
    """Decides what is said when (module docstring). Feed it with :meth:`update` for every
    frame (or at any rate: ≥ 10 Hz keeps its timing within 0.1 s) and do what the returned
    :class:`Action` list says.

    ``latency_s`` [s]: from a start action to the first sound (the player's output latency).
    ``budget_per_lap``/``budget_s_per_lap``: tips and information per lap (count, seconds of
    speech). ``cooldown_s`` [s]: between the end of one tip or information and the next.
    ``pace_margin``: the reference's time to the next quiet zone is multiplied by this
    before the audio must fit in it."""

    def __init__(self, zones: QuietZones | None = None, *, latency_s: float = 0.15, budget_per_lap: int = 2,
                 budget_s_per_lap: float = 12.0, cooldown_s: float = 4.0, verbosity: str = "normal",
                 pace_margin: float = 0.85, tip_ttl_s: float | None = None):
        self.zones = zones
        self.latency_s = float(latency_s)
        self.budget_per_lap = int(budget_per_lap)
        self.budget_s_per_lap = float(budget_s_per_lap)
        self.cooldown_s = float(cooldown_s)
        self.pace_margin = float(pace_margin)
        self._tip_ttl_s = tip_ttl_s
        self.set_verbosity(verbosity)
        self.muted = False
        self.anywhere = False  #: "talk anywhere": the quiet zones are ignored
        self.focus: str | None = None  #: only tips about this corner
        self.pending: list[Message] = []
        self.current: Spoken | None = None
        self.spoken: list[Spoken] = []  #: every message started, in order
        self.expired: list[Message] = []
        self.dropped: list[tuple[Message, str]] = []
        self._next_id = 1
        self._t: float | None = None
        self._lap: int | None = None
        self._dist: float | None = None
        self._budget_lap: int | None = None
        self._budget_used = 0
        self._budget_s_used = 0.0
        self._last_coaching_end = -math.inf
        self.last_message: Message | None = None  #: the last non-critical message started ("repeat")

    # settings ----------------------------------------------------------------------------

    def set_zones(self, zones: QuietZones | None) -> None:
        """A new reference (the live coach switched it): new zones from now on."""
        self.zones = zones

    def set_verbosity(self, level: str) -> None:
        if level not in VERBOSITY:
            raise VoiceError(f"verbosity {level!r}: expected one of {', '.join(VERBOSITY)}")
        self.verbosity = level

    def tip_ttl_s(self) -> float:
        if self._tip_ttl_s is not None:
            return self._tip_ttl_s
        lap = self.zones.lap_time_s if self.zones is not None else 90.0
        return TIP_TTL_LAPS * lap

    def _allowed(self, m: Message) -> bool:
        if m.priority == "critical":
            return True
        if self.muted and not m.unmutable:
            return False
        if m.priority == "tip":
            return self.verbosity in ("normal", "verbose") and (self.focus is None or m.corner == self.focus)
        if m.priority == "info":
            return self.verbosity == "verbose"
        return True

    # input ---------------------------------------------------------------------------------

    def submit(self, message: Message, t: float | None = None) -> Message:
        """Queue a message (its ``created_t`` defaults to the last frame's time, or ``t``)."""
        message.id = self._next_id
        self._next_id += 1
        if message.created_t is None:
            message.created_t = t if t is not None else (self._t if self._t is not None else 0.0)
        if message.ttl_s is None:
            message.ttl_s = self.tip_ttl_s() if message.priority == "tip" else DEFAULT_TTL_S[message.priority]
        if message.key is not None:
            old = [p for p in self.pending if p.key == message.key]
            for p in old:
                self.pending.remove(p)
                self.dropped.append((p, "replaced"))
        self.pending.append(message)
        return message

    def mute(self, on: bool = True, t: float | None = None) -> list[Action]:
        """Mute (only critical messages are heard; a non-critical one playing is stopped) or unmute."""
        self.muted = on
        acts: list[Action] = []
        if on and self.current is not None and self.current.message.priority != "critical":
            acts.append(self._cut(t if t is not None else self._t or 0.0, "muted", requeue=False))
        return acts

    def new_session(self) -> list[Message]:
        """A new session: the tips and information waiting are about the old one and expire
        (returned); replies and critical messages wait on (they answer the driver now). The
        session time of the new session may start again from zero: :meth:`update` carries
        every time it holds (what is playing, the cooldown, the time to live) over to the new
        clock when it goes back."""
        old = [m for m in self.pending if m.priority in COACHING]
        self.pending = [m for m in self.pending if m.priority not in COACHING]
        self.expired += old
        return old

    def _rebase(self, shift: float) -> None:
        """The session time went back by ``-shift`` [s] (a new session's clock, a replay
        started again): every time held moves with it, as if the clock had run on."""
        for m in self.pending:
            if m.created_t is not None:
                m.created_t += shift
        sp = self.current
        if sp is not None:
            sp.start_t += shift
            sp.audible_t += shift
            sp.end_t += shift
        self._last_coaching_end += shift
        self._budget_lap = None  # the laps count again from the new session's first

    def update(self, t: float, lap: int | None, dist_m: float | None, on_pit_road: bool = False) -> list[Action]:
        """One frame: session time ``t`` [s], ``lap`` (iRacing's ``Lap``), distance from the
        line ``dist_m`` [m] (None when unknown: only critical messages then), ``on_pit_road``
        (talk anywhere). Returns what to do now."""
        if self._t is not None and t < self._t - CLOCK_BACK_S:
            self._rebase(t - self._t)
        self._t, self._lap, self._dist = t, lap, dist_m
        if lap is not None and lap != self._budget_lap:
            self._budget_lap, self._budget_used, self._budget_s_used = lap, 0, 0.0
        acts: list[Action] = []
        if self.current is not None and t >= self.current.end_t:
            self.current = None
        for m in list(self.pending):
            if t - float(m.created_t or 0.0) > float(m.ttl_s or 0.0):
                self.pending.remove(m)
                self.expired.append(m)
                acts.append(Action("expired", m, t, dist_m, lap, "time to live"))
        if not self.pending:
            return acts
        cand = sorted(self.pending, key=lambda m: (RANK[m.priority], m.rank, m.created_t, m.id))
        for m in cand:
            if not self._allowed(m):
                continue
            if self.current is not None:
                if RANK[m.priority] < RANK[self.current.message.priority] and m.priority in ("critical", "reply") \
                        and self._fits(m, t, lap, dist_m, on_pit_road):
                    acts.append(self._cut(t, f"cut for a {m.priority}", requeue=True))
                    acts.append(self._start(m, t, lap, dist_m))
                break  # one voice at a time: the rest wait
            if self._fits(m, t, lap, dist_m, on_pit_road):
                acts.append(self._start(m, t, lap, dist_m))
                break
        return acts

    # decisions -------------------------------------------------------------------------------

    def _fits(self, m: Message, t: float, lap: int | None, d: float | None, pit: bool) -> bool:
        if m.priority == "critical":
            return True
        if m.priority in COACHING:
            if self._budget_used >= self.budget_per_lap:
                return False
            if self._budget_s_used + m.duration_s > self.budget_s_per_lap:
                return False
            if t < self._last_coaching_end + self.cooldown_s:
                return False
        z = self.zones
        if m.priority == "tip" and m.corner is not None and z is not None and z.corner_zone(m.corner) is not None:
            if d is None or (m.lap is not None and lap is not None and lap <= m.lap):
                return False
            w = z.window_for(m.corner, (self.latency_s + m.duration_s) / self.pace_margin)
            if w is None or not _inside(d % z.length_m, w[0], w[1], z.length_m):
                return False
        if pit or self.anywhere or z is None:
            return True
        if d is None:
            return False
        if z.zone_at(d) is not None:
            return False
        return self.latency_s + m.duration_s <= self.pace_margin * z.time_to_next_zone(d)

    def _start(self, m: Message, t: float, lap: int | None, d: float | None) -> Action:
        self.pending.remove(m)
        audible = t + self.latency_s
        sp = Spoken(m, t, audible, audible + m.duration_s, d, lap)
        self.current = sp
        self.spoken.append(sp)
        if m.priority in COACHING:
            self._budget_used += 1
            self._budget_s_used += m.duration_s
            self._last_coaching_end = sp.end_t
        if m.priority != "critical":
            self.last_message = m
        return Action("start", m, t, d, lap)

    def _cut(self, t: float, reason: str, requeue: bool) -> Action:
        assert self.current is not None
        sp = self.current
        sp.cut, sp.end_t = True, t
        self.current = None
        m = sp.message
        if m.priority in COACHING:
            self._budget_used = max(self._budget_used - 1, 0)
            self._budget_s_used = max(self._budget_s_used - m.duration_s, 0.0)
            self._last_coaching_end = t
        if requeue and t - float(m.created_t or 0.0) <= float(m.ttl_s or 0.0):
            self.pending.append(m)
        return Action("stop", m, t, self._dist, self._lap, reason)

    @property
    def speaking(self) -> Message | None:
        """The message playing now (by the scheduler's clock), or None."""
        if self.current is not None and self._t is not None and self._t < self.current.end_t:
            return self.current.message
        return None


def voice_message(m: Message, t: float, lap: int | None) -> dict[str, Any]:
    """The live stream's ``voice`` message (contract A) for a message started at session
    time ``t`` [s]: ``{"v": 1, "type": "voice", "text", "spoken", "priority", "t", "lap",
    "corner"}``, and ``"reply_to"`` (the command's ``id``) for the answer to a client's command."""
    msg = {"v": 1, "type": "voice", "text": m.text, "spoken": m.spoken or m.text, "priority": m.priority,
           "t": round(float(t), 3), "lap": lap, "corner": m.corner}
    if m.reply_to is not None:
        msg["reply_to"] = m.reply_to
    return msg
