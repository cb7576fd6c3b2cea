"""The session-info YAML iRacing writes, decoded and repaired.

iRacing writes YAML that a strict parser rejects now and then. Each repair below is a
named function with a test that breaks a real file's YAML in exactly that way. The repairs
are the ones pyirsdk carries (our reference reader), applied per top-level section as
pyirsdk applies them, plus the few pyirsdk lacks (marked).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.reader import Reader as _YamlReader

from pitbox.errors import IbtFormatError

UTF8_SIGN = b"---\nWeekendInfo:\n Encoding: UTF8"
#: Bytes undefined in Windows-1252; iRacing sometimes writes them. pyirsdk maps them to spaces.
_CP1252_UNDEFINED = bytes.maketrans(b"\x81\x8d\x8f\x90\x9d", b"     ")
_SECTION = re.compile(r"^(\w+):[ \t]*$", re.M)

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader without the timestamp resolver: dates stay strings, as in pyirsdk."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def is_utf8(raw: bytes) -> bool:
    """True when the YAML says ``Encoding: UTF8`` (newer builds); else it is Windows-1252."""
    return raw.startswith(UTF8_SIGN)


def decode(raw: bytes) -> str:
    """Session-info bytes to text: UTF-8 when flagged, else Windows-1252; NULs and
    characters YAML forbids removed."""
    raw = raw.split(b"\x00", 1)[0]
    try:
        text = raw.decode("utf-8") if is_utf8(raw) else raw.translate(_CP1252_UNDEFINED).decode("cp1252")
    except UnicodeDecodeError:
        text = raw.translate(_CP1252_UNDEFINED).decode("cp1252")
    return _YamlReader.NON_PRINTABLE.sub("", text)


def _quote(m: re.Match[str]) -> str:
    escaped = re.sub(r'(["\\])', r"\\\1", m.group("value"))
    return f'{m.group("key")}"{escaped}"'


def repair_escape_quoted_values(src: str) -> str:
    """UTF-8 builds write ``Key: "a "nick" name"``: escape inner quotes and backslashes."""
    return re.sub(r'(?P<key>^\s*\w+: )"(?P<value>.*)"$', _quote, src, flags=re.M)


def repair_quote_driver_names(src: str, utf8: bool) -> str:
    """Driver, team and setup names are written unquoted and may hold ``:``, ``#`` or quotes."""
    keys = "DriverSetupName" if utf8 else "DriverSetupName|UserName|TeamName|AbbrevName|Initials"
    return re.sub(rf"(?P<key>(?:{keys}): )(?P<value>.+)", _quote, src)


def repair_leading_comma(src: str) -> str:
    """Values that start with a comma (``Sectors: ,``) are quoted."""
    return re.sub(r"(?P<key>\w+: )(?P<value>,.*)", _quote, src)


def repair_car_number(src: str) -> str:
    """(not in pyirsdk) An unquoted ``CarNumber: 007`` would load as the octal int 7: quote it."""
    return re.sub(r"(?P<key>^\s*CarNumber: )(?P<value>\d+)[ \t]*$", _quote, src, flags=re.M)


def split_sections(text: str) -> dict[str, str]:
    """Top-level sections (``WeekendInfo``, ``DriverInfo`` …) as the text of each."""
    marks = list(_SECTION.finditer(text))
    out: dict[str, str] = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out[m.group(1)] = text[m.start() : end]
    return out


def repair_section(key: str, src: str, utf8: bool) -> str:
    """Apply the repairs a section needs, in pyirsdk's order."""
    if utf8:
        src = repair_escape_quoted_values(src)
    if key == "DriverInfo":
        src = repair_quote_driver_names(src, utf8)
    src = repair_leading_comma(src)
    return repair_car_number(src)


def _load(src: str) -> Any:
    """Load one section; aliases are refused (iRacing never writes them, and nested ones can
    expand to billions of items: a "billion laughs" file)."""
    for event in yaml.parse(src, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            mark = event.start_mark
            raise yaml.YAMLError(f"an alias (*{event.anchor}) at line {mark.line + 1 if mark else '?'}: "
                                 "iRacing's YAML has none")
    return yaml.load(src, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse(raw: bytes, path: object = None) -> dict[str, Any]:
    """Parse session-info bytes into a dict of top-level sections, repairing as needed.

    Raises :class:`IbtFormatError` naming the section and the YAML error when a section
    stays unreadable after every repair.
    """
    text = decode(raw)
    utf8 = is_utf8(raw)
    result: dict[str, Any] = {}
    for key, src in split_sections(text).items():
        fixed = repair_section(key, src, utf8)
        try:
            loaded = _load(fixed)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise IbtFormatError(path, f"session info YAML section {key}{where}", "valid YAML", str(exc).splitlines()[0]) from None
        if isinstance(loaded, dict) and key in loaded:
            result[key] = loaded[key]
    return result


REPAIRS: dict[str, Callable[..., str]] = {
    "escape_quoted_values": repair_escape_quoted_values,
    "quote_driver_names": repair_quote_driver_names,
    "leading_comma": repair_leading_comma,
    "car_number": repair_car_number,
}
