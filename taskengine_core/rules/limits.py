"""What no rule file may hold, and the cheap checks that find it while a file is read.

NaN and infinity, integers past SQLite's range (or too long for Python to convert), text that
is not valid Unicode, values that are not JSON (sets, binary), nesting deeper than any rule
file needs, and YAML aliases that expand without bound ("billion laughs"). Each is refused
with its position, never a hang, a crash deep inside a library, or a value the engine cannot
store.
"""

from __future__ import annotations

import math
import sys
from typing import Any

MAX_DEPTH = 64  # nesting of mappings and lists
MAX_INTEGER = 2**63 - 1  # SQLite's integer range; a longer number is a typo or an attack
MAX_ALIAS_NODES = 200_000  # nodes that YAML aliases may add to a file ("billion laughs")
MAX_INT_DIGITS = 40  # longer digit strings are not converted at all (Python refuses > 4300)
_FINE_TYPES = (str, int, float, bool, type(None))


class TooLong:
    """A number written with too many digits, kept unconverted so it can be reported."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def int_or_too_long(text: str):
    digits = len(text.lstrip("+-").replace("_", ""))
    return int(text) if digits <= MAX_INT_DIGITS else TooLong(digits)


class Flags:
    """Set by :func:`compacted` when the data holds something :func:`data_problems` reports."""

    __slots__ = ("suspect",)

    def __init__(self) -> None:
        self.suspect = False


def compacted(value: Any, flags: Flags, depth: int = 0) -> Any:
    """Share repeated keys and short strings (100,000 schedules repeat ``every``, ``at``,
    ``day``...): in place where possible, so the file is never held twice. On the way it
    notes (cheaply) whether anything needs :func:`data_problems`."""
    if isinstance(value, str):
        if not value.isascii():
            flags.suspect = True  # perhaps a lone surrogate from a JSON escape
        return sys.intern(value) if len(value) < 64 else value
    if depth >= MAX_DEPTH and isinstance(value, (list, dict)):
        flags.suspect = True
        return value
    if isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = compacted(item, flags, depth + 1)
        return value
    if isinstance(value, dict):
        for key in value:  # replacing values of existing keys while iterating is allowed
            value[key] = compacted(value[key], flags, depth + 1)
            if not isinstance(key, str):
                flags.suspect = True
        if len(value) < 64:  # a small mapping is rebuilt to share its keys
            return {sys.intern(k) if isinstance(k, str) else k: v for k, v in value.items()}
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            flags.suspect = True
    elif isinstance(value, int):
        if not -MAX_INTEGER <= value <= MAX_INTEGER:
            flags.suspect = True
    elif not isinstance(value, _FINE_TYPES):
        flags.suspect = True
    return value


def describe_number_problem(value: Any) -> str | None:
    """Why a number cannot be used in a rule, or None when it can."""
    if isinstance(value, TooLong):
        return f"number too large ({value.digits} digits); numbers must lie within ±{MAX_INTEGER}"
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return (f"expected a finite number, got {value!r}: NaN and infinity (.nan, .inf, NaN, "
                "Infinity) are not allowed; write a number, or a duration such as 30s")
    if isinstance(value, int) and not -MAX_INTEGER <= value <= MAX_INTEGER:
        digits = int(math.log10(abs(value))) + 1  # str() refuses past 4300 digits
        digits -= 10 ** (digits - 1) > abs(value)  # log10 rounds 99...9 up
        return f"number too large ({digits} digits); numbers must lie within ±{MAX_INTEGER}"
    return None


def data_problems(data: Any) -> list[tuple[tuple, str]]:
    """``(path, message)`` for what no rule file may hold: NaN and infinity, integers past
    SQLite's range, text that is not valid Unicode, values that are not JSON (sets, binary,
    timestamps), keys that are not text, and nesting deeper than ``MAX_DEPTH``."""
    found: list[tuple[tuple, str]] = []
    stack: list[tuple[tuple, Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, (dict, list)) and len(path) >= MAX_DEPTH:
            found.append((path, f"nested more than {MAX_DEPTH} levels deep; rule files are not that deep"))
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, (str, int, float, bool, type(None))):
                    found.append((path, f"a key must be text, got {type(key).__name__} {_short(key)}"))
                    continue
                stack.append((path + (key,), item))
        elif isinstance(value, list):
            stack.extend((path + (i,), item) for i, item in enumerate(value))
        elif isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    found.append((path, f"text holds {value[exc.start]!r}, a lone surrogate, which is not "
                                        "valid Unicode; write the character itself or a valid \\u escape pair"))
        elif (message := describe_number_problem(value)) is not None:
            found.append((path, message))
        elif not isinstance(value, _FINE_TYPES):
            kind = {"set": "a set (!!set)", "bytes": "binary data (!!binary)"}.get(type(value).__name__, type(value).__name__)
            found.append((path, f"unsupported value: {kind}; rule files hold mappings, lists, text, "
                                "numbers, true/false and null"))
    found.reverse()
    return found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
