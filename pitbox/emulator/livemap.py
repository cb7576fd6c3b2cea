"""iRacing's live shared-memory layout, written into a file that stays mapped.

Geometry, as in the real 2021 and 2024 live dumps (``docs/emulator.md``)::

    0        header (112 bytes)
    112      session YAML area, 512 KiB (header.session_info_len = the area size)
    524400   variable headers, room for 4096 (576 KiB)
    1114224  row buffer 0, 1, 2: one 24 KiB slot each
    1191936  end of the map (pyirsdk's MEMMAPFILESIZE, 1164 KiB)

The file is created at full size once and rewritten in place through one writable memory
map: a reader (pyirsdk) maps it at open and keeps that length.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from pitbox.errors import PitboxError
from pitbox.ibt.layout import HEADER_SIZE, LIVE_MAP_SIZE, MAX_BUFS, STATUS_CONNECTED, VAR_HEADER_SIZE

YAML_AREA = 512 * 1024
MAX_VARS = 4096
BUF_SLOT = 24 * 1024
NUM_BUF = 3
_SLACK = LIVE_MAP_SIZE - (HEADER_SIZE + YAML_AREA + MAX_VARS * VAR_HEADER_SIZE + NUM_BUF * BUF_SLOT)

# header field offsets (irsdk_header)
_VER, _STATUS, _TICK_RATE, _SI_UPDATE, _SI_LEN, _SI_OFFSET = 0, 4, 8, 12, 16, 20
_NUM_VARS, _VH_OFFSET, _NUM_BUF, _BUF_LEN, _VAR_BUF = 24, 28, 32, 36, 48
_VAR_BUF_SIZE = 16
_I32 = struct.Struct("<i")


@dataclass(frozen=True)
class MapGeometry:
    """Where each block sits in the map; fixed for the life of the file."""

    var_header_offset: int
    buf_offsets: tuple[int, ...]
    buf_slot: int
    size: int
    session_info_offset: int = HEADER_SIZE
    session_info_area: int = YAML_AREA


def geometry(max_buf_len: int) -> MapGeometry:
    """The real map geometry; the slots (and the file) grow only if a row needs more than 24 KiB."""
    slot = max(BUF_SLOT, -(-max_buf_len // 4096) * 4096)
    vh = HEADER_SIZE + YAML_AREA
    first = vh + MAX_VARS * VAR_HEADER_SIZE
    offsets = tuple(first + i * slot for i in range(NUM_BUF))
    return MapGeometry(vh, offsets, slot, max(LIVE_MAP_SIZE, offsets[-1] + slot + _SLACK))


class LiveMapWriter:
    """Writes iRacing's live layout in place, in the order iRacing writes it."""

    def __init__(self, path: str | os.PathLike[str], geom: MapGeometry):
        self.path = Path(path)
        self.geom = geom
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._f = open(self.path, "r+b" if self.path.exists() else "w+b")
        except OSError as exc:
            raise PitboxError(f"{self.path}: cannot open the memory-map file for writing: {exc.strerror}") from None
        if os.fstat(self._f.fileno()).st_size < geom.size:
            self._f.truncate(geom.size)
        self._mm = mmap.mmap(self._f.fileno(), geom.size)
        self._buf_len = 0

    # -- header fields ------------------------------------------------------------------
    def _put(self, offset: int, value: int) -> None:
        _I32.pack_into(self._mm, offset, value)

    def get(self, offset: int) -> int:
        return _I32.unpack_from(self._mm, offset)[0]

    def set_status(self, status: int) -> None:
        self._put(_STATUS, status)

    @property
    def status(self) -> int:
        return self.get(_STATUS)

    def write_layout(self, var_headers: bytes, num_vars: int, buf_len: int, session_info: bytes,
                     tick_rate: int = 60, version: int = 2) -> None:
        """A new header, variable headers and YAML, as the sim writes them when it starts.

        Leaves status 0 (not connected) and every buffer's ``tick_count`` 0; the first
        :meth:`write_tick` follows, then :meth:`set_status` ``(1)``.
        """
        g = self.geom
        if num_vars > MAX_VARS or buf_len > g.buf_slot:
            raise PitboxError(f"{self.path}: live layout of {num_vars} variables, {buf_len}-byte rows does not "
                              f"fit the map ({MAX_VARS} variables, {g.buf_slot}-byte slots)")
        self.set_status(0)
        for i in range(MAX_BUFS):
            self._mm[_VAR_BUF + i * _VAR_BUF_SIZE : _VAR_BUF + (i + 1) * _VAR_BUF_SIZE] = bytes(_VAR_BUF_SIZE)
        vh_end = g.var_header_offset + MAX_VARS * VAR_HEADER_SIZE
        self._mm[g.var_header_offset : vh_end] = var_headers.ljust(vh_end - g.var_header_offset, b"\x00")
        for off in g.buf_offsets:
            self._mm[off : off + g.buf_slot] = bytes(g.buf_slot)
        self._write_yaml_bytes(session_info)
        for field, value in ((_VER, version), (_TICK_RATE, tick_rate), (_SI_UPDATE, 1),
                             (_SI_LEN, g.session_info_area), (_SI_OFFSET, g.session_info_offset),
                             (_NUM_VARS, num_vars), (_VH_OFFSET, g.var_header_offset),
                             (_NUM_BUF, NUM_BUF), (_BUF_LEN, buf_len), (40, 0), (44, 0)):
            self._put(field, value)
        for i, off in enumerate(g.buf_offsets):
            self._put(_VAR_BUF + i * _VAR_BUF_SIZE + 4, off)
        self._buf_len = buf_len

    def _write_yaml_bytes(self, session_info: bytes) -> None:
        g = self.geom
        if len(session_info) >= g.session_info_area:
            raise PitboxError(f"{self.path}: session YAML of {len(session_info)} bytes does not fit the "
                              f"{g.session_info_area}-byte area")
        area = session_info.ljust(g.session_info_area, b"\x00")
        self._mm[g.session_info_offset : g.session_info_offset + g.session_info_area] = area

    def update_session_info(self, session_info: bytes) -> int:
        """New YAML, then ``session_info_update`` bumped (what pyirsdk watches). Returns it."""
        self._write_yaml_bytes(session_info)
        update = self.get(_SI_UPDATE) + 1
        self._put(_SI_UPDATE, update)
        return update

    @property
    def session_info_update(self) -> int:
        return self.get(_SI_UPDATE)

    def write_tick(self, buf_index: int, tick_count: int, row: bytes) -> None:
        """Publish one row: the buffer's ``tick_count`` is cleared while the row is written
        and set after it, so a reader never takes a half-written buffer for the newest and
        a reader that re-checks ``tick_count`` after copying sees any overlap."""
        tick_field = _VAR_BUF + buf_index * _VAR_BUF_SIZE
        off = self.geom.buf_offsets[buf_index]
        self._put(tick_field, 0)
        self._mm[off : off + len(row)] = row
        self._put(tick_field, tick_count)

    def tick_counts(self) -> list[int]:
        return [self.get(_VAR_BUF + i * _VAR_BUF_SIZE) for i in range(NUM_BUF)]

    def flush(self) -> None:
        self._mm.flush()

    def close(self) -> None:
        if not self._mm.closed:
            self._mm.flush()
            self._mm.close()
        self._f.close()


__all__ = ["STATUS_CONNECTED", "LiveMapWriter", "MapGeometry", "geometry"]
