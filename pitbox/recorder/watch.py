"""The telemetry-folder watcher: imports each new ``.ibt`` once iRacing has finished it.

iRacing writes an ``.ibt`` while the driver is in the car and fills in its record count
when it closes the file. A file is imported when

* its size has not changed for ``stable_s`` seconds (default 5), and
* its disk sub-header's record count × row length equals the bytes after the header
  (a file still being written has a record count of 0, or rows still arriving).

Each file is imported once (the store's import is idempotent too); what was imported is
remembered in ``<data>/.watch-state.json`` so a restarted watcher does not hash every old
file again. After an import the new sessions are linked with a live recording of the
same stint (:mod:`pitbox.recorder.stint`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pitbox.errors import IbtFormatError, PitboxError, StoreError, TruncatedWarning
from pitbox.ibt.layout import DISK_SUB_HEADER_DTYPE, DISK_SUB_HEADER_SIZE, HEADER_SIZE
from pitbox.ibt.reader import parse_header
from pitbox.store import ImportResult, Store, import_file

log = logging.getLogger(__name__)

STATE_NAME = ".watch-state.json"


def ibt_finished(path: str | os.PathLike[str]) -> bool:
    """True when the file's record count × row length equals its data size (never raises)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE + DISK_SUB_HEADER_SIZE)
            size = os.fstat(f.fileno()).st_size
        if len(head) < HEADER_SIZE + DISK_SUB_HEADER_SIZE:
            return False
        h = parse_header(head)
        d = np.frombuffer(head, DISK_SUB_HEADER_DTYPE, count=1, offset=HEADER_SIZE)[0]
    except (OSError, IbtFormatError):
        return False
    records = int(d["session_record_count"])
    data_offset = h.var_buf[0][1]
    return records > 0 and h.buf_len > 0 and records * h.buf_len == size - data_offset


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  #: monotonic time the size was first seen
    done: str | None = None  #: "imported", "present" or "failed" for this size and mtime


class Watcher:
    """Watches ``folder`` for ``.ibt`` files and imports finished ones into ``data``.

    :meth:`scan` does one pass (tests drive it directly); :meth:`run` scans every
    ``poll_s`` seconds until the stop event is set. ``on_result`` is called with each
    :class:`~pitbox.store.ImportResult`.
    """

    def __init__(self, folder: str | os.PathLike[str], data: str | os.PathLike[str], *, stable_s: float = 5.0,
                 poll_s: float = 1.0, link: bool = True, clock: Callable[[], float] = time.monotonic,
                 on_result: Callable[[ImportResult], None] | None = None):
        self.folder = Path(folder)
        self.data = Path(data)
        self.stable_s = stable_s
        self.poll_s = poll_s
        self.link = link
        self.clock = clock
        self.on_result = on_result
        self.seen: dict[Path, _Seen] = {}
        self.results: list[ImportResult] = []
        self._state = self._load_state()

    # -- persisted state ---------------------------------------------------------------
    def _load_state(self) -> dict[str, list]:
        try:
            return json.loads((self.data / STATE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _save_state(self) -> None:
        tmp = self.data / f".{STATE_NAME}.part"
        try:
            tmp.write_text(json.dumps(self._state), encoding="utf-8")
            os.replace(tmp, self.data / STATE_NAME)
        except OSError as exc:
            log.info("watch state not saved: %s", exc)

    # -- scanning ----------------------------------------------------------------------
    def candidates(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.rglob("*") if p.suffix.lower() == ".ibt" and p.is_file())

    def scan(self) -> list[ImportResult]:
        """One pass: import every file that is finished and has been stable long enough."""
        out = []
        now = self.clock()
        for p in self.candidates():
            try:
                st = p.stat()
            except OSError:
                continue
            s = self.seen.get(p)
            if s is None or (s.size, s.mtime_ns) != (st.st_size, st.st_mtime_ns):
                s = self.seen[p] = _Seen(st.st_size, st.st_mtime_ns, now)
                if self._state.get(str(p.resolve())) == [st.st_size, st.st_mtime_ns]:
                    s.done = "present"
            if s.done is not None or now - s.since < self.stable_s or not ibt_finished(p):
                continue
            r = self._import(p)
            s.done = r.status
            if r.status != "failed":
                self._state[str(p.resolve())] = [st.st_size, st.st_mtime_ns]
                self._save_state()
            out.append(r)
            self.results.append(r)
            if self.on_result is not None:
                self.on_result(r)
        return out

    def _import(self, p: Path) -> ImportResult:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TruncatedWarning)
                r = import_file(p, self.data)
        except StoreError:
            raise
        except (PitboxError, OSError) as exc:
            log.warning("%s: not imported: %s", p, exc)
            return ImportResult(p, "failed", error=str(exc))
        store = Store(self.data)
        store.refresh()
        if self.link:
            from pitbox.recorder.stint import link_session

            for sid in r.sessions:
                try:
                    link_session(store, store.resolve(sid))
                except PitboxError as exc:
                    log.warning("%s: session %s not linked: %s", p, sid, exc)
        if r.status == "imported":
            from pitbox.team.index import index_after_store

            index_after_store(self.data, [q for q in r.written if q.exists()])
        log.info("%s: %s (%s)", p, r.status, ", ".join(r.sessions))
        return r

    def run(self, stop: threading.Event) -> None:
        """Scan every ``poll_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            self.scan()
            stop.wait(self.poll_s)
