"""The live variable set iRacing would publish for a source file, from the channel catalogue.

Rule (see ``docs/emulator.md``)::

    live(source) = source channels that are not disk-only
                 + live-only channels (CarIdx*, Replay*, Cam*, ...), except per-car sub-samples
                 + X_ST sub-sample channels of the catalogue for every X the live row holds
                 with the catalogue's float[6] channels widened to 6 sub-samples

in the catalogue's channel order (iRacing's order), packed without padding as iRacing packs
its live rows. For the 2024 ``.ibt`` this reproduces the real 2024 live dump's 323 variable
headers byte for byte (names, types, counts, offsets, ``buf_len`` 8154).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import pandas as pd

from pitbox.catalogue import SUBSAMPLES, load_catalogue
from pitbox.catalogue_build import merge_orders
from pitbox.ibt.layout import NUMPY_TYPES, VarHeader, VarType

log = logging.getLogger(__name__)

_TYPES = {t.name.lower(): t for t in VarType}

#: How a live channel gets its values.
COPY = "copy"  #: the source channel as it is
WIDEN = "widen"  #: a scalar source channel spread over 6 sub-samples (float[6] live)
SUBSAMPLE = "subsample"  #: ``X_ST`` built from the source's scalar ``X``
SYNTH = "synth"  #: live-only: generated (CarIdx* field, replay and camera state, defaults)


@dataclass(frozen=True)
class LiveChannel:
    """One variable of the live row and where its values come from."""

    var: VarHeader  #: the live variable header (offset inside the live row)
    rule: str  #: COPY, WIDEN, SUBSAMPLE or SYNTH
    source: str | None  #: source channel name (COPY, WIDEN, SUBSAMPLE) or None (SYNTH)


@dataclass(frozen=True)
class LiveLayout:
    """The live variable headers for one source and the row length."""

    channels: tuple[LiveChannel, ...]
    buf_len: int

    @property
    def variables(self) -> list[VarHeader]:
        return [c.var for c in self.channels]

    @property
    def names(self) -> list[str]:
        return [c.var.name for c in self.channels]

    def signature(self) -> tuple:
        """Equal for two sources that iRacing would publish with the same variable headers."""
        return tuple((v.name, int(v.type), v.count, v.offset) for v in self.variables), self.buf_len


def _catalogue_var(name: str, row: pd.Series) -> VarHeader:
    return VarHeader(name, _TYPES[str(row["type"])], 0, int(row["count_live"]), bool(row["count_as_time"]),
                     str(row["description"]), str(row["unit"]))


def _from_source(v: VarHeader, cat: pd.DataFrame) -> LiveChannel | None:
    if v.name not in cat.index:
        log.info("channel %s is not in the catalogue: published live as it is", v.name)
        return LiveChannel(v, COPY, v.name)
    row = cat.loc[v.name]
    if row["availability"] == "disk":
        return None
    if bool(row["live_float6"]) and v.count == 1:
        return LiveChannel(replace(v, count=SUBSAMPLES, count_as_time=True), WIDEN, v.name)
    return LiveChannel(v, COPY, v.name)


def _live_only(cat: pd.DataFrame, have: set[str]) -> list[LiveChannel]:
    out = []
    for name, row in cat.iterrows():
        if name in have or pd.isna(row["count_live"]):
            continue
        name = str(name)
        if name.endswith("_ST"):
            if name[:-3] in have and row["availability"] in ("live", "both"):
                out.append(LiveChannel(_catalogue_var(name, row), SUBSAMPLE, name[:-3]))
        elif row["availability"] == "live":
            out.append(LiveChannel(_catalogue_var(name, row), SYNTH, None))
    return out


def pack(variables: list[VarHeader]) -> tuple[list[VarHeader], int]:
    """Offsets one after another with no padding, as iRacing packs live rows."""
    out, offset = [], 0
    for v in variables:
        out.append(replace(v, offset=offset))
        offset += NUMPY_TYPES[v.type].itemsize * v.count
    return out, offset


def live_layout(source_vars: list[VarHeader], catalogue: pd.DataFrame | None = None) -> LiveLayout:
    """The live variable set and row layout for a source's variables (see module docstring)."""
    cat = load_catalogue() if catalogue is None else catalogue
    kept = [c for v in source_vars if (c := _from_source(v, cat)) is not None]
    have = {c.var.name for c in kept}
    chans = {c.var.name: c for c in kept + _live_only(cat, have)}
    order = merge_orders([list(cat.index), [v.name for v in source_vars]])
    ordered = [chans[n] for n in order if n in chans]
    packed, buf_len = pack([c.var for c in ordered])
    return LiveLayout(tuple(replace(c, var=v) for c, v in zip(ordered, packed, strict=True)), buf_len)
