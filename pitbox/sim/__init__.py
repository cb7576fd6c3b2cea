"""The lap simulator: tracks as data, a point-mass car, a driver with noise and injected
faults, written as genuine ``.ibt`` files with their ground truth beside them.

Public API::

    simulate_session(track="pitboxsim_demo", laps=8, faults=[...], seed=0, out=path) -> SimResult
    simulate_to_channels(track=..., laps=..., faults=..., seed=...) -> SimSession
    load_track(name) -> Track;  list_tracks() -> list[str]
    load_corner_file(track_name, config) -> CornerFile | None   (from :mod:`pitbox.tracks`)
"""

from pitbox.sim.api import (
    SimResult,
    SimSession,
    read_truth,
    simulate_session,
    simulate_to_channels,
    truth_paths,
)
from pitbox.sim.car import Car
from pitbox.sim.driver import DriverSpec
from pitbox.sim.errors import SimError
from pitbox.sim.faults import FAULTS, Fault, parse_fault, parse_faults
from pitbox.sim.tracks import Track, list_tracks, load_track
from pitbox.tracks import CornerFile, CornerRange, load_corner_file, read_corner_file

__all__ = [
    "FAULTS", "Car", "CornerFile", "CornerRange", "DriverSpec", "Fault", "SimError", "SimResult", "SimSession",
    "Track", "list_tracks", "load_corner_file", "load_track", "parse_fault", "parse_faults", "read_corner_file",
    "read_truth", "simulate_session", "simulate_to_channels", "truth_paths",
]
