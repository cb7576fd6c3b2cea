"""iRacing emulator: plays ``.ibt`` files into iRacing's live shared-memory layout, in a
file that unmodified pyirsdk reads with ``irsdk.IRSDK().startup(test_file=PATH)``.

See ``docs/emulator.md``. The recorder's tests build on :class:`Emulator` and its ground
truth (:class:`TickRecord`, :class:`EmulatorEvent`). Names load on first use
(``lazy_loader``): ``pitbox emulate --help`` loads no numpy.
"""

from __future__ import annotations

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "channels": ["LiveChannel", "LiveLayout", "live_layout"],
    "core": ["Emulator", "EmulatorEvent", "TickRecord", "remap_session_num"],
    "livemap": ["LiveMapWriter", "MapGeometry", "geometry"],
    "transitions": ["TRANSITIONS"],
})
