"""Channels the analysis uses, and the one rule that turns an array channel into a scalar.

Some channels are scalars in one iRacing build and float[6] (360 Hz sub-samples) in
another; the analysis never assumes either. :func:`as_scalar` applies the project's rule,
:func:`pitbox.catalogue.scalar_view`.
"""

from __future__ import annotations

import numpy as np

#: Channels resampled onto the distance grid when present (units as iRacing writes them).
TRACE_CHANNELS = (
    "Speed",  # m/s
    "Throttle",  # 0-1
    "Brake",  # 0-1
    "Clutch",  # 0-1
    "SteeringWheelAngle",  # rad
    "Gear",  # int
    "RPM",  # rev/min
    "LatAccel",  # m/s^2
    "LongAccel",  # m/s^2
    "YawRate",  # rad/s
    "Yaw",  # rad
    "Lat",  # deg
    "Lon",  # deg
    "LFspeed", "RFspeed", "LRspeed", "RRspeed",  # m/s
    "BrakeABSactive",  # bool
    "FuelLevel",  # l
    "LapDistPct",  # 0-1
)
WHEEL_SPEEDS = ("LFspeed", "RFspeed", "LRspeed", "RRspeed")


def as_scalar(values: np.ndarray, name: str) -> np.ndarray:
    """One value per row: 1-D channels as they are, ``(rows, n)`` arrays reduced by the
    catalogue's rule (:func:`pitbox.catalogue.scalar_view`)."""
    values = np.asarray(values)
    if values.ndim == 1:
        return values
    from pitbox.catalogue import scalar_view

    return np.asarray(scalar_view(values, name))
