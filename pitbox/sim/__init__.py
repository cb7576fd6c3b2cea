"""The lap simulator: tracks as data, a point-mass car, a driver with noise and injected
faults, written as genuine ``.ibt`` files with their ground truth beside them.

Public API::

    simulate_session(track="pitboxsim_demo", laps=8, faults=[...], seed=0, out=path) -> SimResult
    simulate_to_channels(track=..., laps=..., faults=..., seed=...) -> SimSession
    load_track(name) -> Track;  list_tracks() -> list[str]
    load_corner_file(track_name, config) -> CornerFile | None   (from :mod:`pitbox.tracks`)

Names load on first use (``lazy_loader``): ``pitbox simulate --help`` loads no numpy.
"""

from __future__ import annotations

from importlib import import_module

import lazy_loader as _lazy

_getattr, _dir, _names = _lazy.attach(__name__, submod_attrs={
    "api": ["SimResult", "SimSession", "read_truth", "simulate_session", "simulate_to_channels", "truth_paths"],
    "car": ["Car"],
    "driver": ["DriverSpec"],
    "errors": ["SimError"],
    "faults": ["FAULTS", "Fault", "parse_fault", "parse_faults"],
    "tracks": ["Track", "list_tracks", "load_track"],
})
#: corner files are track data, kept in :mod:`pitbox.tracks`; re-exported here
_TRACK_FILES = ("CornerFile", "CornerRange", "load_corner_file", "read_corner_file")


def __getattr__(name: str) -> object:
    if name in _TRACK_FILES:
        value = getattr(import_module("pitbox.tracks"), name)
        globals()[name] = value
        return value
    return _getattr(name)


def __dir__() -> list[str]:
    return list(__all__)


__all__ = sorted({*_names, *_TRACK_FILES})
