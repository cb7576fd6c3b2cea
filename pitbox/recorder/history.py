"""Session-YAML history: every update kept with the tick at which it appeared.

iRacing rewrites the whole session YAML when anything in it changes (a driver joins, a lap
result, the weather), so a race holds hundreds of versions of a 50 KB text. A session file
stores the first version in full (``session_yaml``) and each later one as line edits
against the one before (``yaml_updates``); :func:`yaml_history` rebuilds the full texts.

An entry of ``yaml_updates``::

    {"tick": header tick_count, "row": index of the first row that saw it,
     "session_time": SessionTime of that row [s], "update": iRacing's session_info_update,
     "ops": [[first_line, end_line, "replacement text"], ...]}   # line numbers of the old text
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any


def diff_lines(old: str, new: str) -> list[list[Any]]:
    """Edits that turn ``old`` into ``new``: ``[first_line, end_line, text]`` on ``old``'s lines."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    ops = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            ops.append([i1, i2, "".join(b[j1:j2])])
    return ops


def apply_ops(old: str, ops: list[list[Any]]) -> str:
    """Apply :func:`diff_lines` edits to ``old``."""
    a = old.splitlines(keepends=True)
    out: list[str] = []
    pos = 0
    for i1, i2, text in ops:
        out.extend(a[pos:int(i1)])
        out.append(str(text))
        pos = int(i2)
    out.extend(a[pos:])
    return "".join(out)


def yaml_history(meta: Mapping[str, Any]) -> list[tuple[int, str]]:
    """``[(tick, yaml_text), ...]`` of a session: its first YAML, then every update.

    The first entry's tick is the session's first tick (``first_tick``; 0 when unknown,
    e.g. for an ``.ibt`` import, which has one YAML).
    """
    text = str(meta.get("session_yaml") or "")
    out = [(int(meta.get("first_tick") or 0), text)]
    for u in meta.get("yaml_updates") or []:
        text = apply_ops(text, u["ops"])
        out.append((int(u["tick"]), text))
    return out


def yaml_at(meta: Mapping[str, Any], tick: int) -> str:
    """The session YAML as it was in memory at header tick ``tick``."""
    hist = yaml_history(meta)
    text = hist[0][1]
    for t, y in hist:
        if t <= tick:
            text = y
    return text
