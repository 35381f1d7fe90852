"""The regular-expression engine of log patterns: RE2 (``google-re2``, a binary wheel).

RE2 matches in time linear in the length of the line, whatever the pattern: no pattern a user
writes can backtrack for minutes on a crafted line (``(a+)+$``), so one file's rules cannot
stall the others. The price: no backreferences and no look-around, which ``validate`` reports.
"""

from __future__ import annotations

import functools

import re2

Error = re2.error


@functools.cache
def _options():
    options = re2.Options()
    options.log_errors = False  # RE2 would print each bad pattern on stderr; we report it ourselves
    return options


class Regex:
    """A compiled RE2 pattern that answers with the named groups of a whole-line match.

    Lines go to RE2 as UTF-8 bytes and only the groups come back as text: the binding's ``str``
    mode converts every offset between bytes and characters, which costs three times the match.
    """

    __slots__ = ("pattern", "_regex", "_names", "groupindex")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._regex = re2.compile(pattern.encode("utf-8"), _options())
        self.groupindex = {_str(name): index for name, index in self._regex.groupindex.items()}
        names: list[str | None] = [None] * self._regex.groups
        for name, index in self.groupindex.items():
            names[index - 1] = name
        self._names = tuple(names)

    def fullmatch(self, text: str) -> dict | None:
        """The named groups that took part in a match of the whole ``text``, or ``None``."""
        found = self._regex.fullmatch(text.encode("utf-8", "replace"))
        if found is None:
            return None
        return {name: value.decode("utf-8", "replace")
                for name, value in zip(self._names, found.groups()) if name is not None and value is not None}


def _str(name) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else name


def compile_regex(pattern: str) -> Regex:
    """Compile ``pattern`` with RE2; raises :data:`Error` with RE2's reason."""
    return Regex(pattern)


def explain(exc: Exception) -> str:
    """RE2's reason for refusing a pattern, as text."""
    reason = exc.args[0] if exc.args else str(exc)
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    return str(reason)
