"""Readers for iRacing's telemetry layout: ``.ibt`` disk files and live memory dumps.

Both readers have one contract (:class:`TelemetryFile`): a cheap header-only open
(variables, YAML bytes, row count; no rows read), then every channel read in vectorised
passes with one structured dtype, in row chunks so memory stays bounded.

Every header field is checked before it is used, so a damaged file raises
:class:`~pitbox.errors.IbtFormatError` naming the file, the field and what was expected,
and never sizes an allocation by a corrupt field.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pitbox import digest
from pitbox.errors import IbtFormatError, MissingChannel, TruncatedWarning
from pitbox.ibt import session_yaml
from pitbox.ibt.layout import (
    DISK_SUB_HEADER_DTYPE,
    DISK_SUB_HEADER_SIZE,
    HEADER_DTYPE,
    HEADER_SIZE,
    VAR_HEADER_DTYPE,
    VAR_HEADER_SIZE,
    VarHeader,
    VarType,
    row_dtype,
)

MAX_VARS = 4096
MAX_BUF_LEN = 1 << 20
MAX_SESSION_INFO = 16 << 20
DEFAULT_CHUNK_ROWS = 16384
MAX_START_DATE = 32503680000  #: 3000-01-01 in Unix seconds


@dataclass(frozen=True)
class Header:
    """The 112-byte header (``irsdk_header``)."""

    version: int
    status: int
    tick_rate: int
    session_info_update: int
    session_info_len: int
    session_info_offset: int
    num_vars: int
    var_header_offset: int
    num_buf: int
    buf_len: int
    var_buf: tuple[tuple[int, int], ...]  #: (tick_count, buf_offset) per buffer


@dataclass(frozen=True)
class DiskSubHeader:
    """The 32-byte ``.ibt`` sub-header (``irsdk_diskSubHeader``)."""

    session_start_date: int  #: Unix seconds
    session_start_time: float  #: SessionTime of the first row [s]
    session_end_time: float  #: SessionTime of the last row [s]
    session_lap_count: int
    session_record_count: int

    @property
    def start_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.session_start_date, tz=timezone.utc)


def _ints(raw: np.void, *names: str) -> dict[str, int]:
    return {n: int(raw[n]) for n in names}


def parse_header(buf: bytes, path: object = None) -> Header:
    if len(buf) < HEADER_SIZE:
        raise IbtFormatError(path, "header", f"at least {HEADER_SIZE} bytes", f"{len(buf)} bytes")
    raw = np.frombuffer(buf, HEADER_DTYPE, count=1)[0]
    f = _ints(raw, "ver", "status", "tick_rate", "session_info_update", "session_info_len",
              "session_info_offset", "num_vars", "var_header_offset", "num_buf", "buf_len")
    return Header(
        version=f["ver"], status=f["status"], tick_rate=f["tick_rate"],
        session_info_update=f["session_info_update"], session_info_len=f["session_info_len"],
        session_info_offset=f["session_info_offset"], num_vars=f["num_vars"],
        var_header_offset=f["var_header_offset"], num_buf=f["num_buf"], buf_len=f["buf_len"],
        var_buf=tuple((int(v["tick_count"]), int(v["buf_offset"])) for v in raw["var_buf"]),
    )


def _check(cond: bool, path: object, field: str, expected: str, found: object) -> None:
    if not cond:
        raise IbtFormatError(path, field, expected, found)


def check_header(h: Header, size: int, path: object, live: bool) -> None:
    """Validate every header field against the file size before anything is read."""
    _check(h.version in (1, 2), path, "header.ver", "1 or 2", h.version)
    _check(0 < h.tick_rate <= 10_000, path, "header.tick_rate", "1..10000 ticks per second", h.tick_rate)
    _check(0 < h.num_vars <= MAX_VARS, path, "header.num_vars", f"1..{MAX_VARS}", h.num_vars)
    min_vh = HEADER_SIZE if live else HEADER_SIZE + DISK_SUB_HEADER_SIZE
    end_vh = h.var_header_offset + h.num_vars * VAR_HEADER_SIZE
    _check(min_vh <= h.var_header_offset and end_vh <= size, path, "header.var_header_offset",
           f"variable headers inside the file ({size} bytes)", h.var_header_offset)
    _check(0 <= h.session_info_len <= MAX_SESSION_INFO, path, "header.session_info_len",
           f"0..{MAX_SESSION_INFO} bytes", h.session_info_len)
    _check(min_vh <= h.session_info_offset and h.session_info_offset + h.session_info_len <= size, path,
           "header.session_info_offset", f"session info inside the file ({size} bytes)", h.session_info_offset)
    _check(1 <= h.num_buf <= 4, path, "header.num_buf", "1..4", h.num_buf)
    _check(0 < h.buf_len <= MAX_BUF_LEN, path, "header.buf_len", f"1..{MAX_BUF_LEN} bytes", h.buf_len)
    bufs = h.var_buf[: h.num_buf] if live else h.var_buf[:1]
    for i, (_, off) in enumerate(bufs):
        limit = size - h.buf_len if live else size
        _check(min_vh <= off <= limit, path, f"header.var_buf[{i}].buf_offset",
               f"rows inside the file ({size} bytes)", off)


def parse_var_headers(buf: bytes, h: Header, path: object) -> list[VarHeader]:
    raw = np.frombuffer(buf, VAR_HEADER_DTYPE, count=h.num_vars, offset=h.var_header_offset)
    out: list[VarHeader] = []
    seen: set[str] = set()
    for i, r in enumerate(raw):
        name = bytes(r["name"]).split(b"\x00", 1)[0].decode("latin-1")
        field = f"variable header {i} ({name if name.isprintable() and name else 'unnamed'})"
        _check(name.isprintable() and name != "" and " " not in name, path, f"{field}.name",
               "a printable channel name", name)
        _check(name not in seen, path, f"{field}.name", "a name used once", name)
        seen.add(name)
        vtype = int(r["type"])
        _check(vtype in VarType._value2member_map_, path, f"{field}.type", "0..5 (char, bool, int, bitfield, float, double)", vtype)
        count = int(r["count"])
        _check(1 <= count <= h.buf_len, path, f"{field}.count", "1 or more elements that fit in a row", count)
        v = VarHeader(
            name=name, type=VarType(vtype), offset=int(r["offset"]), count=count,
            count_as_time=bool(r["count_as_time"]),
            desc=bytes(r["desc"]).split(b"\x00", 1)[0].decode("latin-1"),
            unit=bytes(r["unit"]).split(b"\x00", 1)[0].decode("latin-1"),
        )
        _check(0 <= v.offset and v.offset + v.nbytes <= h.buf_len, path, f"{field}.offset",
               f"bytes {v.nbytes} wide inside the {h.buf_len}-byte row", v.offset)
        out.append(v)
    return out


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file (:func:`pitbox.digest.sha256_file`)."""
    return digest.sha256_file(path, chunk)


