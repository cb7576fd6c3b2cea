"""Reading the few channels the live coach needs from one frame, cheaply.

A frame's values are a dict (channel -> value, as the stream's JSON gives them) or the
recorder's decoded row (a numpy structured scalar, ``np.void``). Indexing an ``np.void``
field costs about 1 µs and a float[6] field several; one :class:`struct.Struct` compiled
per row layout reads all of them in about 2 µs. Array channels give their last element
(the value at the tick's time: :func:`pitbox.catalogue.scalar_view`'s rule).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from pitbox.analysis.channels import TRACE_CHANNELS

#: Channels the per-tick core reads.
CORE_CHANNELS = (
    "SessionTime", "Lap", "LapDistPct", "LapDist", "Speed", "FuelLevel", "OnPitRoad", "PlayerTrackSurface",
    "PlayerCarInPitStall", "IsOnTrack", "SessionNum", "SessionUniqueID", "SessionTimeRemain",
    "SessionLapsRemainEx", "PlayerCarMyIncidentCount",
)
#: Channels the after-lap analysis reads (the store's lap channels and the analysis' traces).
ANALYSIS_CHANNELS = (
    "SessionTime", "SessionTick", "SessionNum", "Lap", "LapDistPct", "LapLastLapTime", "OnPitRoad",
    "PlayerTrackSurface", "PlayerCarMyIncidentCount", "Speed", "LapDist", *TRACE_CHANNELS,
)
#: Everything the coach keeps per tick, in this order.
FIELDS: tuple[str, ...] = tuple(dict.fromkeys((*CORE_CHANNELS, *ANALYSIS_CHANNELS)))
#: Tyre channels iRacing updates in live memory only while the car is in its pit stall.
TYRE_CHANNELS: tuple[str, ...] = tuple(
    f"{w}{k}" for w in ("LF", "RF", "LR", "RR")
    for k in ("tempCL", "tempCM", "tempCR", "tempL", "tempM", "tempR", "pressure", "coldPressure",
              "wearL", "wearM", "wearR"))

_STRUCT = {"f": "f", "d": "d", "i": "i", "u": "I", "b": "?"}
_CATALOGUE_DTYPE = {"float": "<f4", "double": "<f8", "int": "<i4", "bitfield": "<u4", "bool": "?", "char": "u1"}


def _catalogue_dtype(name: str) -> np.dtype:
    try:
        from pitbox.catalogue import channel_info

        return np.dtype(_CATALOGUE_DTYPE.get(channel_info(name).type, "<f8"))
    except Exception:  # noqa: BLE001 - an uncatalogued channel keeps full precision
        return np.dtype("<f8")


def _last(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, (list, tuple)):
        return _last(value[-1]) if value else math.nan
    if isinstance(value, np.ndarray):
        return value.reshape(-1)[-1].item() if value.size else math.nan
    if isinstance(value, np.generic):
        return value.item()
    return value


class FrameReader:
    """Reads :data:`FIELDS` (those a frame has) into one tuple per frame.

    The layout (which channels, their types) is fixed by the first frame after
    :meth:`reset`: ``names`` are the channels present, ``dtype`` the structured dtype that
    keeps them (each channel in the type iRacing gives it: the recorder's row type, else
    the channel catalogue's). Later frames of another layout are read into the same names
    (absent channels become NaN)."""

    def __init__(self, fields: Sequence[str] = FIELDS):
        self.fields = tuple(fields)
        self.reset()

    def reset(self) -> None:
        self.names: tuple[str, ...] | None = None
        self.dtype: np.dtype | None = None
        self.index: dict[str, int] = {}
        self._key: Any = None
        self._read: Any = None

    def read(self, values: Any) -> tuple:
        key = values.dtype if isinstance(values, np.void) else None
        if self._read is None or key is not self._key:
            self._compile(values, key)
        return self._read(values)

    def _compile(self, values: Any, key: Any) -> None:
        if self.names is None:
            if key is not None:
                fields = values.dtype.fields or {}
                self.names = tuple(n for n in self.fields if n in fields)
                self.dtype = np.dtype([(n, fields[n][0].base.newbyteorder("<") if fields[n][0].base.kind != "b"
                                        else np.dtype("?")) for n in self.names])
            else:
                self.names = tuple(n for n in self.fields if n in values)
                self.dtype = np.dtype([(n, _catalogue_dtype(n)) for n in self.names])
            self.index = {n: i for i, n in enumerate(self.names)}
        self._key = key
        names = self.names
        if key is None:
            def read_mapping(v: Mapping[str, Any], names: tuple[str, ...] = names) -> tuple:
                get = v.get
                return tuple(_last(get(n)) for n in names)
            self._read = read_mapping
            return
        fields = values.dtype.fields or {}
        spots = []
        for i, n in enumerate(names):
            if n not in fields:
                continue
            ft, off = fields[n][0], fields[n][1]
            base = ft.base
            count = int(np.prod(ft.shape)) if ft.shape else 1
            code = _STRUCT.get(base.kind if base.kind != "f" else ("d" if base.itemsize == 8 else "f"))
            if base.kind == "i" and base.itemsize != 4 or base.kind == "u" and base.itemsize != 4 or code is None:
                continue  # not an iRacing type: read it the slow way
            spots.append((off + (count - 1) * base.itemsize, code, base.itemsize, i))
        spots.sort()
        fmt, pos, order = "<", 0, []
        for off, code, size, i in spots:
            if off < pos:
                continue
            fmt += (f"{off - pos}x" if off > pos else "") + code
            pos = off + size
            order.append(i)
        unpack = struct.Struct(fmt).unpack_from
        missing = len(order)
        where = {i: k for k, i in enumerate(order)}
        slow = [(i, n) for i, n in enumerate(names) if i not in where and n in fields]
        pick = itemgetter(*[where.get(i, missing) for i in range(len(names))]) if names else None
        nan_tail = (math.nan,)

        def read_row(v: np.void) -> tuple:
            got = unpack(v) + nan_tail
            out = pick(got) if pick is not None else ()
            if len(names) == 1:
                out = (out,)
            if slow:
                out = list(out)
                for i, n in slow:
                    out[i] = _last(v[n])
                out = tuple(out)
            return out

        self._read = read_row


def read_channels(values: Any, names: Sequence[str]) -> dict[str, Any]:
    """The given channels a frame has (last element of arrays), for the rare reads (tyres)."""
    if isinstance(values, np.void):
        fields = values.dtype.fields or {}
        return {n: _last(values[n]) for n in names if n in fields}
    return {n: _last(values[n]) for n in names if n in values}
