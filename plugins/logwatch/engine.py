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


def compile_regex(pattern: str):
    """Compile ``pattern`` with RE2; raises :data:`Error` with RE2's reason."""
    return re2.compile(pattern, _options())


def explain(exc: Exception) -> str:
    """RE2's reason for refusing a pattern, as text."""
    reason = exc.args[0] if exc.args else str(exc)
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    return str(reason)
