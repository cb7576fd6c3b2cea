"""Corner files: a track's corner names and boundaries, as data any user can write.

A corner file (``<anything>.corners.yaml``) names corners by ``LapDistPct`` range and is keyed
by ``track_name`` and ``track_config`` exactly as iRacing writes ``WeekendInfo.TrackName`` and
``TrackConfigName``, so the same format serves real and simulated tracks::

    track_name: spielberg gp
    track_config: Grand Prix
    source: user                # "user" or "simulated" (written by the lap simulator)
    covers_lap: false           # true: the ranges tile the whole lap (each is a corner's segment)
    corners:
      - {name: T1, start_pct: 0.050, end_pct: 0.120}                  # end < start wraps over the line
      - {name: T3, start_pct: 0.280, end_pct: 0.330, apex_pct: 0.301, brake_pct: 0.270}

Files are looked up in the folders given, then in ``PITBOX_TRACKS`` (folders separated by
``os.pathsep``), then in the folder PitBox ships (``pitbox/data/tracks``). This module is the
one place that reads and writes the format: the analysis uses it to name corners, the lap
simulator to write the files of its own tracks. It imports neither.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pitbox.errors import PitboxError, TrackFileError

log = logging.getLogger(__name__)

#: Folder of the corner (and simulated track) files that ship with PitBox.
TRACKS_DIR = Path(__file__).resolve().parent / "data" / "tracks"
CORNER_SUFFIX = ".corners.yaml"
#: Environment variable with the user's folders of corner files (``os.pathsep``-separated).
TRACKS_ENV = "PITBOX_TRACKS"


@dataclass(frozen=True)
class CornerRange:
    """A named corner by LapDistPct (0-1); ``start_pct > end_pct`` wraps over the line."""

    name: str
    start_pct: float
    end_pct: float
    apex_pct: float | None = None
    brake_pct: float | None = None

    def contains(self, pct: np.ndarray | float) -> np.ndarray:
        pct = np.asarray(pct, dtype=float)
        if self.start_pct <= self.end_pct:
            return (pct >= self.start_pct) & (pct < self.end_pct)
        return (pct >= self.start_pct) | (pct < self.end_pct)


@dataclass
class CornerFile:
    """Corner names of one track configuration (simulated or real)."""

    track_name: str
    track_config: str
    corners: list[CornerRange]
    source: str = "user"
    covers_lap: bool = False
    path: Path | None = None

    def names(self) -> list[str]:
        return [c.name for c in self.corners]

    def corner_at(self, pct: np.ndarray | float) -> np.ndarray:
        """Corner name at each LapDistPct (``""`` outside every corner)."""
        pct = np.atleast_1d(np.asarray(pct, dtype=float))
        out = np.full(pct.shape, "", dtype=object)
        for c in self.corners:
            out[c.contains(pct) & (out == "")] = c.name
        return out

    def get(self, name: str) -> CornerRange:
        """A corner by name (case-insensitive); :class:`TrackFileError` when there is none."""
        for c in self.corners:
            if c.name.lower() == name.lower():
                return c
        raise TrackFileError(f"{self.path or self.track_name}: no corner {name!r}; "
                             f"corners are {', '.join(self.names())}")


def read_yaml(path: Path, error: type[PitboxError] = TrackFileError) -> Any:
    """A track data file (corner file, simulated track) parsed; ``error`` naming the file when
    it cannot be read or is not YAML."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None


def _pct(src: object, c: dict[str, Any], key: str, required: bool = True) -> float | None:
    if c.get(key) is None:
        if required:
            raise TrackFileError(f"{src}: corner {c.get('name', '?')!r} has no {key}")
        return None
    try:
        v = float(c[key])
    except (TypeError, ValueError):
        raise TrackFileError(f"{src}: corner {c.get('name', '?')!r} {key} must be a number, found {c[key]!r}") from None
    if not 0.0 <= v <= 1.0:
        raise TrackFileError(f"{src}: corner {c.get('name', '?')!r} {key} must be in [0, 1], found {v}")
    return v % 1.0


