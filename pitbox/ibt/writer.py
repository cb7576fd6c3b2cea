"""Write iRacing's exact ``.ibt`` layout from channels plus session YAML.

Used by the lap simulator and by tests that build broken files. pyirsdk's ``IBT`` and
``IRSDK().startup(test_file=...)`` read what this writes with identical values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pitbox.errors import PitboxError, writing
from pitbox.ibt.layout import (
    DISK_SUB_HEADER_DTYPE,
    DISK_SUB_HEADER_SIZE,
    HEADER_DTYPE,
    HEADER_SIZE,
    NUMPY_TYPES,
    STATUS_CONNECTED,
    VAR_HEADER_SIZE,
    VarHeader,
    VarType,
    layout_variables,
    pack_var_headers,
    row_dtype,
)
from pitbox.ibt.session_yaml import UTF8_SIGN

_KIND_TO_TYPE = {"b": VarType.BOOL, "i": VarType.INT, "u": VarType.BITFIELD, "S": VarType.CHAR}


def infer_var_type(arr: np.ndarray) -> VarType:
    """iRacing type for a numpy array: float32 → float, float64 → double, int → int, …"""
    if arr.dtype.kind == "f":
        return VarType.DOUBLE if arr.dtype.itemsize == 8 else VarType.FLOAT
    try:
        return _KIND_TO_TYPE[arr.dtype.kind]
    except KeyError:
        raise PitboxError(f"cannot store a {arr.dtype} channel in an .ibt file") from None


def variables_for(channels: Mapping[str, np.ndarray], units: Mapping[str, str] | None = None,
                  descs: Mapping[str, str] | None = None,
                  types: Mapping[str, VarType] | None = None) -> tuple[list[VarHeader], int]:
    """Lay out variables for arrays of shape ``(rows,)`` or ``(rows, count)``."""
    units, descs, types = units or {}, descs or {}, types or {}
    specs = []
    for name, arr in channels.items():
        arr = np.asarray(arr)
        count = 1 if arr.ndim == 1 else int(arr.shape[1])
        specs.append((name, types.get(name, infer_var_type(arr)), count, units.get(name, ""), descs.get(name, "")))
    return layout_variables(specs)


def encode_session_info(text: str) -> bytes:
    """YAML text to bytes as iRacing writes them: ends with a blank line (pyirsdk finds a
    section's end by ``\\n\\n``), UTF-8 when flagged, else Windows-1252."""
    if not text.endswith("\n\n"):
        text = text.rstrip("\n") + "\n\n"
    raw_utf8 = text.encode("utf-8")
    return raw_utf8 if raw_utf8.startswith(UTF8_SIGN) else text.encode("cp1252", "replace")


def pack_rows(channels: Mapping[str, np.ndarray], variables: list[VarHeader], buf_len: int) -> bytes:
    n = len(next(iter(channels.values()))) if channels else 0
    rows = np.zeros(n, dtype=row_dtype(variables, buf_len))
    for v in variables:
        rows[v.name] = np.asarray(channels[v.name]).astype(NUMPY_TYPES[v.type], copy=False)
    return rows.tobytes()


def write_ibt(
    path: str | os.PathLike[str],
    channels: Mapping[str, np.ndarray],
    session_info: str | bytes,
    *,
    variables: list[VarHeader] | None = None,
    buf_len: int | None = None,
    units: Mapping[str, str] | None = None,
    descs: Mapping[str, str] | None = None,
    types: Mapping[str, VarType] | None = None,
    tick_rate: int = 60,
    start_date: int = 0,
    lap_count: int | None = None,
    version: int = 2,
) -> Path:
    """Write an ``.ibt`` file; returns its path.

    ``channels`` maps names to arrays of one length (``(rows,)`` or ``(rows, count)``).
    ``variables``/``buf_len`` fix the layout (for a faithful rewrite of a real file);
    otherwise it is derived from the arrays, with ``units``/``descs``/``types``.
    ``start_date`` is Unix seconds. The file is written beside and renamed into place.
    """
    if variables is None:
        variables, buf_len = variables_for(channels, units, descs, types)
    elif buf_len is None:
        buf_len = max(v.offset + v.nbytes for v in variables)
    lengths = {len(np.asarray(a)) for a in channels.values()}
    if len(lengths) > 1:
        raise PitboxError(f"{path}: channels have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    yaml_bytes = session_info if isinstance(session_info, bytes) else encode_session_info(session_info)

    var_off = HEADER_SIZE + DISK_SUB_HEADER_SIZE
    yaml_off = var_off + len(variables) * VAR_HEADER_SIZE
    data_off = yaml_off + len(yaml_bytes)

    head = np.zeros(1, HEADER_DTYPE)[0]
    head["ver"], head["status"], head["tick_rate"] = version, STATUS_CONNECTED, tick_rate
    head["session_info_len"], head["session_info_offset"] = len(yaml_bytes), yaml_off
    head["num_vars"], head["var_header_offset"] = len(variables), var_off
    head["num_buf"], head["buf_len"] = 1, buf_len
    tick = channels.get("SessionTick")
    head["var_buf"][0]["tick_count"] = int(np.asarray(tick)[-1]) if tick is not None and n else n
    head["var_buf"][0]["buf_offset"] = data_off

    disk = np.zeros(1, DISK_SUB_HEADER_DTYPE)[0]
    disk["session_start_date"] = start_date
    st = channels.get("SessionTime")
    if st is not None and n:
        disk["session_start_time"], disk["session_end_time"] = float(st[0]), float(st[-1])
    if lap_count is None:
        lap = channels.get("Lap")
        lap_count = int(np.ptp(np.asarray(lap)) + 1) if lap is not None and n else 0
    disk["session_lap_count"], disk["session_record_count"] = lap_count, n

    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with writing(path):
        try:
            with open(tmp, "wb") as f:
                f.write(head.tobytes())
                f.write(disk.tobytes())
                f.write(pack_var_headers(variables))
                f.write(yaml_bytes)
                f.write(pack_rows(channels, variables, buf_len))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return path