#: Rows transposed per step when decoding (about 1 MB of rows: they stay in the CPU's cache
#: while every channel of a group is copied out of them).
DECODE_STEP_ROWS = 1024


class ColumnDecoder:
    """Rows of one structured dtype (every channel at its offset) into contiguous columns.

    Channels that follow one another in the row with the same scalar type form a group (a
    row of iRacing's layout has ~60 such groups for ~270 channels); a group is copied out
    as one ``(channels, rows)`` array, :data:`DECODE_STEP_ROWS` rows at a time, so each row
    is read from memory once per group instead of once per channel (~1.5x faster than one
    strided copy per channel). Each column is one row of its group's array: contiguous,
    shape ``(rows,)`` (``(rows, count)`` for array channels, copied on their own).
    """

    def __init__(self, dtype: np.dtype, names: Sequence[str] | None = None):
        self.dtype = dtype
        fields = dtype.fields or {}
        names = list(fields) if names is None else list(names)
        missing = [n for n in names if n not in fields]
        if missing:
            raise KeyError(missing[0])
        self.names = names
        groups: list[tuple[np.dtype, int, list[str]]] = []
        for off, name, ftype in sorted((fields[n][1], n, fields[n][0]) for n in names):
            last = groups[-1] if groups else None
            if ftype.shape == () and last is not None and last[0] == ftype and last[0].shape == () \
                    and last[1] + ftype.itemsize * len(last[2]) == off:
                last[2].append(name)
            else:
                groups.append((ftype, off, [name]))
        self.groups = groups

    def decode(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Every channel of ``rows`` (a 1-D array of :attr:`dtype`) as a contiguous array."""
        n = len(rows)
        if n == 0:
            return {name: np.ascontiguousarray(rows[name]) for name in self.names}
        size = self.dtype.itemsize
        cols: dict[str, np.ndarray] = {}
        raw = np.ascontiguousarray(rows).view(np.uint8)
        for ftype, off, names in self.groups:
            if len(names) == 1:
                cols[names[0]] = np.ascontiguousarray(rows[names[0]])
                continue
            block = np.ndarray((n, len(names)), ftype, buffer=raw, offset=off, strides=(size, ftype.itemsize))
            out = np.empty((len(names), n), ftype)
            for a in range(0, n, DECODE_STEP_ROWS):
                out[:, a : a + DECODE_STEP_ROWS] = block[a : a + DECODE_STEP_ROWS].T
            for j, name in enumerate(names):
                cols[name] = out[j]
        return {name: cols[name] for name in self.names}


def _open_checked(path: Path) -> BinaryIO:
    if not path.exists():
        raise IbtFormatError(path, "path", "an existing file", "nothing there")
    if path.is_dir():
        raise IbtFormatError(path, "path", "a telemetry file", "a directory")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise IbtFormatError(path, "path", "a readable file", exc.strerror) from None


class TelemetryFile:
    """One iRacing telemetry source laid out as iRacing writes it.

    Opening reads the header, the variable headers and the YAML bytes only; rows are read
    by :meth:`read` / :meth:`iter_chunks`. Use as a context manager.
    """

    kind: str = "?"
    disk: DiskSubHeader | None = None

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._f = _open_checked(self.path)
        try:
            self.size = os.fstat(self._f.fileno()).st_size
            head = self._f.read(HEADER_SIZE + DISK_SUB_HEADER_SIZE)
            self.header = parse_header(head, self.path)
            check_header(self.header, self.size, self.path, live=self.kind == "livedump")
            meta_end = max(self.header.var_header_offset + self.header.num_vars * VAR_HEADER_SIZE,
                           self.header.session_info_offset + self.header.session_info_len)
            self._f.seek(0)
            meta = self._f.read(meta_end)
            self.variables = parse_var_headers(meta, self.header, self.path)
            so, sl = self.header.session_info_offset, self.header.session_info_len
            self.session_info_raw: bytes = meta[so : so + sl].split(b"\x00", 1)[0]
            self._init_rows(head)
        except BaseException:
            self._f.close()
            raise
        self.dtype = row_dtype(self.variables, self.header.buf_len)
        self._yaml: dict[str, Any] | None = None
        self._decoders: dict[tuple[str, ...] | None, ColumnDecoder] = {}

    # -- contract -----------------------------------------------------------------
    n_rows: int = 0
    truncated: bool = False
    _data_offset: int = 0

    def _init_rows(self, head: bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def tick_rate(self) -> int:
        return self.header.tick_rate

    @property
    def channels(self) -> dict[str, VarHeader]:
        return {v.name: v for v in self.variables}

    @property
    def session_info_text(self) -> str:
        return session_yaml.decode(self.session_info_raw)

    @property
    def session_info(self) -> dict[str, Any]:
        """The session YAML, repaired and parsed, as a dict of top-level sections."""
        if self._yaml is None:
            self._yaml = session_yaml.parse(self.session_info_raw, self.path)
        return self._yaml

    def read_rows(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` as one structured array (every channel at its offset)."""
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        start = max(0, min(start, stop))
        self._f.seek(self._data_offset + start * self.header.buf_len)
        data = self._f.read((stop - start) * self.header.buf_len)
        return np.frombuffer(data, dtype=self.dtype, count=len(data) // self.header.buf_len)

    def read(self, names: Sequence[str] | None = None, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Channels as contiguous arrays: shape ``(rows,)``, or ``(rows, count)`` for arrays."""
        return self.decoder(names).decode(self.read_rows(start, stop))

    def decoder(self, names: Sequence[str] | None = None) -> ColumnDecoder:
        """The :class:`ColumnDecoder` of ``names`` (every channel when None); raises
        :class:`MissingChannel` for a name the file does not have."""
        key = None if names is None else tuple(names)
        dec = self._decoders.get(key)
        if dec is None:
            missing = [n for n in key or () if n not in self.dtype.names]
            if missing:
                raise MissingChannel(self.path, missing[0])
            dec = self._decoders[key] = ColumnDecoder(self.dtype, key)
        return dec

    def iter_chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS, names: Sequence[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Every channel, ``chunk_rows`` rows at a time (bounded memory)."""
        for start in range(0, self.n_rows, chunk_rows):
            yield self.read(names, start, start + chunk_rows)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> TelemetryFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name}: {len(self.variables)} channels, {self.n_rows} rows>"


class IbtFile(TelemetryFile):
    """An ``.ibt`` disk file: header, disk sub-header, variables, YAML, then rows."""

    kind = "ibt"

    def _init_rows(self, head: bytes) -> None:
        if len(head) < HEADER_SIZE + DISK_SUB_HEADER_SIZE:
            raise IbtFormatError(self.path, "disk sub-header", f"{DISK_SUB_HEADER_SIZE} bytes at {HEADER_SIZE}",
                                 f"{len(head) - HEADER_SIZE} bytes")
        d = np.frombuffer(head, DISK_SUB_HEADER_DTYPE, count=1, offset=HEADER_SIZE)[0]
        self.disk = DiskSubHeader(int(d["session_start_date"]), float(d["session_start_time"]),
                                  float(d["session_end_time"]), int(d["session_lap_count"]),
                                  int(d["session_record_count"]))
        _check(0 <= self.disk.session_start_date <= MAX_START_DATE, self.path, "disk sub-header.session_start_date",
               "Unix seconds between 1970 and 3000", self.disk.session_start_date)
        self._data_offset = self.header.var_buf[0][1]
        complete = (self.size - self._data_offset) // self.header.buf_len
        records = self.disk.session_record_count
        _check(records >= 0, self.path, "disk sub-header.session_record_count", "0 or more", records)
        if records == complete:
            self.n_rows = records
        elif 0 < records < complete:
            self.n_rows = records  # trailing bytes after the last record: pyirsdk reads record_count rows
        else:
            self._check_row_length(complete, records)
            self.n_rows = complete
            self.truncated = True
            warnings.warn(
                f"{self.path}: session_record_count says {records} rows but the file holds {complete} "
                f"complete rows; reading those", TruncatedWarning, stacklevel=3)

    def _check_row_length(self, complete: int, records: int) -> None:
        """Rows short of the record count: make sure ``buf_len`` is right, not the count.

        With a wrong row length the rows after the first are read at the wrong place (or,
        for a multiple of the right length, every n-th row is read). So ``SessionTime`` [s],
        sampled over the first rows and along the file (all-zero rows skipped), must be
        finite, not negative, never go back, and step by about one tick.
        """
        v = self.channels.get("SessionTime")
        if v is None or v.count != 1 or v.type not in (VarType.FLOAT, VarType.DOUBLE) or complete < 2:
            return
        head = min(complete, 17)
        picks = sorted({*range(head), complete // 3, complete // 2, complete - 2, complete - 1})
        t = np.empty(len(picks))
        for k, row in enumerate(picks):
            self._f.seek(self._data_offset + row * self.header.buf_len + v.offset)
            t[k] = np.frombuffer(self._f.read(v.nbytes), v.dtype, count=1)[0]
        first = t[:head][t[:head] != 0]
        steps = np.diff(first)[np.diff(first) > 0] if len(first) > 1 else np.zeros(0)
        t = t[t != 0]
        plausible = np.isfinite(t).all() and (t >= 0).all() and (np.diff(t) >= 0).all()
        if plausible and len(steps) >= 3:
            plausible = float(np.median(steps)) * self.tick_rate < 1.5
        if not plausible:
            raise IbtFormatError(self.path, "header.buf_len",
                                 f"a row length under which SessionTime steps by one tick and never goes back "
                                 f"(with it the file holds {complete} rows, its record count says {records})",
                                 self.header.buf_len)


class LiveDump(TelemetryFile):
    """A copy of iRacing's live memory map: no disk sub-header, rotating row buffers.

    It has one row: the newest buffer (highest ``tick_count``), as pyirsdk gives it after
    ``freeze_var_buffer_latest()``.
    """

    kind = "livedump"

    def _init_rows(self, head: bytes) -> None:
        bufs = self.header.var_buf[: self.header.num_buf]
        tick, self._data_offset = max(bufs, key=lambda b: b[0])
        self.tick_count = tick
        self.n_rows = 1


def detect_kind(path: str | os.PathLike[str]) -> str | None:
    """``"ibt"``, ``"livedump"`` or None; reads 112 bytes and never raises."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
        h = parse_header(head)
    except (OSError, IbtFormatError):
        return None
    if h.version not in (1, 2):
        return None
    return "livedump" if (h.num_buf > 1 or h.session_info_offset == HEADER_SIZE) else "ibt"


def open_telemetry(path: str | os.PathLike[str]) -> TelemetryFile:
    """Open an ``.ibt`` file or a live memory dump (header only; rows on demand)."""
    p = Path(path)
    f = _open_checked(p)
    f.close()
    kind = detect_kind(p)
    if kind is None:
        head = p.read_bytes()[:HEADER_SIZE]
        if len(head) < HEADER_SIZE:
            raise IbtFormatError(p, "header", f"at least {HEADER_SIZE} bytes", f"{len(head)} bytes")
        raise IbtFormatError(p, "header.ver", "1 or 2", parse_header(head, p).version)
    return LiveDump(p) if kind == "livedump" else IbtFile(p)
