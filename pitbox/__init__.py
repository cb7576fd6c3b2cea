"""PitBox: record, analyse and learn from iRacing telemetry.

The main entry points, imported on first use so that ``import pitbox`` stays light (the
command line starts without pandas, pyarrow or plotly)::

    import pitbox
    pitbox.__version__                         # from the installed package's metadata
    tf = pitbox.open_telemetry("x.ibt")        # an .ibt file or a live memory dump (pitbox.ibt)
    store = pitbox.Store("data")               # the Parquet session store (pitbox.store)
    s = pitbox.load_session("20150528", data="data")   # a session to analyse (pitbox.analysis)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pitbox.analysis.session import load_session
    from pitbox.ibt.reader import open_telemetry
    from pitbox.store import Store

#: public name -> module that defines it
_LAZY = {
    "load_session": "pitbox.analysis.session",
    "Store": "pitbox.store",
    "open_telemetry": "pitbox.ibt.reader",
}

__all__ = ["Store", "__version__", "load_session", "open_telemetry"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pitbox")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'pitbox' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