def corner_file_from_dict(d: Any, src: object = "<corners>", path: Path | None = None) -> CornerFile:
    """Validate a parsed corner file (:class:`TrackFileError` naming ``src`` and the field)."""
    if not isinstance(d, dict) or "track_name" not in d or "corners" not in d:
        raise TrackFileError(f"{src}: a corner file needs track_name, track_config and a corners list")
    raw = d["corners"]
    if not isinstance(raw, list) or not raw:
        raise TrackFileError(f"{src}: corners must be a non-empty list")
    corners = []
    for c in raw:
        if not isinstance(c, dict) or "name" not in c:
            raise TrackFileError(f"{src}: each corner needs a name, start_pct and end_pct, found {c!r}")
        corners.append(CornerRange(str(c["name"]), _pct(src, c, "start_pct"), _pct(src, c, "end_pct"),
                                   _pct(src, c, "apex_pct", False), _pct(src, c, "brake_pct", False)))
    names = [c.name for c in corners]
    if len(set(n.lower() for n in names)) != len(names):
        raise TrackFileError(f"{src}: corner names must be unique, found {names}")
    cf = CornerFile(str(d["track_name"]), str(d.get("track_config", "")), corners,
                    str(d.get("source", "user")), bool(d.get("covers_lap", False)), path)
    if cf.covers_lap:
        for a, b in zip(corners, corners[1:] + corners[:1], strict=True):
            if abs(a.end_pct - b.start_pct) > 1e-9:
                raise TrackFileError(f"{src}: covers_lap is set but corner {a.name} ends at {a.end_pct} "
                                     f"and {b.name} starts at {b.start_pct}")
    return cf


def read_corner_file(path: str | os.PathLike[str]) -> CornerFile:
    """Read one corner file."""
    path = Path(path)
    return corner_file_from_dict(read_yaml(path), src=path, path=path)


def corner_dirs(search_dirs: Sequence[str | os.PathLike[str]] | None = None) -> list[Path]:
    """Where corner files are looked up, first first: ``search_dirs``, ``PITBOX_TRACKS``, the shipped folder."""
    env = [p for p in os.environ.get(TRACKS_ENV, "").split(os.pathsep) if p]
    return [Path(p) for p in [*(search_dirs or []), *env]] + [TRACKS_DIR]


def _corner_files(dirs: Iterable[Path]) -> Iterable[Path]:
    for d in dirs:
        if d.is_dir():
            yield from sorted(d.glob("*" + CORNER_SUFFIX))


def load_corner_file(track_name: str, config: str = "",
                     search_dirs: Sequence[str | os.PathLike[str]] | None = None) -> CornerFile | None:
    """The corner file for ``WeekendInfo.TrackName``/``TrackConfigName`` as iRacing writes them.

    Looks in :func:`corner_dirs` in order; an exact match of both keys wins over a
    case-insensitive one. Returns ``None`` when no file names this track (a normal case for
    real tracks); raises :class:`TrackFileError` for a malformed file. Parsed files are
    cached until one of them changes.
    """
    files = list(_corner_files(corner_dirs(search_dirs)))
    stamp = tuple((str(f), f.stat().st_mtime_ns) for f in files)
    return _load_corner_file(str(track_name), str(config or ""), stamp)


@functools.lru_cache(maxsize=32)
def _load_corner_file(track_name: str, config: str, stamp: tuple[tuple[str, int], ...]) -> CornerFile | None:
    loose = None
    for name_s, _ in stamp:
        path = Path(name_s)
        d = read_yaml(path)
        if not isinstance(d, dict):
            raise TrackFileError(f"{path}: a corner file must be a mapping with track_name, track_config "
                                 f"and corners, found {type(d).__name__}")
        name, conf = str(d.get("track_name", "")), str(d.get("track_config", ""))
        if name == track_name and conf == config:
            return corner_file_from_dict(d, src=path, path=path)
        if loose is None and name.lower() == track_name.lower() and conf.lower() == config.lower():
            loose = (d, path)
    if loose is not None:
        return corner_file_from_dict(loose[0], src=loose[1], path=loose[1])
    return None


def write_corner_file(path: str | os.PathLike[str], cf: CornerFile, header: str = "") -> Path:
    """Write a corner file (pct values rounded to 6 decimals)."""
    path = Path(path)
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"track_name: {cf.track_name}", f"track_config: {cf.track_config}", f"source: {cf.source}",
              f"covers_lap: {'true' if cf.covers_lap else 'false'}", "corners:"]
    for c in cf.corners:
        extra = "".join(f", {k}: {v:.6f}" for k, v in (("apex_pct", c.apex_pct), ("brake_pct", c.brake_pct))
                        if v is not None)
        lines.append(f"  - {{name: {c.name}, start_pct: {c.start_pct:.6f}, end_pct: {c.end_pct:.6f}{extra}}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


__all__ = ["CORNER_SUFFIX", "TRACKS_DIR", "TRACKS_ENV", "CornerFile", "CornerRange", "corner_dirs",
           "corner_file_from_dict", "load_corner_file", "read_corner_file", "read_yaml", "write_corner_file"]
