"""Stopping long-running commands cleanly on Ctrl-C, SIGTERM and (Windows) Ctrl-Break."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = [s for s in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, s)]


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT / SIGTERM (and SIGBREAK on Windows) call ``stop`` while the block runs.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name)
        previous[sig] = signal.signal(sig, lambda *_: stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
