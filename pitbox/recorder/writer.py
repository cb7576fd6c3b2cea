"""The recorder's two background threads: segment writer and session finalizer.

The tick loop never touches the disk: it hands rows to :class:`SegmentWriter` through a
queue (one ``put`` per flush interval), which writes closed segment files. When a session
ends, the writer closes its folder and hands it to :class:`Finalizer`, which merges it into
the session's Parquet file while the next session is already being recorded. Both record
the first storage error in ``error``; the tick loop checks it and stops with that error.

Publishing that needs the YAML parsed (session changes, session info, completed laps) is
done here too, off the tick loop.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pitbox.errors import PitboxError, StoreError
from pitbox.ibt import session_yaml
from pitbox.laps import LLT_WINDOW_S, lap_table
from pitbox.recorder.finalize import finalize
from pitbox.recorder.segments import RecordingFolder, remove_folder
from pitbox.store import LAP_CHANNEL_TYPES, Store, session_meta

log = logging.getLogger(__name__)


_warm = False


def prewarm() -> None:
    """Pay the first-use costs (codec set-up, lazy imports: ~0.3 s) before the first tick,
    so that the writer threads never hold the interpreter that long while ticks arrive."""
    global _warm
    if _warm:
        return
    import io

    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    table = pa.table({"tick": pa.array([0], pa.int64()),
                      "row": pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), 1, [None, pa.py_buffer(bytes(8))])})
    with ipc.new_file(pa.BufferOutputStream(), table.schema, options=ipc.IpcWriteOptions(compression="lz4")) as w:
        w.write_table(table)
    pq.write_table(pa.table({"x": [1.0]}), io.BytesIO(), compression="zstd")
    lap_table({"SessionTime": np.arange(3.0), "Lap": np.zeros(3, np.int32), "LapDistPct": np.zeros(3)})
    _warm = True


class _LapWatch:
    """Completed laps of the open session, from its lap channels, for ``publish_lap``."""

    def __init__(self, dtype: np.dtype, tick_rate: int):
        self.names = [n for n in LAP_CHANNEL_TYPES if n in (dtype.names or ()) and dtype.fields[n][0].shape == ()]
        self.ok = {"SessionTime", "Lap", "LapDistPct"} <= set(self.names)
        self.cols: dict[str, list[np.ndarray]] = {n: [] for n in self.names}
        self.tick_rate = tick_rate
        self.published = 0
        self.pending_since: float | None = None  # SessionTime of a line crossing not yet published
        self.last_lap: int | None = None

    def add(self, rows: np.ndarray) -> list[dict[str, Any]]:
        if not self.ok or len(rows) == 0:
            return []
        for n in self.names:
            self.cols[n].append(np.array(rows[n]))
        lap = rows["Lap"]
        if self.last_lap is not None and lap.max() > self.last_lap or np.any(np.diff(lap) > 0):
            if self.pending_since is None:
                self.pending_since = float(rows["SessionTime"][0])
        self.last_lap = int(lap[-1])
        now = float(rows["SessionTime"][-1])
        if self.pending_since is None or now - self.pending_since < LLT_WINDOW_S + 0.5:
            return []
        return self.completed()

    def completed(self) -> list[dict[str, Any]]:
        """Complete laps not yet published (all of them at the session's end)."""
        if not self.ok or not self.cols["Lap"]:
            return []
        self.pending_since = None
        table = lap_table({n: np.concatenate(v) for n, v in self.cols.items()}, self.tick_rate)
        done = table[table.complete]
        new = done[done.lap_index >= self.published]
        if len(new):
            self.published = int(new.lap_index.max()) + 1
        return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
                for r in new.to_dict(orient="records")]


