"""sha256 of source files, computed in a background thread while the caller does other work.

The store names a session after its source file's sha256 (``pitbox.store``), so an import
needs the hash of every file it imports. Hashing a 1-hour ``.ibt`` (230 MB) takes ~0.1 s of
CPU; :class:`FileDigests` starts it at once, in file order, in a thread (hashlib releases
the GIL), so that it runs on the other core while the process imports numpy and pyarrow and
while the import decodes and writes. This module imports nothing heavy: ``pitbox import``
starts it before the heavy libraries load.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path

#: Bytes read per step (a buffer reused for the whole file).
CHUNK_BYTES = 1 << 20


def sha256_file(path: str | os.PathLike[str], chunk: int = CHUNK_BYTES) -> str:
    """The hex sha256 of a file's bytes (read in ``chunk``-byte steps into one buffer)."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(path)


class FileDigests:
    """sha256 of ``paths``, computed one after the other in a daemon thread started now.

    :meth:`get` waits for one file's hash (a file not in the list is hashed on the spot);
    an error reading a file is raised by :meth:`get` for that file only.
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]] = ()):
        self._futures: dict[str, Future[str]] = {}
        order = []
        for p in paths:
            key = _key(p)
            if key not in self._futures:
                self._futures[key] = Future()
                order.append((key, Path(p)))
        self._thread = threading.Thread(target=self._run, args=(order,), name="pitbox-sha256", daemon=True)
        self._thread.start()

    def _run(self, order: list[tuple[str, Path]]) -> None:
        for key, path in order:
            fut = self._futures[key]
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(sha256_file(path))
            except BaseException as exc:  # handed to the caller of get()
                fut.set_exception(exc)

    def get(self, path: str | os.PathLike[str]) -> str:
        """The hex sha256 of ``path`` (waits for the thread; raises what reading it raised)."""
        fut = self._futures.get(_key(path))
        return fut.result() if fut is not None else sha256_file(path)

    def ready(self, path: str | os.PathLike[str]) -> bool:
        """Whether the hash of ``path`` is known already (without waiting)."""
        fut = self._futures.get(_key(path))
        return fut is not None and fut.done()


def iter_sources(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named, and ``.ibt`` files below folders named (recursively, sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() == ".ibt" and q.is_file()))
        else:
            out.append(p)
    return out
