"""The live stream's wire format: a versioned JSON envelope, I/O-free.

Every message is one JSON object (a WebSocket text frame) with ``"v"`` (the protocol
version, :data:`VERSION`) and ``"type"``. Server to client:

* ``hello``: sent first on every connection (server name, role, rates, known channels,
  current session, and on a relay the live drivers).
* ``subscribed``: the answer to ``subscribe`` (channels, rate, drivers, unknown channels).
* ``frame``: ``{"tick": int, "t": session_time_s, "values": {channel: value}}`` (plus
  ``"driver"`` on a relay). Array channels are JSON lists; NaN and infinities are ``null``.
* ``lap`` (``"row"``: one lap-table row), ``session`` (``"meta"``: a session change),
  ``session_info`` (``"info"``: the parsed session YAML).
* ``history``: ``{"frames": [{"tick", "t", "values"}...], "done": bool}`` chunks answering a
  ``history`` request, oldest first; the last chunk has ``"done": true``.
* ``drivers`` (relay): the driver list changed. ``error``: ``{"code", "message"}``.
* ``reference``, ``coach``, ``tip`` (the live coach, :mod:`pitbox.livecoach`): the latest
  ``reference`` and ``coach`` and the session's tips are kept for clients that join later.

Client to server: ``subscribe`` (``channels``: list or null for all, ``rate``: 60, 30, 10
or 1, ``drivers``: list or null for all on a relay), ``history`` (``since_tick``: only
frames after that tick), ``set_reference`` (``kind``, ``lap``; on a relay ``driver``:
switch the live coach's reference) and ``command`` (``command``, ``arg``; on a relay
``driver``: a voice command for the recorder's voice coach, answered with ``command_ok``
and then spoken, as a ``voice`` message, like a command heard on the driver's microphone).
A relay publisher sends ``hello`` (``driver``), then ``frame``, ``lap``, ``session``,
``session_info`` and the live coach's messages in the same envelope; the relay passes
``set_reference`` and ``command`` on to it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pitbox.errors import PitboxError
from pitbox.live.constants import DEFAULT_PORT, RATES, TICK_RATE_HZ, VERSION  # noqa: F401  (re-exported)

MAX_CHANNELS = 4096
MAX_NAME_LEN = 64
_DRIVER_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class LiveError(PitboxError):
    """The live stream, relay or client cannot do what was asked (bad setting, refused
    connection, server not started). The message says which setting or address and what
    was expected."""


class ProtocolError(LiveError):
    """A message that breaks the envelope; ``code`` is the ``error`` message's code."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def jsonable(value: Any) -> Any:
    """A channel value as JSON-safe Python: numpy scalars and arrays to numbers and lists,
    NaN and infinities to None, bytes to text."""
    t = type(value)
    if t is float:
        return value if math.isfinite(value) else None
    if t is int or t is bool or t is str or value is None:
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return np.where(np.isfinite(value), value.astype(object), None).tolist()
        if value.dtype.kind == "S":
            return [jsonable(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).split(b"\x00", 1)[0].decode("latin-1")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, int):
        return int(value)
    return str(value)


def dumps(msg: Mapping[str, Any]) -> bytes:
    """One message as compact UTF-8 JSON (``msg`` must already be JSON-safe)."""
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def envelope(kind: str, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "type": kind, **fields}


def error(code: str, message: str, request_id: str | int | None = None) -> bytes:
    """An ``error`` message; ``request_id`` (a ``command``'s ``id``) is echoed as ``id``."""
    if request_id is None:
        return dumps(envelope("error", code=code, message=message))
    return dumps(envelope("error", code=code, message=message, id=request_id))


def frame_message(tick: int, t: float, values: Mapping[str, Any], driver: str | None = None) -> dict[str, Any]:
    msg = envelope("frame", tick=tick, t=t, values=values)
    if driver is not None:
        msg["driver"] = driver
    return msg


