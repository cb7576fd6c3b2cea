"""Browser-test and benchmark support: Debian's Chromium through playwright.

:func:`open_browser` launches ``/usr/lib/chromium/chromium`` (no browser download) with
``--no-sandbox`` and autoplay allowed; :func:`run_all_cells` runs a notebook open in
JupyterLab once its kernel is idle. Pages are awaited with playwright's waits, never
with fixed sleeps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pitbox.dashboard.jupyter import HarnessError, JupyterServer, inject_parameters

__all__ = ["CHROMIUM", "HarnessError", "JupyterServer", "chromium_missing_reason", "fake_microphone_args",
           "inject_parameters", "open_browser", "run_all_cells"]

#: Debian's Chromium binary (the /usr/bin/chromium wrapper prints shell errors on some machines).
CHROMIUM = Path(os.environ.get("PITBOX_CHROMIUM", "/usr/lib/chromium/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage"]


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when Chromium and playwright are present."""
    if not CHROMIUM.is_file():
        return (f"Chromium not found at {CHROMIUM}: run `make system-test` (as root) or "
                "`sudo apt-get install -y chromium fonts-dejavu-core`")
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


def open_browser(playwright: Any, extra_args: list[str] | tuple[str, ...] = (), **launch: Any) -> Any:
    """Debian's Chromium through playwright (never downloads a browser); ``extra_args`` are
    added to its command line (e.g. :func:`fake_microphone_args`)."""
    reason = chromium_missing_reason()
    if reason:
        raise HarnessError(reason)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + list(extra_args), **launch)


def fake_microphone_args(wav: str | os.PathLike[str]) -> list[str]:
    """Chromium flags that make ``wav`` (PCM16, played in a loop) the microphone, granted
    without asking."""
    return ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={Path(wav).resolve()}"]


#: JavaScript: true once the current notebook's kernel is idle (JupyterLab).
JS_KERNEL_IDLE = """() => {
  const app = window.jupyterapp; if (!app) return false;
  const w = app.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""


def run_all_cells(page: Any, timeout_s: float = 180.0) -> None:
    """In a JupyterLab page showing a notebook: wait for its kernel, then run every cell."""
    page.wait_for_function(JS_KERNEL_IDLE, timeout=timeout_s * 1000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
