"""The crash-safe recording folder: one per session being recorded.

Layout (inside the data folder; the leading dot hides it from dataset readers and from
:meth:`pitbox.store.Store.files`)::

    <data>/.recording/<session id>/
        lock                      held (OS file lock) by the recording process while it records
        meta.json                 the row layout (variable headers, row length, tick rate), source, start
        yaml-000000-t<tick>-u<update>.bin   the session YAML in effect at the first tick, raw bytes
        yaml-000001-t<tick>-u<update>.bin   each later YAML update, with the tick it appeared at
        seg-000000.arrow          closed segments: Arrow IPC files (lz4) of ``tick`` (int64, the header
        seg-000001.arrow ...      tick_count) and ``row`` (the frozen row bytes as iRacing wrote them)
        closed.json               written when the session ended normally (why and when)

Every file is written beside its name as ``.<name>.part`` and renamed into place, so a file
that exists is complete; a ``kill -9`` leaves at most one ``.part`` (ignored) and the rows
still in memory (at most one flush interval). Rows are kept raw ("record raw, parse later"):
they decode with the same structured dtype as every other reader (:func:`row_dtype`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from pitbox.errors import StoreError
from pitbox.ibt.layout import VarHeader, VarType, row_dtype

log = logging.getLogger(__name__)

RECORDING_DIR = ".recording"
FORMAT_VERSION = 1
META_NAME = "meta.json"
CLOSED_NAME = "closed.json"
LOCK_NAME = "lock"
_SEG = re.compile(r"^seg-(\d{6})\.arrow$")
_YAML = re.compile(r"^yaml-(\d{6})-t(-?\d+)-u(-?\d+)\.bin$")


def recording_root(data: Path) -> Path:
    return Path(data) / RECORDING_DIR


def segment_schema(buf_len: int) -> pa.Schema:
    """Schema of a segment: the header ``tick_count`` and the raw row of that tick."""
    return pa.schema([pa.field("tick", pa.int64(), nullable=False),
                      pa.field("row", pa.binary(buf_len), nullable=False)])


def _oserror(path: Path, what: str, exc: OSError) -> StoreError:
    return StoreError(f"{path}: cannot {what}: {exc.strerror or exc}")


def atomic_write(path: Path, data: bytes, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through ``.<name>.part`` and a rename (raises OSError)."""
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


# -- the lock: who is recording into a folder ---------------------------------------------

