"""Text made for the ear: what the driver hears must never spell units as letters.

Speech engines (espeak-ng, SAPI5, ElevenLabs alike) read "20 m" as "twenty em" and
"0.575 s" as "zero point five seven five es". :func:`ear_text` writes units out and rounds
numbers the way a race engineer says them on the radio; :func:`tip_phrase` turns a coaching
tip (``pitbox coach``, the live coach's ``tip`` message) into one short sentence:

>>> tip_phrase({"corner": "T3", "change": "brake 20 m later (at 827 m, not 807 m)",
...             "fault": "brake_early", "time_loss_s": 0.575})
'Turn 3: brake 20 metres later, worth six tenths'

Rounding (what a listener can use at 200 km/h):

* times [s]: under 0.095 s in hundredths ("four hundredths"), under 0.95 s in tenths ("six
  tenths", 0.5 s is "half a second"), under 10 s to a tenth ("1.4 seconds"), then whole
  seconds; from 60 s on as minutes and seconds ("1 minute 23.5");
* distances [m]: whole metres under 10 m, the nearest 5 m under 100 m, the nearest 10 m above;
* speeds [km/h] whole; litres to a tenth under 10 l, whole above; percentages whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

_NUM = r"(?<![\w.])(?P<sign>[+\-\u2212])?(?P<num>\d+(?:\.\d+)?)"
#: unit pattern -> (singular, plural, rounding); a unit must follow a number, then a non-letter
_UNITS: list[tuple[str, str, str, str]] = [
    (r"km/h|kph|kmh", "kilometre per hour", "kilometres per hour", "whole"),
    (r"mph", "mile per hour", "miles per hour", "whole"),
    (r"m/s", "metre per second", "metres per second", "whole"),
    (r"ms", "millisecond", "milliseconds", "whole"),
    (r"km", "kilometre", "kilometres", "tenth"),
    (r"m", "metre", "metres", "distance"),
    (r"s|sec|secs", "", "", "time"),
    (r"l|L|litres|liters", "litre", "litres", "litre"),
    (r"%", "percent", "percent", "whole"),
    (r"°C|degC", "degree", "degrees", "whole"),
    (r"°|deg", "degree", "degrees", "whole"),
    (r"kg", "kilogram", "kilograms", "whole"),
    (r"kPa", "kilopascal", "kilopascals", "whole"),
    (r"psi", "p s i", "p s i", "tenth"),
    (r"rpm", "revs", "revs", "whole"),
]
_UNIT_RE = re.compile(
    _NUM + r"\s?(?P<unit>" + "|".join(f"(?:{u[0]})" for u in _UNITS) + r")(?![A-Za-z0-9/])")
_LAPTIME_RE = re.compile(r"(?<![\d:.])(?P<min>\d{1,2}):(?P<sec>\d{2}(?:\.\d+)?)(?![\d:])")
_CORNER_RE = re.compile(r"\bT(?P<n>\d{1,2})\b")
_PAREN_RE = re.compile(r"\s*\(([^()]*)\)")


def _fmt(x: float, digits: int) -> str:
    s = f"{x:.{digits}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def _plural(value: float, one: str, many: str) -> str:
    return one if value == 1 else many


def say_seconds(seconds: float) -> str:
    """A duration [s] as a race engineer says it: "six tenths", "half a second",
    "four hundredths", "1.4 seconds", "12 seconds", "1 minute 23.5"."""
    a = abs(float(seconds))
    if a < 0.005:
        return "nothing"
    n100 = max(round(a * 100), 1)
    if n100 < 10:
        return "a hundredth" if n100 == 1 else f"{_WORDS[n100]} hundredths"
    n10 = round(a * 10)
    if n10 < 10:
        if n10 == 5:
            return "half a second"
        return "a tenth" if n10 == 1 else f"{_WORDS[n10]} tenths"
    if a < 9.95:
        v = max(round(a, 1), 1.0)
        return f"{_fmt(v, 1)} {_plural(v, 'second', 'seconds')}"
    if a < 60:
        return f"{round(a)} seconds"
    m, s = divmod(round(a, 1), 60.0)
    s = round(s, 1)
    mins = f"{int(m)} {_plural(int(m), 'minute', 'minutes')}"
    return mins if s == 0 else f"{mins} {_fmt(s, 1)}"


def _round(value: float, how: str) -> float:
    if how == "whole":
        return float(round(value))
    if how == "tenth":
        return round(value, 1)
    if how == "litre":
        return round(value, 1) if value < 10 else float(round(value))
    if how == "distance":
        if value < 10:
            return float(round(value))
        step = 5 if value < 100 else 10
        return float(step * round(value / step))
    return value


def _unit_words(m: re.Match[str]) -> str:
    sign = {"+": "plus ", "-": "minus ", "\u2212": "minus "}.get(m.group("sign") or "", "")
    value = float(m.group("num"))
    unit = m.group("unit")
    for pattern, one, many, how in _UNITS:
        if re.fullmatch(pattern, unit):
            if how == "time":
                return sign + say_seconds(value)
            v = _round(value, how)
            return f"{sign}{_fmt(v, 1)} {_plural(v, one, many)}"
    return m.group(0)  # pragma: no cover - every alternative of _UNIT_RE is in _UNITS


def _laptime_words(m: re.Match[str]) -> str:
    return say_seconds(60 * int(m.group("min")) + float(m.group("sec")))


def corner_words(name: str) -> str:
    """A corner's name for the ear: "T3" -> "turn 3", "X2" (a detected corner that the
    track's corner file does not name) -> "corner X 2"; other names unchanged."""
    m = re.fullmatch(r"T(\d{1,2})", name.strip())
    if m:
        return f"turn {int(m.group(1))}"
    m = re.fullmatch(r"X(\d{1,2})", name.strip())
    if m:
        return f"corner X {int(m.group(1))}"
    return name.strip()


