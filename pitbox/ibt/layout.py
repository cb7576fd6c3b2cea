"""iRacing's binary telemetry layout, declared as numpy structured dtypes.

The same layout serves the ``.ibt`` disk file and the live shared-memory map
(``Local\\IRSDKMemMapFileName``); see ``irsdk_defines.h`` in iRacing's SDK.

========================  ======  ====================================================
block                     bytes   notes
========================  ======  ====================================================
header                    112     10 int32, 2 pad, 4 var buffers (tick_count, offset, 2 pad)
disk sub-header           32      ``.ibt`` only, at byte 112
variable headers          144 ea  type, offset, count, count_as_time, name, desc, unit
session info (YAML)       n       Windows-1252 unless it starts with ``Encoding: UTF8``
rows                      buf_len fixed length; ``.ibt``: record_count rows from var_buf[0]
========================  ======  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import pyarrow as pa

HEADER_SIZE = 112
DISK_SUB_HEADER_SIZE = 32
VAR_HEADER_SIZE = 144
MAX_BUFS = 4
LIVE_MAP_SIZE = 1164 * 1024  #: pyirsdk's MEMMAPFILESIZE for current builds
STATUS_CONNECTED = 1


class VarType(IntEnum):
    """``irsdk_VarType``."""

    CHAR = 0
    BOOL = 1
    INT = 2
    BITFIELD = 3
    FLOAT = 4
    DOUBLE = 5


#: numpy dtype of one element of each variable type (little endian, as iRacing writes).
NUMPY_TYPES: dict[VarType, np.dtype] = {
    VarType.CHAR: np.dtype("S1"),
    VarType.BOOL: np.dtype("?"),
    VarType.INT: np.dtype("<i4"),
    VarType.BITFIELD: np.dtype("<u4"),
    VarType.FLOAT: np.dtype("<f4"),
    VarType.DOUBLE: np.dtype("<f8"),
}

#: Arrow type of one element of each variable type.
ARROW_TYPES: dict[VarType, pa.DataType] = {
    VarType.CHAR: pa.binary(1),
    VarType.BOOL: pa.bool_(),
    VarType.INT: pa.int32(),
    VarType.BITFIELD: pa.uint32(),
    VarType.FLOAT: pa.float32(),
    VarType.DOUBLE: pa.float64(),
}

VAR_BUF_DTYPE = np.dtype([("tick_count", "<i4"), ("buf_offset", "<i4"), ("pad", "<i4", (2,))])

HEADER_DTYPE = np.dtype(
    [
        ("ver", "<i4"),
        ("status", "<i4"),
        ("tick_rate", "<i4"),
        ("session_info_update", "<i4"),
        ("session_info_len", "<i4"),
        ("session_info_offset", "<i4"),
        ("num_vars", "<i4"),
        ("var_header_offset", "<i4"),
        ("num_buf", "<i4"),
        ("buf_len", "<i4"),
        ("pad1", "<i4", (2,)),
        ("var_buf", VAR_BUF_DTYPE, (MAX_BUFS,)),
    ]
)

DISK_SUB_HEADER_DTYPE = np.dtype(
    [
        ("session_start_date", "<i8"),
        ("session_start_time", "<f8"),
        ("session_end_time", "<f8"),
        ("session_lap_count", "<i4"),
        ("session_record_count", "<i4"),
    ]
)

VAR_HEADER_DTYPE = np.dtype(
    [
        ("type", "<i4"),
        ("offset", "<i4"),
        ("count", "<i4"),
        ("count_as_time", "?"),
        ("pad", "V3"),
        ("name", "S32"),
        ("desc", "S64"),
        ("unit", "S32"),
    ]
)

assert HEADER_DTYPE.itemsize == HEADER_SIZE
assert DISK_SUB_HEADER_DTYPE.itemsize == DISK_SUB_HEADER_SIZE
assert VAR_HEADER_DTYPE.itemsize == VAR_HEADER_SIZE


@dataclass(frozen=True)
class VarHeader:
    """One telemetry variable (channel) as iRacing declares it.

    ``offset`` is the byte offset inside one row; ``count`` > 1 means a fixed-size array
    (``CarIdx*`` arrays of 64, ``*_ST`` 360 Hz sub-samples of 6).
    """

    name: str
    type: VarType
    offset: int
    count: int = 1
    count_as_time: bool = False
    desc: str = ""
    unit: str = ""

    @property
    def dtype(self) -> np.dtype:
        """numpy dtype of one element."""
        return NUMPY_TYPES[self.type]

    @property
    def nbytes(self) -> int:
        """Bytes the variable takes in a row."""
        return self.dtype.itemsize * self.count

    @property
    def arrow_type(self) -> pa.DataType:
        """Arrow type of the column: the element type, or a fixed-size list of it."""
        t = ARROW_TYPES[self.type]
        return pa.list_(t, self.count) if self.count > 1 else t


def row_dtype(variables: list[VarHeader], buf_len: int) -> np.dtype:
    """One structured dtype that decodes a whole row: every variable at its offset."""
    formats = [(v.dtype, (v.count,)) if v.count > 1 else v.dtype for v in variables]
    return np.dtype(
        {
            "names": [v.name for v in variables],
            "formats": formats,
            "offsets": [v.offset for v in variables],
            "itemsize": buf_len,
        }
    )


def pack_var_headers(variables: list[VarHeader]) -> bytes:
    """Variable headers as the bytes iRacing writes (names, descriptions, units in latin-1)."""
    arr = np.zeros(len(variables), dtype=VAR_HEADER_DTYPE)
    for i, v in enumerate(variables):
        arr[i]["type"] = int(v.type)
        arr[i]["offset"] = v.offset
        arr[i]["count"] = v.count
        arr[i]["count_as_time"] = v.count_as_time
        arr[i]["name"] = v.name.encode("latin-1")[:31]
        arr[i]["desc"] = v.desc.encode("latin-1", "replace")[:63]
        arr[i]["unit"] = v.unit.encode("latin-1", "replace")[:31]
    return arr.tobytes()


def layout_variables(specs: list[tuple[str, VarType, int, str, str]]) -> tuple[list[VarHeader], int]:
    """Place variables ``(name, type, count, unit, desc)`` one after another in a row.

    Returns the variables with their offsets and the row length (``buf_len``), padded to
    a multiple of 16 bytes as iRacing pads it.
    """
    out: list[VarHeader] = []
    offset = 0
    for name, vtype, count, unit, desc in specs:
        vtype = VarType(vtype)
        size = NUMPY_TYPES[vtype].itemsize
        offset = -(-offset // size) * size  # natural alignment
        out.append(VarHeader(name, vtype, offset, count, False, desc, unit))
        offset += size * count
    buf_len = -(-offset // 16) * 16
    return out, buf_len
