"""The team archive: a lap and corner index beside the sessions, and team questions on it.

>>> import pitbox.team as team
>>> team.leaderboard("data")                                  # DuckDB, embedded (default)
>>> team.corners("data", track="pitboxsim_demo", car="pitboxsim_gt")
>>> team.leaderboard("s3://club/archive", engine="dask", scheduler="tcp://10.0.0.5:8786")

Every question returns a plain DataFrame; the same question on DuckDB and on Dask gives the
same frame. The index (``<data>/_index/laps/track=…/car=…/<YYYY>.parquet`` and
``_index/corners/…``) is written when a session is imported or recorded and can always be
rebuilt from the sessions (:func:`rebuild`). See docs/team.md.

Nothing heavy is imported here: DuckDB and Dask load when a question runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "leaderboard": "pitbox.team.questions",
    "progress": "pitbox.team.questions",
    "corners": "pitbox.team.questions",
    "consistency": "pitbox.team.questions",
    "setups": "pitbox.team.questions",
    "laps": "pitbox.team.questions",
    "drivers": "pitbox.team.questions",
    "ENGINES": "pitbox.team.questions",
    "index_sessions": "pitbox.team.index",
    "rebuild": "pitbox.team.index",
    "update": "pitbox.team.index",
    "status": "pitbox.team.index",
    "forget_sessions": "pitbox.team.index",
    "session_rows": "pitbox.team.index",
    "IndexReport": "pitbox.team.index",
    "import_laps": "pitbox.team.lapimport",
    "TeamError": "pitbox.team.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pitbox.team' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