#: Live coach messages a stream keeps for clients that join later: the latest of each of
#: these types, and every message of :data:`KEEP_ALL` types (the session's tips).
KEEP_LATEST = ("reference", "coach")
KEEP_ALL = ("tip",)
#: Live coach messages passed on as they come and not kept: ``voice`` (what the voice coach
#: said, issue 11: a remote coach hears it when it is said, not when he joins).
PASS_ON = ("voice",)
COACH_TYPES = (*KEEP_LATEST, *KEEP_ALL, *PASS_ON)
REFERENCE_KINDS = ("session_best", "all_time_best", "optimal", "lap")


class Derived:
    """A frame's values with derived channels added (the live coach's ``pitbox_*``):
    ``row`` is what the recorder published (a dict or its decoded ``np.void`` row), ``extra``
    a dict of JSON-safe values. Clients see one set of channels."""

    __slots__ = ("row", "extra")

    def __init__(self, row: Any, extra: Mapping[str, Any]):
        self.row = row
        self.extra = extra


def channel_names(values: Any) -> list[str]:
    """The channels of a frame's values: a dict's keys, or a numpy structured row's fields."""
    if isinstance(values, Derived):
        return [*channel_names(values.row), *values.extra]
    if isinstance(values, np.void):
        return list(values.dtype.names or ())
    return list(values)


def select_values(values: Any, channels: Sequence[str] | None, clean: bool) -> dict[str, Any]:
    """The chosen channels of one frame (all when ``channels`` is None), JSON-safe.

    ``values`` is a dict (channel -> value), a numpy structured row (``np.void``, the
    reader's row dtype), whose channels are then converted only when asked for, or either
    with derived channels (:class:`Derived`). ``clean`` says the values are already
    JSON-safe (they came from JSON)."""
    if isinstance(values, Derived):
        extra = values.extra
        out = select_values(values.row, None if channels is None else [k for k in channels if k not in extra], clean)
        out.update(extra if channels is None else {k: extra[k] for k in channels if k in extra})
        return out
    if isinstance(values, np.void):
        fields = values.dtype.fields or {}
        names = list(fields) if channels is None else [k for k in channels if k in fields]
        return {k: jsonable(values[k]) for k in names}
    if channels is None:
        return dict(values) if clean else {k: jsonable(v) for k, v in values.items()}
    if clean:
        return {k: values[k] for k in channels if k in values}
    return {k: jsonable(values[k]) for k in channels if k in values}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (send null)")


def decode(data: str | bytes, max_bytes: int) -> dict[str, Any]:
    """A received text message as a checked envelope; raises :class:`ProtocolError`."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("binary", "expected a text frame holding one JSON object, got a binary frame")
    if len(data) > max_bytes:
        raise ProtocolError("too_big", f"message of {len(data)} characters; at most {max_bytes} allowed")
    try:
        msg = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"message is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", f"expected a JSON object, got {type(msg).__name__}")
    if msg.get("v") != VERSION:
        raise ProtocolError("bad_version", f"field v: expected {VERSION}, got {msg.get('v')!r}")
    if not isinstance(msg.get("type"), str):
        raise ProtocolError("bad_message", "field type: expected a string")
    return msg


def check_rate(value: Any) -> int:
    if type(value) is not int or value not in RATES:
        raise ProtocolError("bad_rate", f"field rate: expected one of {list(RATES)} Hz, got {value!r}")
    return value


def check_names(value: Any, field: str) -> tuple[str, ...] | None:
    """A list of channel names (None or ``"*"`` means all)."""
    if value is None or value == "*":
        return None
    if not isinstance(value, list) or len(value) > MAX_CHANNELS:
        raise ProtocolError("bad_" + field, f"field {field}: expected a list of at most {MAX_CHANNELS} names or null")
    for name in value:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LEN:
            raise ProtocolError("bad_" + field, f"field {field}: expected names of 1..{MAX_NAME_LEN} characters, got {name!r}")
    return tuple(dict.fromkeys(value))


def check_driver_id(value: Any) -> str:
    if not isinstance(value, str) or not _DRIVER_ID.match(value):
        raise ProtocolError("bad_driver", f"driver id: expected 1..64 of A-Z a-z 0-9 _ . -, got {value!r}")
    return value


def check_frame(msg: Mapping[str, Any]) -> tuple[int, float, dict[str, Any]]:
    """A publisher's ``frame`` message as (tick, session_time_s, values)."""
    tick, t, values = msg.get("tick"), msg.get("t"), msg.get("values")
    if type(tick) is not int:
        raise ProtocolError("bad_frame", f"field tick: expected an integer, got {tick!r}")
    if type(t) not in (int, float):
        raise ProtocolError("bad_frame", f"field t: expected the session time in seconds, got {t!r}")
    if not isinstance(values, dict):
        raise ProtocolError("bad_frame", "field values: expected an object of channel values")
    return tick, float(t), values


