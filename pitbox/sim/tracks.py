"""Tracks described as data: straights, constant-radius arcs and linear-curvature transitions.

A track file (``pitbox/data/tracks/<name>.yaml``) lists the elements driven from the
start/finish line. Frame: ``x`` east, ``y`` north (m); ``heading`` counter-clockwise from
east (rad); ``curvature`` = d heading / d s (1/m, positive = left turn). The track must close:
the heading turns by exactly ±360° and the end lands on the start (the residual, at most
``CLOSURE_TOL_M``, is spread along the lap). Lat/Lon come from a local tangent-plane
projection around the start/finish line (``origin``).

Corner files (``<name>.corners.yaml``, corner names by LapDistPct range) are track data any
user can write; their format and loading live in :mod:`pitbox.tracks`, which the simulator
uses to write the files of its own tracks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pitbox.sim.errors import SimError
from pitbox.tracks import CORNER_SUFFIX, TRACKS_DIR, read_yaml

#: Largest gap (m) between the end of the last element and the start that is spread along the lap.
CLOSURE_TOL_M = 1.0
#: Largest error of the total heading change (deg) against ±360°.
HEADING_TOL_DEG = 0.05
#: Step (m) of the sampled geometry table.
TABLE_STEP_M = 0.25
#: WGS84 semi-major axis (m) and first eccentricity squared.
WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3


@dataclass(frozen=True)
class Piece:
    """One piece of curvature: linear from ``k0`` to ``k1`` (1/m) over ``length_m``."""

    length_m: float
    k0: float
    k1: float
    element: int


@dataclass(frozen=True)
class PitLane:
    """Pit lane along the main straight, as fractions of the lap (LapDistPct)."""

    entry_pct: float
    box_pct: float
    exit_pct: float
    speed_limit_kmh: float = 60.0
    side: str = "right"
    offset_m: float = 14.0


@dataclass(frozen=True)
class TrackCorner:
    """A corner's geometric extent (m from the line) from the elements tagged with its name."""

    name: str
    start_m: float
    end_m: float


