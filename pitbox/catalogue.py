"""The channel catalogue: every iRacing channel we know, declared once, as data.

The table lives in ``pitbox/data/channels.csv`` and is regenerated from the real files by
``python -m pitbox.catalogue_build FOLDER`` (see ``docs/catalogue.md``). Columns:

=================  ==========================================================================
``name``           channel name as iRacing writes it (the DataFrame index)
``unit``           unit string as iRacing writes it (``%`` channels are fractions 0–1)
``description``    iRacing's description
``type``           ``char``, ``bool``, ``int``, ``bitfield``, ``float`` or ``double``
``count_disk``     elements per row in the newest ``.ibt`` that has it (<NA>: never on disk)
``count_live``     elements per row in the newest live dump that has it (<NA>: never live)
``availability``   ``disk`` (only in ``.ibt``), ``live`` (only in live memory) or ``both``
``live_float6``    scalar on disk but float[6] (360 Hz sub-samples) live
``interpolation``  ``continuous``, ``cyclic`` (continuous, wraps: lap fraction, angles) or
                   ``discrete`` (hold the previous value; never interpolate)
``count_as_time``  iRacing's ``count_as_time`` flag (sub-samples in time) in the newest build
``evidence``       ``reference`` (newest ``.ibt`` vs newest live dump), ``observed`` (older
                   files), ``analogy`` (like its siblings on other corners)
``builds``         iRacing builds it was seen in, oldest first (``;``-separated)
``files``          real files it was seen in (``;``-separated)
=================  ==========================================================================

The one rule for a scalar view of a sub-sampled channel is :func:`scalar_view`: the last of
the 6 sub-samples, which is the value at the tick time and exactly what iRacing writes to
the scalar channel (checked on the real files, see ``docs/catalogue.md``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from pitbox.errors import PitboxError

CSV_NAME = "channels.csv"
SUBSAMPLES = 6  #: 360 Hz sub-samples per 60 Hz tick

_DTYPES = {
    "name": "string", "unit": "string", "description": "string", "type": "category",
    "count_disk": "Int64", "count_live": "Int64", "availability": "category", "live_float6": "bool",
    "interpolation": "category", "count_as_time": "bool", "evidence": "category",
    "builds": "string", "files": "string",
}


class UnknownChannel(PitboxError, KeyError):
    """A channel name the catalogue does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ChannelShapeError(PitboxError, ValueError):
    """An array whose shape does not fit the channel rule applied to it."""


@dataclass(frozen=True)
class ChannelInfo:
    """One catalogue row. Counts are None where the channel was never seen on that side."""

    name: str
    unit: str
    description: str
    type: str
    count_disk: int | None
    count_live: int | None
    availability: str
    live_float6: bool
    interpolation: str
    count_as_time: bool
    evidence: str
    builds: tuple[str, ...]
    files: tuple[str, ...]

    @property
    def on_disk(self) -> bool:
        return self.availability in ("disk", "both")

    @property
    def live(self) -> bool:
        return self.availability in ("live", "both")

    @property
    def discrete(self) -> bool:
        return self.interpolation == "discrete"


@functools.lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    with resources.files("pitbox").joinpath("data", CSV_NAME).open("rb") as f:
        df = pd.read_csv(f, dtype={k: v for k, v in _DTYPES.items() if v not in ("bool", "Int64")},
                         keep_default_na=False, na_values={"count_disk": [""], "count_live": [""]})
    for col in ("count_disk", "count_live"):
        df[col] = df[col].astype("Int64")
    for col in ("live_float6", "count_as_time"):
        df[col] = df[col].map({"true": True, "false": False, True: True, False: False}).astype(bool)
    df = df.set_index("name")
    if not df.index.is_unique:
        raise PitboxError(f"pitbox/data/{CSV_NAME}: channel names must be unique; duplicated: "
                          f"{sorted(set(df.index[df.index.duplicated()]))}")
    return df


def load_catalogue() -> pd.DataFrame:
    """The catalogue, one row per channel indexed by ``name``, in iRacing's channel order.

    Parsed once and cached; each call returns a copy, so callers may modify it.
    """
    return _table().copy()


def channel_info(name: str) -> ChannelInfo:
    """The catalogue row of one channel; :class:`UnknownChannel` when it is not catalogued."""
    table = _table()
    if name not in table.index:
        raise UnknownChannel(f"channel {name!r}: not in the channel catalogue ({len(table)} channels, "
                             f"pitbox/data/{CSV_NAME})")
    r = table.loc[name]
    return ChannelInfo(
        name=name, unit=str(r["unit"]), description=str(r["description"]), type=str(r["type"]),
        count_disk=None if pd.isna(r["count_disk"]) else int(r["count_disk"]),
        count_live=None if pd.isna(r["count_live"]) else int(r["count_live"]),
        availability=str(r["availability"]), live_float6=bool(r["live_float6"]),
        interpolation=str(r["interpolation"]), count_as_time=bool(r["count_as_time"]),
        evidence=str(r["evidence"]),
        builds=tuple(str(r["builds"]).split(";")), files=tuple(str(r["files"]).split(";")),
    )


def channels_where(availability: str | None = None, live_float6: bool | None = None) -> list[str]:
    """Channel names in catalogue order, filtered by availability and/or the float[6] flag."""
    t = _table()
    mask = np.ones(len(t), dtype=bool)
    if availability is not None:
        mask &= (t["availability"] == availability).to_numpy()
    if live_float6 is not None:
        mask &= (t["live_float6"] == live_float6).to_numpy()
    return list(t.index[mask])


def is_subsampled(name: str) -> bool:
    """True for channels that carry 6 sub-samples per tick in some build (``*_ST``, float[6] live)."""
    if name.endswith("_ST"):
        return True
    t = _table()
    if name not in t.index:
        return False
    r = t.loc[name]
    return bool(r["live_float6"]) or (not pd.isna(r["count_live"]) and int(r["count_live"]) == SUBSAMPLES)


def scalar_view(values: np.ndarray, name: str | None = None) -> np.ndarray:
    """One value per tick from a channel that may hold 6 sub-samples per tick.

    ``values`` is ``(rows, 6)`` (float[6] live channels, ``*_ST`` channels) or ``(rows,)``
    (already scalar: returned as is). The rule: the **last** sub-sample, the value at the
    tick time, which is what iRacing writes to the scalar channel of the same name
    (``SteeringWheelTorque == SteeringWheelTorque_ST[:, 5]`` on every row of the 2023 and
    2024 ``.ibt`` files; ``LatAccel == LatAccel_ST[5]`` in the 2021 live dump).

    For one tick's 6 values (as pyirsdk's ``ir[name]`` returns them) pass ``values[None]``.
    ``name`` only improves the error message. Returns a view where possible, shape ``(rows,)``.
    """
    arr = np.asarray(values)
    label = f"channel {name!r}" if name else "values"
    if arr.ndim == 1:
        return arr
    if arr.ndim == 2 and arr.shape[1] in (1, SUBSAMPLES):
        return arr[:, -1]
    raise ChannelShapeError(f"{label}: expected shape (rows,) or (rows, {SUBSAMPLES}) for a scalar view, "
                     f"got {arr.shape}")