def check_set_reference(msg: Mapping[str, Any]) -> tuple[str, str | None]:
    """A ``set_reference`` message's ``(kind, lap)``; raises :class:`ProtocolError`."""
    kind, lap = msg.get("kind"), msg.get("lap")
    if kind not in REFERENCE_KINDS:
        raise ProtocolError("bad_reference", f"field kind: expected one of {', '.join(REFERENCE_KINDS)}, got {kind!r}")
    if kind == "lap":
        if not isinstance(lap, str) or ":" not in lap or not lap.rpartition(":")[2].strip().isdigit():
            raise ProtocolError("bad_reference", f"field lap: expected SESSION:LAP (LAP the lap table's lap_index) "
                                f"with kind lap, got {lap!r}")
    elif lap is not None:
        raise ProtocolError("bad_reference", f"field lap: only kind lap takes SESSION:LAP, got {lap!r}")
    return kind, lap


#: The most a ``focus on turn`` command's turn number may be.
MAX_TURN = 99


def check_command(msg: Mapping[str, Any]) -> tuple[str, int | None]:
    """A ``command`` message's ``(command, arg)``: ``command`` one of the voice coach's
    commands (:data:`pitbox.voice.coach.COMMANDS`), ``arg`` the turn number of ``focus on
    turn`` (null: focus off) and null for the others; raises :class:`ProtocolError`."""
    from pitbox.voice.coach import COMMANDS

    name, arg = msg.get("command"), msg.get("arg")
    if not isinstance(name, str) or name.strip().lower() not in COMMANDS:
        raise ProtocolError("bad_command", f"field command: expected one of {', '.join(COMMANDS)}, got {name!r}")
    name = name.strip().lower()
    if name == "focus on turn":
        if arg is not None and (type(arg) is not int or not 1 <= arg <= MAX_TURN):
            raise ProtocolError("bad_command", f"field arg: expected the turn number 1..{MAX_TURN} (or null: focus "
                                f"off) with focus on turn, got {arg!r}")
    elif arg is not None:
        raise ProtocolError("bad_command", f"field arg: only focus on turn takes a number, got {arg!r} with {name!r}")
    command_id(msg)
    return name, arg


#: The longest ``id`` a ``command`` may carry [characters].
MAX_ID_CHARS = 64


def command_id(msg: Mapping[str, Any]) -> str | int | None:
    """A ``command`` message's optional ``id`` (a string of 1..64 characters or an integer),
    echoed in its ``command_ok`` or ``error`` and as ``reply_to`` in the ``voice`` message
    that answers it, so that a client tells its answers from another client's; raises
    :class:`ProtocolError` (``bad_command``) for anything else."""
    rid = msg.get("id")
    if rid is None or (type(rid) is int) or (isinstance(rid, str) and 0 < len(rid) <= MAX_ID_CHARS):
        return rid
    raise ProtocolError("bad_command", f"field id: expected a string of 1..{MAX_ID_CHARS} characters or an integer, "
                        f"got {rid!r}")


def request_id(msg: Any) -> str | int | None:
    """The ``id`` to echo in an error about ``msg`` (a ``command`` with a valid ``id``), else None."""
    if not isinstance(msg, Mapping) or msg.get("type") != "command":
        return None
    try:
        return command_id(msg)
    except ProtocolError:
        return None