@dataclass
class Track:
    """A closed circuit sampled every ``TABLE_STEP_M`` metres; queries interpolate that table."""

    name: str
    config: str
    length_m: float
    pieces: list[Piece]
    s_m: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    heading_rad: np.ndarray
    curvature_1pm: np.ndarray
    z_m: np.ndarray
    grade: np.ndarray
    origin_lat: float
    origin_lon: float
    origin_alt: float
    corners: list[TrackCorner]
    pit: PitLane
    sectors: list[float]
    meta: dict[str, Any] = field(default_factory=dict)
    closure_gap_m: float = 0.0
    path: Path | None = None
    corner_lead_m: float = 30.0

    # -- queries (s in metres along the lap; wrapped into [0, length)) -----------------
    def wrap(self, s_m: np.ndarray | float) -> np.ndarray:
        return np.mod(np.asarray(s_m, dtype=float), self.length_m)

    def _interp(self, s_m: np.ndarray | float, table: np.ndarray) -> np.ndarray:
        return np.interp(self.wrap(s_m), self.s_m, table)

    def xy(self, s_m: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Position ``(x_m, y_m)`` (east, north) of the racing line at ``s_m`` metres from the line."""
        return self._interp(s_m, self.x_m), self._interp(s_m, self.y_m)

    def pct_to_xy(self, pct: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Position ``(x_m, y_m)`` at LapDistPct ``pct`` (0..1)."""
        return self.xy(np.asarray(pct, dtype=float) * self.length_m)

    def heading(self, s_m: np.ndarray | float) -> np.ndarray:
        """Heading (rad, counter-clockwise from east, unwrapped along the lap)."""
        return self._interp(s_m, self.heading_rad)

    def curvature(self, s_m: np.ndarray | float) -> np.ndarray:
        """Curvature (1/m, positive = left)."""
        return self._interp(s_m, self.curvature_1pm)

    def elevation(self, s_m: np.ndarray | float) -> np.ndarray:
        """Height above the start/finish line (m)."""
        return self._interp(s_m, self.z_m)

    def grade_at(self, s_m: np.ndarray | float) -> np.ndarray:
        """Slope dz/ds (positive uphill in the driving direction)."""
        return self._interp(s_m, self.grade)

    def xy_to_s(self, x_m: np.ndarray | float, y_m: np.ndarray | float, chunk: int = 2048) -> np.ndarray:
        """Distance along the lap (m) of the nearest table point to each ``(x_m, y_m)``."""
        x = np.atleast_1d(np.asarray(x_m, dtype=float))
        y = np.atleast_1d(np.asarray(y_m, dtype=float))
        out = np.empty(x.shape)
        for i in range(0, len(x), chunk):
            d2 = (x[i:i + chunk, None] - self.x_m[None, :]) ** 2 + (y[i:i + chunk, None] - self.y_m[None, :]) ** 2
            out[i:i + chunk] = self.s_m[np.argmin(d2, axis=1)]
        return np.mod(out, self.length_m)

    # -- geodesy --------------------------------------------------------------------------
    def _radii(self) -> tuple[float, float]:
        """Meridional and prime-vertical radii of curvature (m) at the origin's latitude."""
        s = math.sin(math.radians(self.origin_lat))
        w = math.sqrt(1.0 - WGS84_E2 * s * s)
        return WGS84_A * (1.0 - WGS84_E2) / w**3, WGS84_A / w

    def to_latlon(self, x_m: np.ndarray | float, y_m: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Local tangent plane (east ``x_m``, north ``y_m``) to latitude/longitude (deg)."""
        m, n = self._radii()
        lat = self.origin_lat + np.degrees(np.asarray(y_m, dtype=float) / m)
        lon = self.origin_lon + np.degrees(np.asarray(x_m, dtype=float) / (n * math.cos(math.radians(self.origin_lat))))
        return lat, lon

    def from_latlon(self, lat: np.ndarray | float, lon: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`to_latlon`: ``(x_m, y_m)``."""
        m, n = self._radii()
        y = np.radians(np.asarray(lat, dtype=float) - self.origin_lat) * m
        x = np.radians(np.asarray(lon, dtype=float) - self.origin_lon) * n * math.cos(math.radians(self.origin_lat))
        return x, y

    def latlon(self, s_m: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latitude, longitude (deg) and altitude (m) of the racing line at ``s_m``."""
        x, y = self.xy(s_m)
        lat, lon = self.to_latlon(x, y)
        return lat, lon, self.origin_alt + self.elevation(s_m)

    # -- summary ---------------------------------------------------------------------------
    @property
    def track_length_text(self) -> str:
        """``TrackLength`` as iRacing writes it, e.g. ``"3.21 km"``."""
        return f"{self.length_m / 1000:.2f} km"

    def corner(self, name: str) -> TrackCorner:
        for c in self.corners:
            if c.name.lower() == name.lower():
                return c
        raise SimError(f"track {self.name}: no corner {name!r}; corners are {', '.join(c.name for c in self.corners)}")

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config,
            "display_name": self.meta.get("display_name", self.name),
            "length_m": round(self.length_m, 3),
            "corners": [c.name for c in self.corners],
            "laid_out_after": self.meta.get("laid_out_after"),
            "file": str(self.path) if self.path else None,
        }


# ---------------------------------------------------------------------------------------
# building a track from its YAML description
# ---------------------------------------------------------------------------------------
def _num(src: object, d: dict[str, Any], key: str, default: float | None = None, positive: bool = False) -> float:
    if key not in d:
        if default is None:
            raise SimError(f"{src}: missing {key!r} in {d}")
        return default
    try:
        v = float(d[key])
    except (TypeError, ValueError):
        raise SimError(f"{src}: {key} must be a number, found {d[key]!r}") from None
    if not math.isfinite(v) or (positive and v <= 0):
        raise SimError(f"{src}: {key} must be a {'positive ' if positive else ''}number, found {d[key]!r}")
    return v


def _element_pieces(src: object, idx: int, el: dict[str, Any], k_prev: float) -> list[Piece]:
    """Pieces of one element; a turn's entry transition starts from the previous curvature."""
    where = f"{src} element {idx}"
    if "straight" in el:
        return [Piece(_num(where, el, "straight", positive=True), 0.0, 0.0, idx)]
    if "turn" not in el:
        raise SimError(f"{where}: expected 'straight: LENGTH' or 'turn: left|right', found {el}")
    direction = str(el["turn"]).lower()
    if direction not in ("left", "right"):
        raise SimError(f"{where}: turn must be 'left' or 'right', found {el['turn']!r}")
    radius = _num(where, el, "radius", positive=True)
    angle = math.radians(_num(where, el, "angle", positive=True))
    entry, exit_ = _num(where, el, "entry", 0.0), _num(where, el, "exit", 0.0)
    if entry < 0 or exit_ < 0:
        raise SimError(f"{where}: entry/exit transition lengths must be >= 0")
    k = (1.0 if direction == "left" else -1.0) / radius
    turned_in_transitions = abs((k_prev + k) / 2 * entry + k / 2 * exit_)
    arc_angle = angle - turned_in_transitions
    if arc_angle <= 0:
        raise SimError(f"{where}: transitions turn {math.degrees(turned_in_transitions):.1f} deg, "
                       f"more than the turn's angle {math.degrees(angle):.1f} deg")
    pieces = []
    if entry > 0:
        pieces.append(Piece(entry, k_prev, k, idx))
    pieces.append(Piece(radius * arc_angle, k, k, idx))
    if exit_ > 0:
        pieces.append(Piece(exit_, k, 0.0, idx))
    return pieces


def build_pieces(src: object, elements: Sequence[dict[str, Any]]) -> list[Piece]:
    """Expand track elements into curvature pieces."""
    if not elements:
        raise SimError(f"{src}: a track needs at least one element")
    pieces: list[Piece] = []
    k_prev = 0.0
    for i, el in enumerate(elements):
        if not isinstance(el, dict):
            raise SimError(f"{src} element {i}: expected a mapping, found {el!r}")
        new = _element_pieces(src, i, el, k_prev)
        pieces.extend(new)
        k_prev = new[-1].k1
    return pieces


def _sample_piece(p: Piece, theta0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sub-step lengths, heading at sub-step midpoints and ends, curvature at ends."""
    n = max(1, math.ceil(p.length_m / (TABLE_STEP_M / 4)))
    h = p.length_m / n
    u_end = np.arange(1, n + 1) * h
    u_mid = u_end - h / 2
    dk = (p.k1 - p.k0) / p.length_m
    th_mid = theta0 + p.k0 * u_mid + dk * u_mid**2 / 2
    th_end = theta0 + p.k0 * u_end + dk * u_end**2 / 2
    return np.full(n, h), th_mid, th_end, p.k0 + dk * u_end


def integrate_pieces(pieces: Sequence[Piece], theta0: float) -> dict[str, np.ndarray]:
    """Fine (TABLE_STEP_M/4) integration of position and heading along the pieces."""
    hs, mids, ends, ks, elem = [], [], [], [], []
    theta = theta0
    for p in pieces:
        h, th_mid, th_end, k_end = _sample_piece(p, theta)
        hs.append(h), mids.append(th_mid), ends.append(th_end), ks.append(k_end)
        elem.append(np.full(len(h), p.element))
        theta = float(th_end[-1])
    h = np.concatenate(hs)
    th_mid = np.concatenate(mids)
    s = np.concatenate([[0.0], np.cumsum(h)])
    x = np.concatenate([[0.0], np.cumsum(h * np.cos(th_mid))])
    y = np.concatenate([[0.0], np.cumsum(h * np.sin(th_mid))])
    th = np.concatenate([[theta0], np.concatenate(ends)])
    k = np.concatenate([[pieces[0].k0], np.concatenate(ks)])
    el = np.concatenate([[pieces[0].element], np.concatenate(elem)])
    return {"s": s, "x": x, "y": y, "heading": th, "curvature": k, "element": el}


def closure_error(pieces: Sequence[Piece], theta0: float = 0.0) -> tuple[float, float, float]:
    """``(dx_m, dy_m, dheading_deg)`` of the end against the start (heading against ±360°)."""
    g = integrate_pieces(pieces, theta0)
    turn = math.degrees(g["heading"][-1] - theta0)
    return float(g["x"][-1]), float(g["y"][-1]), turn - math.copysign(360.0, turn)


def _elevation(src: object, elements: Sequence[dict[str, Any]], pieces: Sequence[Piece],
               s: np.ndarray, element_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Height (m) and grade along ``s``: each element's ``dz`` on a cosine ramp (zero grade at its ends)."""
    lengths = np.zeros(len(elements))
    for p in pieces:
        lengths[p.element] += p.length_m
    starts = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    dz = np.array([_num(f"{src} element {i}", el, "dz", 0.0) for i, el in enumerate(elements)])
    if abs(dz.sum()) > 0.01:
        raise SimError(f"{src}: elevation changes (dz) must sum to 0 around the lap, found {dz.sum():+.2f} m")
    z0 = np.concatenate([[0.0], np.cumsum(dz)[:-1]])
    u = np.clip((s - starts[element_of]) / lengths[element_of], 0.0, 1.0)
    z = z0[element_of] + dz[element_of] * (1 - np.cos(np.pi * u)) / 2
    grade = dz[element_of] * np.pi / (2 * lengths[element_of]) * np.sin(np.pi * u)
    return z, grade


def _corner_extents(src: object, elements: Sequence[dict[str, Any]], pieces: Sequence[Piece]) -> list[TrackCorner]:
    """Corners from elements tagged ``corner: NAME``; consecutive tags of one name form one corner."""
    start = 0.0
    spans: dict[int, tuple[float, float]] = {}
    for p in pieces:
        a, b = spans.get(p.element, (start, start))
        spans[p.element] = (a, b + p.length_m)
        start += p.length_m
    corners: list[TrackCorner] = []
    for i, el in enumerate(elements):
        name = el.get("corner")
        if name is None:
            continue
        name = str(name)
        a, b = spans[i]
        if corners and corners[-1].name == name:
            corners[-1] = TrackCorner(name, corners[-1].start_m, b)
        elif any(c.name == name for c in corners):
            raise SimError(f"{src} element {i}: corner {name!r} appears twice, not in consecutive elements")
        else:
            corners.append(TrackCorner(name, a, b))
    if not corners:
        raise SimError(f"{src}: no element is tagged with 'corner: NAME'")
    return corners


def _pit(src: object, d: Any) -> PitLane:
    if not isinstance(d, dict):
        raise SimError(f"{src}: 'pit' must be a mapping with entry_pct, box_pct, exit_pct")
    vals = {k: _num(f"{src} pit", d, k) for k in ("entry_pct", "box_pct", "exit_pct")}
    for k, v in vals.items():
        if not 0.0 <= v < 1.0:
            raise SimError(f"{src}: pit {k} must be in [0, 1), found {v}")
    if not (vals["exit_pct"] > vals["box_pct"] and vals["entry_pct"] > vals["exit_pct"]):
        raise SimError(f"{src}: pit lane must run entry_pct -> line -> box_pct -> exit_pct, found {vals}")
    side = str(d.get("side", "right")).lower()
    if side not in ("left", "right"):
        raise SimError(f"{src}: pit side must be left or right, found {side!r}")
    return PitLane(vals["entry_pct"], vals["box_pct"], vals["exit_pct"],
                   _num(f"{src} pit", d, "speed_limit_kmh", 60.0, positive=True), side,
                   _num(f"{src} pit", d, "offset_m", 14.0, positive=True))


def _resample(fine: dict[str, np.ndarray], step: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    length = float(fine["s"][-1])
    n = max(2, math.ceil(length / step))
    s = np.linspace(0.0, length, n + 1)
    return s, {k: np.interp(s, fine["s"], v) for k, v in fine.items() if k not in ("s", "element")}


def track_from_dict(d: dict[str, Any], src: object = "<track>", path: Path | None = None) -> Track:
    """Build a :class:`Track` from a parsed track file."""
    if not isinstance(d, dict):
        raise SimError(f"{src}: a track file must be a mapping")
    for key in ("track_name", "config_name", "origin", "elements", "pit"):
        if key not in d:
            raise SimError(f"{src}: missing {key!r}")
    elements = d["elements"]
    if not isinstance(elements, list):
        raise SimError(f"{src}: 'elements' must be a list")
    pieces = build_pieces(src, elements)
    heading_deg = _num(src, d, "start_heading_deg", 90.0)
    theta0 = math.radians(90.0 - heading_deg)
    fine = integrate_pieces(pieces, theta0)
    dx, dy = float(fine["x"][-1]), float(fine["y"][-1])
    turn = math.degrees(fine["heading"][-1] - theta0)
    if abs(abs(turn) - 360.0) > HEADING_TOL_DEG:
        raise SimError(f"{src}: the track does not close: its heading turns {turn:.3f} deg, expected ±360")
    gap = math.hypot(dx, dy)
    if gap > CLOSURE_TOL_M:
        raise SimError(f"{src}: the track does not close: the end is {gap:.2f} m from the start "
                       f"(dx {dx:+.2f}, dy {dy:+.2f}); at most {CLOSURE_TOL_M} m is allowed")
    frac = fine["s"] / fine["s"][-1]
    fine["x"] = fine["x"] - dx * frac
    fine["y"] = fine["y"] - dy * frac
    fine["z"], fine["grade"] = _elevation(src, elements, pieces, fine["s"], fine["element"])
    s, t = _resample(fine, TABLE_STEP_M)
    origin = d["origin"]
    if not isinstance(origin, dict):
        raise SimError(f"{src}: origin must be a mapping with lat, lon, alt_m")
    sectors = [float(v) for v in d.get("sectors", [0.0])]
    if sectors[0] != 0.0 or any(b <= a for a, b in zip(sectors, sectors[1:], strict=False)) or sectors[-1] >= 1.0:
        raise SimError(f"{src}: sectors must start at 0.0 and increase below 1.0, found {sectors}")
    meta = {k: v for k, v in d.items() if k not in ("elements", "pit", "origin", "sectors")}
    return Track(
        name=str(d["track_name"]), config=str(d["config_name"]), length_m=float(s[-1]), pieces=pieces,
        s_m=s, x_m=t["x"], y_m=t["y"], heading_rad=t["heading"], curvature_1pm=t["curvature"], z_m=t["z"],
        grade=t["grade"], origin_lat=_num(src, origin, "lat"), origin_lon=_num(src, origin, "lon"),
        origin_alt=_num(src, origin, "alt_m", 0.0),
        corners=_corner_extents(src, elements, pieces), pit=_pit(src, d["pit"]), sectors=sectors, meta=meta,
        closure_gap_m=gap, path=path, corner_lead_m=_num(src, d, "corner_lead_m", 30.0),
    )


def _read_yaml(path: Path) -> Any:
    return read_yaml(path, SimError)


def _track_files(directory: Path = TRACKS_DIR) -> dict[str, Path]:
    if not directory.is_dir():
        return {}
    return {p.name[: -len(".yaml")]: p for p in sorted(directory.glob("*.yaml")) if not p.name.endswith(CORNER_SUFFIX)}


def list_tracks() -> list[str]:
    """Names of the shipped tracks (``pitboxsim_*``)."""
    return list(_track_files())


@functools.lru_cache(maxsize=16)
def _load_track_cached(path_str: str) -> Track:
    path = Path(path_str)
    return track_from_dict(_read_yaml(path), src=path, path=path)


def load_track(name: str) -> Track:
    """Load a shipped track by name (e.g. ``"pitboxsim_demo"``) or a track file by path."""
    files = _track_files()
    key = str(name)
    if key in files:
        return _load_track_cached(str(files[key]))
    lower = {k.lower(): v for k, v in files.items()}
    if key.lower() in lower:
        return _load_track_cached(str(lower[key.lower()]))
    p = Path(key)
    if p.suffix == ".yaml" and p.is_file():
        return _load_track_cached(str(p.resolve()))
    raise SimError(f"unknown track {name!r}; tracks are {', '.join(files) or '(none installed)'}")