def _capitalise_sentences(text: str) -> str:
    return re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def ear_text(text: str) -> str:
    """``text`` rewritten for a speech engine: units written out ("20 m" -> "20 metres",
    "6.2 km/h" -> "6 kilometres per hour"), times said as on the radio ("0.575 s" -> "six
    tenths", "1:23.456" -> "1 minute 23.5"), corners named ("T3" -> "turn 3"), signs spoken
    ("+0.3 s" -> "plus three tenths"), brackets turned into pauses. See the module's
    docstring for the rounding."""
    out = _LAPTIME_RE.sub(_laptime_words, text)
    out = _UNIT_RE.sub(_unit_words, out)
    out = _CORNER_RE.sub(lambda m: f"turn {int(m.group('n'))}", out)
    out = _PAREN_RE.sub(lambda m: f", {m.group(1)}", out)
    out = out.replace("\u2212", "minus ")
    out = re.sub(r"\s+", " ", out).strip()
    out = re.sub(r"\s+([,.;:!?])", r"\1", out)
    out = re.sub(r",\s*,", ",", out)
    return _capitalise_sentences(out)


def tip_phrase(tip: Mapping[str, Any]) -> str:
    """One short sentence for a coaching tip (a ``tip`` message, or a row of
    ``pitbox coach``'s tips): the corner, the change without its details in brackets, and
    what it is worth. "Turn 3: brake 20 metres later, worth six tenths"."""
    corner = corner_words(str(tip.get("corner") or "")).strip()
    change = str(tip.get("change") or "").strip()
    change = _PAREN_RE.sub("", change)
    change = change.split(":")[0].strip()  # "coast 1.4 s less: go from ..." -> the instruction
    loss = tip.get("time_loss_s")
    parts = [f"{corner}: {change}" if corner else change]
    try:
        loss_f = float(loss) if loss is not None else None
    except (TypeError, ValueError):
        loss_f = None
    if loss_f is not None and loss_f >= 0.005:
        parts.append(f"worth {say_seconds(loss_f)}")
    text = ", ".join(p for p in parts if p)
    return ear_text(text)
