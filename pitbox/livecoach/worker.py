"""The after-lap analyst in its own process.

The analysis of a lap is hundreds of milliseconds of Python (pandas, scipy, scikit-learn):
in a thread of the recorder's process it would hold the interpreter lock long enough to
lose ticks (iRacing keeps 3 rows, 50 ms). :class:`AnalystProcess` runs an
:class:`~pitbox.livecoach.analyst.Analyst` in a child started with ``spawn`` (the only start
method Windows has; nothing is inherited but the arguments), below normal priority so the
recorder always wins the CPU; it ends by itself when the recorder's process dies (killed,
crashed), so it never lingers as an orphan. Jobs go in through a :func:`multiprocessing.Queue` (its feeder
thread pickles and writes them, so :meth:`submit` never blocks the caller), results come
back through another one, read by a small thread that hands each to ``on_result``.

:class:`InlineAnalyst` has the same interface and runs the analyst in the caller's thread
(tests, benchmarks, and notebooks that prefer no extra process).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

_STOP = "stop"
#: how often an idle analyst checks that its parent (the recorder) is still alive [s]
PARENT_CHECK_S = 1.0


def _lower_priority() -> None:
    """Below normal priority: the recorder (and iRacing) come first."""
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            import ctypes

            below_normal = 0x00004000
            ctypes.windll.kernel32.SetPriorityClass(ctypes.windll.kernel32.GetCurrentProcess(), below_normal)
        else:
            os.nice(10)
    except (OSError, AttributeError):  # pragma: no cover - not allowed here: run as is
        pass


def _child(jobs: Any, results: Any, data: str | None, log_level: int) -> None:
    """The analyst process: take jobs, put results, until the stop sentinel."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    _lower_priority()
    from pitbox.livecoach.analyst import Analyst, warm_up
    from pitbox.livecoach.jobs import Done

    analyst = Analyst(data)
    results.put(("ready", os.getpid()))
    warm_up()
    parent = mp.parent_process()
    while True:
        try:
            batch = jobs.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if parent is not None and not parent.is_alive():  # the recorder died (killed, crashed)
                logging.getLogger(__name__).warning("live coach analyst: the recorder is gone, stopping")
                return
            continue
        if batch == _STOP:
            break
        out: list[Any] = []
        for job in batch:
            try:
                out.extend(analyst.handle(job))
            except Exception:  # noqa: BLE001 - one bad job must not end the coach
                logging.getLogger(__name__).exception("live coach analyst")
        results.put([*out, Done(len(batch))])
    results.put(_STOP)


class AnalystProcess:
    """An :class:`~pitbox.livecoach.analyst.Analyst` in a child process (see the module docs).

    ``on_result(result)`` is called on a reader thread for each result. ``data``: the store.
    """

    def __init__(self, on_result: Callable[[Any], None], data: str | os.PathLike[str] | None = None):
        ctx = mp.get_context("spawn")
        self._jobs = ctx.Queue()
        self._results = ctx.Queue()
        self._proc = ctx.Process(target=_child, name="pitbox-livecoach-analyst", daemon=True,
                                 args=(self._jobs, self._results, None if data is None else str(data),
                                       logging.getLogger().getEffectiveLevel()))
        self._on_result = on_result
        self._reader: threading.Thread | None = None
        self.ready = threading.Event()
        self.pid: int | None = None

    def start(self) -> AnalystProcess:
        self._proc.start()
        self._reader = threading.Thread(target=self._read, name="pitbox-livecoach-results", daemon=True)
        self._reader.start()
        return self

    def submit(self, jobs: Iterable[Any]) -> None:
        """Hand jobs over (never blocks: the queue's feeder thread writes them)."""
        batch = list(jobs)
        if batch:
            self._jobs.put(batch)

    def _read(self) -> None:
        while True:
            try:
                item = self._results.get()
            except (EOFError, OSError):
                return
            if item == _STOP:
                return
            if isinstance(item, tuple) and item and item[0] == "ready":
                self.pid = item[1]
                self.ready.set()
                continue
            for result in item:
                try:
                    self._on_result(result)
                except Exception:  # noqa: BLE001
                    log.exception("live coach: handling an analyst result")

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the analyst finish the jobs it has, then end it (terminated after ``timeout``)."""
        if self._proc.is_alive():
            try:
                self._jobs.put(_STOP)
            except (OSError, ValueError):
                pass
            self._proc.join(timeout)
            if self._proc.is_alive():
                log.warning("live coach analyst did not stop within %s s: terminated", timeout)
                self._proc.terminate()
                self._proc.join(5)
        if self._reader is not None:
            self._reader.join(timeout)
        # Jobs the analyst will never read (it was terminated, or died) may still fill the
        # pipe: waiting for the queue's feeder thread to write them would wait forever. They
        # are analysis requests only (nothing recorded is in them), so they are dropped.
        self._jobs.cancel_join_thread()
        for q in (self._jobs, self._results):
            q.close()
            q.join_thread()


class InlineAnalyst:
    """The same interface, in the caller's thread: ``submit`` runs the jobs at once."""

    def __init__(self, on_result: Callable[[Any], None], data: str | os.PathLike[str] | None = None):
        from pitbox.livecoach.analyst import Analyst

        self._analyst = Analyst(data)
        self._on_result = on_result
        self.ready = threading.Event()
        self.ready.set()
        self.pid = os.getpid()

    def start(self) -> InlineAnalyst:
        return self

    def submit(self, jobs: Iterable[Any]) -> None:
        from pitbox.livecoach.jobs import Done

        batch = list(jobs)
        for job in batch:
            for result in self._analyst.handle(job):
                self._on_result(result)
        self._on_result(Done(len(batch)))

    @property
    def alive(self) -> bool:
        return True

    def stop(self, timeout: float = 10.0) -> None:
        pass