class FolderLock:
    """An exclusive OS lock on ``<folder>/lock``; released when the process dies.

    ``msvcrt.locking`` on Windows, ``fcntl.flock`` elsewhere. :meth:`try_acquire` never blocks.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self._f: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        f = open(self.path, "a+b")  # noqa: SIM115 - held open while locked
        try:
            if sys.platform == "win32":
                import msvcrt

                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._f = f
        return True

    def release(self) -> None:
        if self._f is None:
            return
        try:
            if sys.platform == "win32":
                import msvcrt

                self._f.seek(0)
                msvcrt.locking(self._f.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass
        self._f.close()
        self._f = None

    @property
    def held(self) -> bool:
        return self._f is not None


# -- variable headers as JSON ------------------------------------------------------------

def variables_to_json(variables: list[VarHeader]) -> list[list[Any]]:
    return [[v.name, int(v.type), v.offset, v.count, v.count_as_time, v.desc, v.unit] for v in variables]


def variables_from_json(rows: list[list[Any]]) -> list[VarHeader]:
    return [VarHeader(str(n), VarType(int(t)), int(o), int(c), bool(cat), str(d), str(u))
            for n, t, o, c, cat, d, u in rows]


# -- writing one recording ------------------------------------------------------------------

@dataclass
class YamlVersion:
    """One session YAML as it was in memory from ``tick`` on."""

    seq: int
    tick: int
    update: int
    raw: bytes


class RecordingFolder:
    """Writes one session's recording folder (used by the recorder's writer thread)."""

    def __init__(self, data: Path, session_id: str, fsync: bool = True):
        self.path = recording_root(data) / session_id
        self.id = session_id
        self.fsync = fsync
        self.lock = FolderLock(self.path)
        self.seq = 0
        self.yaml_seq = 0
        self.rows_written = 0

    def create(self, meta: dict[str, Any]) -> None:
        """Make the folder, take its lock and write ``meta.json``; :class:`StoreError` if impossible."""
        try:
            self.path.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise _oserror(self.path, "create the recording folder", exc) from None
        try:
            if not self.lock.try_acquire():
                raise StoreError(f"{self.path}: locked by another recorder")
            atomic_write(self.path / META_NAME, json.dumps({"format": FORMAT_VERSION, **meta}).encode(), self.fsync)
        except OSError as exc:
            raise _oserror(self.path / META_NAME, "write", exc) from None

    def write_yaml(self, tick: int, update: int, raw: bytes) -> None:
        name = f"yaml-{self.yaml_seq:06d}-t{tick}-u{update}.bin"
        try:
            atomic_write(self.path / name, raw, self.fsync)
        except OSError as exc:
            raise _oserror(self.path / name, "write", exc) from None
        self.yaml_seq += 1

    def write_segment(self, ticks: list[int], rows: list[bytes], buf_len: int) -> Path:
        """Write one closed segment of rows; raises :class:`StoreError` (what was written stays)."""
        path = self.path / f"seg-{self.seq:06d}.arrow"
        data = pa.py_buffer(b"".join(rows))
        table = pa.table({
            "tick": pa.array(ticks, pa.int64()),
            "row": pa.FixedSizeBinaryArray.from_buffers(pa.binary(buf_len), len(rows), [None, data]),
        }, schema=segment_schema(buf_len))
        sink = pa.BufferOutputStream()
        with ipc.new_file(sink, table.schema, options=ipc.IpcWriteOptions(compression="lz4")) as w:
            w.write_table(table)
        try:
            atomic_write(path, sink.getvalue().to_pybytes(), self.fsync)
        except OSError as exc:
            raise _oserror(path, "write a recording segment", exc) from None
        self.seq += 1
        self.rows_written += len(rows)
        return path

    def close(self, info: dict[str, Any]) -> None:
        try:
            atomic_write(self.path / CLOSED_NAME, json.dumps(info).encode(), self.fsync)
        except OSError as exc:
            raise _oserror(self.path / CLOSED_NAME, "write", exc) from None

    def release(self) -> None:
        self.lock.release()


# -- reading a recording folder back ----------------------------------------------------------

@dataclass
class Recording:
    """A recording folder read back: layout, YAML versions and segment files in order."""

    path: Path
    meta: dict[str, Any]
    variables: list[VarHeader]
    buf_len: int
    segments: list[Path]
    yamls: list[YamlVersion]
    closed: dict[str, Any] | None

    @property
    def dtype(self) -> np.dtype:
        return row_dtype(self.variables, self.buf_len)

    def iter_rows(self) -> Any:
        """``(ticks, rows)`` per segment: ticks int64 and rows as one structured array.

        A segment that cannot be read (it should not happen: segments are renamed into
        place complete) ends the recording there, with a warning in the log.
        """
        dtype = self.dtype
        for seg in self.segments:
            try:
                with ipc.open_file(pa.memory_map(str(seg), "r")) as r:
                    table = r.read_all()
            except (OSError, pa.ArrowInvalid) as exc:
                log.warning("%s: unreadable segment, recording ends before it: %s", seg, exc)
                return
            ticks = table.column("tick").to_numpy()
            col = table.column("row").combine_chunks()
            raw = col.buffers()[1]
            start = col.offset * self.buf_len
            rows = np.frombuffer(raw, dtype=dtype, count=len(col), offset=start)
            yield ticks, rows


def read_recording(folder: Path) -> Recording:
    """Read a recording folder's layout and list its complete files; :class:`StoreError` if no meta."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{folder / META_NAME}: unreadable recording metadata: {exc}") from None
    if meta.get("format", 0) > FORMAT_VERSION:
        raise StoreError(f"{folder / META_NAME}: format {meta.get('format')}: expected {FORMAT_VERSION} or older")
    segs, yamls = [], []
    for p in sorted(folder.iterdir()):
        if _SEG.match(p.name):
            segs.append(p)
        elif m := _YAML.match(p.name):
            yamls.append(YamlVersion(int(m[1]), int(m[2]), int(m[3]), p.read_bytes()))
    closed = None
    if (folder / CLOSED_NAME).exists():
        try:
            closed = json.loads((folder / CLOSED_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            closed = None
    return Recording(folder, meta, variables_from_json(meta["variables"]), int(meta["buf_len"]), segs,
                     sorted(yamls, key=lambda y: y.seq), closed)


def remove_folder(folder: Path) -> None:
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        log.warning("%s: could not remove the finished recording folder: %s", folder, exc)
