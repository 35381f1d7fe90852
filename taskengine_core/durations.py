"""Durations as users write them: ``90s``, ``15m``, ``2h``, ``30d``, ``1w``, ``1h30m``, or seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h|d|w)\s*)+$"
MAX_DAYS = 36500  # 100 years: longer than any useful delay or window, and far from datetime's limits
MAX_SECONDS = MAX_DAYS * 86400
SCHEMA = {
    "oneOf": [
        {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
        {"type": "string", "pattern": PATTERN, "format": "duration"},
    ],
    "description": "a duration of at most 100 years: seconds, or a string such as 90s, 15m, 2h, 30d, 1w, 1h30m",
}


def parse_duration(value: str | int | float, *, clamp: bool = False) -> float:
    """Seconds in ``value``; raises ``ValueError`` with the accepted forms on bad input.
    ``clamp``: a duration past the limit is the limit (for rules stored before there was one),
    not an error."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return _at_most_max(float(value), value, clamp)
    text = str(value).replace(" ", "").lower()
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"not a duration: {value!r}; expected seconds or a string such as 90s, 15m, 2h, 30d"
        )
    return _at_most_max(total, value, clamp)


def _at_most_max(seconds: float, value, clamp: bool) -> float:
    if clamp and seconds > MAX_SECONDS:
        return MAX_SECONDS
    if not seconds <= MAX_SECONDS:  # also catches inf and nan
        raise ValueError(f"duration too long: {value!r}; at most {MAX_DAYS}d (100 years)")
    return seconds


def is_duration(value) -> bool:
    """Whether ``value`` parses within the limit (the rule schema's ``duration`` format)."""
    try:
        parse_duration(value)
    except ValueError:
        return False
    return True


def format_duration(seconds: float) -> str:
    """A short human form: ``1d2h``, ``90s`` -> ``1m30s``, ``0.25`` -> ``250ms``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    out, rest = [], int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out) or "0s"
