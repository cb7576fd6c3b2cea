"""A PitBox anywidget that the page can report deaf, and the box that replaces it then.

anywidget (0.11.0, read in its own JavaScript; the limit guards the queue that holds a
model's early messages) gives a model two seconds from its creation in the page to load and
bind its JavaScript module. On a busy page (a Voilà page
loading beside JupyterLab, a laptop running iRacing) it can take longer; the model's
``Runtime.ready`` then rejects ("[anywidget] Failed to initialize model." in the browser's
console) and every message the kernel sends to that model afterwards is dropped: custom
messages and trait updates alike. The view renders and its own messages reach the kernel,
so the page looks alive and shows nothing new, until the page is reloaded.

:class:`Hearing` answers each view's ``hello`` (``static/hearing.js``, prepended to the
widget's module) at once; a view that has heard nothing after ``HEARING_MS`` says
``deaf``. When a view says so although its first ``hello`` was answered at least
:data:`GRACE_S` before (the answer had time to arrive: it is the model that is deaf, not
the kernel that was busy), :class:`Slot`, the box that shows the widget, puts a new one in
its place: a new model, which the page makes afresh, and a new view.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, Generic, TypeVar

import anywidget
import ipywidgets as W

log = logging.getLogger(__name__)

#: the clock the grace period is measured on [s] (monotonic)
clock = time.monotonic
#: a ``deaf`` report renews the widget only when the view's first ``hello`` was answered at
#: least this long before it arrived [s] (an answer still on its way is not a deaf model)
GRACE_S = 2.0


def with_hearing(esm: str) -> str:
    """``esm`` (a widget's module text) with ``watchHearing(model, el, viewId)`` defined
    before it (``static/hearing.js``)."""
    hearing = resources.files("pitbox").joinpath("static/hearing.js").read_text(encoding="utf-8")
    return hearing + "\n" + esm


class Hearing(anywidget.AnyWidget):
    """An anywidget whose views check that they hear the kernel (module docstring).
    ``on_deaf`` (set by a :class:`Slot`) is called, on the kernel's thread, when a view
    stayed deaf although its ``hello`` was answered."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.on_deaf: Callable[[], None] | None = None
        self._answered: dict[str, float] = {}  # view -> when its first hello was answered [monotonic s]
        self.on_msg(self._on_hearing_msg)

    def _on_hearing_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind, view = content.get("type"), str(content.get("view"))
        if kind == "hello":
            self._answered.setdefault(view, clock())
            self.send({"type": "hello", "view": view})
        elif kind == "deaf":
            first = self._answered.get(view)
            if first is None or clock() - first < GRACE_S:
                return  # the answer may still be on its way
            log.warning("%s: the page hears nothing from this widget (anywidget dropped its model); making a new one",
                        type(self).__name__)
            self._answered.pop(view, None)
            if self.on_deaf is not None:
                self.on_deaf()


H = TypeVar("H", bound=Hearing)


class Slot(W.Box, Generic[H]):
    """Shows one widget made by ``make()``; when the page reports it deaf, makes another,
    calls ``on_new(old, new)`` (to carry state over), shows it and closes the old one.
    ``widget`` is the one shown; ``renewals`` counts the replacements."""

    def __init__(self, make: Callable[[], H], on_new: Callable[[H, H], None] | None = None, **kwargs: Any):
        self._make = make
        self._on_new = on_new
        self._lock = threading.Lock()
        self.renewals = 0
        self.widget: H = self._watch(make())
        super().__init__([self.widget], **kwargs)

    def _watch(self, widget: H) -> H:
        widget.on_deaf = self.renew
        return widget

    def renew(self) -> H:
        """Put a new widget in place of the one shown (also callable by hand)."""
        with self._lock:
            old = self.widget
            new = self._watch(self._make())
            if self._on_new is not None:
                self._on_new(old, new)
            self.widget = new
            self.renewals += 1
            self.children = (new,)
        old.on_deaf = None
        old.close()
        return new