class SegmentWriter(threading.Thread):
    """Writes the rows the tick loop hands over into each session's recording folder."""

    def __init__(self, data: Path, finalizer: Finalizer, fsync: bool = True, publisher: Any = None):
        super().__init__(name="pitbox-segment-writer", daemon=True)
        self.data = data
        self.fsync = fsync
        self.finalizer = finalizer
        self.publisher = publisher
        self.q: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self.error: StoreError | None = None
        self._folders: dict[str, RecordingFolder] = {}
        self._layout: dict[str, tuple[int, np.dtype]] = {}
        self._laps: dict[str, _LapWatch] = {}
        self._broken: set[str] = set()
        self._nums: dict[str, int] = {}
        self._starts: dict[str, str] = {}

    # -- API for the tick loop (never blocks) ------------------------------------------
    def open(self, sid: str, meta: dict[str, Any], dtype: np.dtype) -> None:
        self.q.put(("open", sid, meta, dtype))

    def rows(self, sid: str, ticks: list[int], rows: list[bytes]) -> None:
        self.q.put(("rows", sid, ticks, rows))

    def yaml(self, sid: str, tick: int, update: int, raw: bytes) -> None:
        self.q.put(("yaml", sid, tick, update, raw))

    def close(self, sid: str, info: dict[str, Any]) -> None:
        self.q.put(("close", sid, info))

    def stop(self) -> None:
        self.q.put(None)

    # -- the thread ------------------------------------------------------------------
    def run(self) -> None:
        while (item := self.q.get()) is not None:
            kind, sid = item[0], item[1]
            if sid in self._broken:
                continue
            try:
                getattr(self, f"_do_{kind}")(*item[1:])
            except StoreError as exc:
                self._fail(sid, exc)
            except Exception as exc:  # a bug must not leave the recording locked and silent
                log.exception("segment writer")
                self._fail(sid, StoreError(f"{self.data}: recording failed: {exc!r}"))
        for sid in list(self._folders):  # stopped with sessions still open: leave them for recovery
            self._folders.pop(sid).release()

    def _fail(self, sid: str, exc: StoreError) -> None:
        folder = self._folders.pop(sid, None)
        if folder is not None:
            folder.release()  # what is written stays for 'pitbox recover'
            exc = StoreError(f"{exc}; the recording stopped; what was written before stays in {folder.path} "
                             f"and 'pitbox recover' turns it into a session")
        log.error("%s", exc)
        if self.error is None:
            self.error = exc
        self._broken.add(sid)

    def _do_open(self, sid: str, meta: dict[str, Any], dtype: np.dtype) -> None:
        folder = RecordingFolder(self.data, sid, self.fsync)
        self._folders[sid] = folder
        folder.create(meta)
        self._layout[sid] = (int(meta["buf_len"]), dtype)
        self._laps[sid] = _LapWatch(dtype, int(meta.get("tick_rate", 60)))
        self._nums[sid] = int(meta.get("session_num", 0))
        self._starts[sid] = str(meta.get("start"))

    def _do_rows(self, sid: str, ticks: list[int], rows: list[bytes]) -> None:
        buf_len, dtype = self._layout[sid]
        self._folders[sid].write_segment(ticks, rows, buf_len)
        if self.publisher is not None:
            decoded = np.frombuffer(b"".join(rows), dtype=dtype)
            for row in self._laps[sid].add(decoded):
                _call(self.publisher, "publish_lap", row)

    def _do_yaml(self, sid: str, tick: int, update: int, raw: bytes) -> None:
        folder = self._folders[sid]
        first = folder.yaml_seq == 0
        folder.write_yaml(tick, update, raw)
        if self.publisher is None:
            return
        try:
            info = session_yaml.parse(raw, f"session info update {update}")
        except PitboxError as exc:
            log.warning("%s", exc)
            return
        if first:
            num = self._nums.get(sid, 0)
            meta = {"id": sid, "start": self._starts.get(sid), **session_meta(None, info, num)}  # type: ignore[arg-type]
            _call(self.publisher, "publish_session", meta)
        _call(self.publisher, "publish_session_info", info)

    def _do_close(self, sid: str, info: dict[str, Any]) -> None:
        folder = self._folders.pop(sid)
        laps = self._laps.pop(sid, None)
        if self.publisher is not None and laps is not None:
            for row in laps.completed():
                _call(self.publisher, "publish_lap", row)
        self._layout.pop(sid, None)
        try:
            folder.close(info)
        except StoreError:
            folder.release()
            raise
        self.finalizer.submit(folder)


def _call(publisher: Any, method: str, *args: Any) -> None:
    fn = getattr(publisher, method, None)
    if fn is None:
        return
    try:
        fn(*args)
    except Exception:  # the stream must never stop the recording
        log.exception("publisher.%s failed", method)


#: How often the finalizer looks whether the recorder is idle, with sessions waiting to be indexed [s].
INDEX_IDLE_CHECK_S = 1.0


class Finalizer(threading.Thread):
    """Merges closed recording folders into session files, one at a time, in order.

    Stored sessions are then added to the team index, but only while ``busy()`` is false (no
    session being recorded) or when the recorder stops: the analysis must not take GIL turns
    from the tick loop.
    """

    def __init__(self, data: Path, on_session: Callable[[Path], None] | None = None, link: bool = True,
                 index: bool = True, busy: Callable[[], bool] | None = None):
        super().__init__(name="pitbox-finalizer", daemon=True)
        self.data = data
        self.on_session = on_session
        self.link = link
        self.index = index
        self.busy = busy or (lambda: False)
        self.q: queue.SimpleQueue[RecordingFolder | None] = queue.SimpleQueue()
        self.error: StoreError | None = None
        self.stored: list[Path] = []
        self.to_index: list[Path] = []  #: stored sessions waiting for an idle moment to be indexed

    def submit(self, folder: RecordingFolder) -> None:
        self.q.put(folder)

    def stop(self) -> None:
        self.q.put(None)

    def run(self) -> None:
        while True:
            try:
                folder = self.q.get(timeout=INDEX_IDLE_CHECK_S if self.to_index else None)
            except queue.Empty:
                self._index_if_idle()
                continue
            if folder is None:
                break
            self._finish(folder)
            self._index_if_idle()
        self._index_pending()

    def _finish(self, folder: RecordingFolder) -> None:
        """Merge one recording folder into its session file, link it, report it."""
        try:
            path = finalize(folder.path, self.data, remove=False)
        except StoreError as exc:
            log.error("%s", exc)
            self.error = self.error or exc
            folder.release()
            return
        except Exception as exc:
            log.exception("finalizer")
            self.error = self.error or StoreError(f"{folder.path}: cannot finish the session: {exc!r}")
            folder.release()
            return
        folder.release()
        remove_folder(folder.path)
        if path is None:
            return
        linked = self._link(path) if self.link else []
        Store(self.data).refresh()
        self.stored.append(path)
        if self.on_session is not None:
            try:
                self.on_session(path)
            except Exception:
                log.exception("on_session callback")
        if self.index:
            self.to_index += [path, *linked]

    def _link(self, path: Path) -> list[Path]:
        try:
            from pitbox.recorder.stint import link_session

            return link_session(Store(self.data), path)
        except PitboxError as exc:
            log.warning("%s: not linked to an .ibt of the same stint: %s", path, exc)
            return []

    def _index_if_idle(self) -> None:
        if self.to_index and not self.busy():
            self._index_pending()

    def _index_pending(self) -> None:
        """Add the stored sessions (or the ``.ibt`` sessions they were linked to) to the team
        index; never raises (see :func:`pitbox.team.index.index_after_store`)."""
        paths, self.to_index = list(dict.fromkeys(self.to_index)), []
        if paths:
            from pitbox.team.index import index_after_store

            index_after_store(self.data, [p for p in paths if p.exists()])
