"""iRacing emulator: plays ``.ibt`` files into iRacing's live shared-memory layout, in a
file that unmodified pyirsdk reads with ``irsdk.IRSDK().startup(test_file=PATH)``.

See ``docs/emulator.md``. The recorder's tests build on :class:`Emulator` and its ground
truth (:class:`TickRecord`, :class:`EmulatorEvent`).
"""

from pitbox.emulator.channels import LiveChannel, LiveLayout, live_layout
from pitbox.emulator.core import TRANSITIONS, Emulator, EmulatorEvent, TickRecord, remap_session_num
from pitbox.emulator.livemap import LiveMapWriter, MapGeometry, geometry

__all__ = [
    "TRANSITIONS", "Emulator", "EmulatorEvent", "LiveChannel", "LiveLayout", "LiveMapWriter", "MapGeometry",
    "TickRecord", "geometry", "live_layout", "remap_session_num",
]
