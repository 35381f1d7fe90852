"""Which user names the account actions accept.

A name comes from event data, which is hostile: it must never become an option (``-o``,
``--root=/``) or carry characters a later tool reads specially. Linux: what shadow-utils
accepts by default (letters, digits, ``_``, ``-``, ``.``, a trailing ``$`` for machine accounts,
not starting with ``-``, at most 32 characters). VergeOS: the same, plus ``@`` and capitals.
"""

from __future__ import annotations

import re

from taskengine_core.errors import ActionError

_PATTERNS = {
    "linux": re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,30}\$?"),
    "vergeos": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}"),
}


def checked_name(name: object, backend: str) -> str:
    if not isinstance(name, str) or not _PATTERNS[backend].fullmatch(name) or name in (".", ".."):
        raise ActionError(
            f"refusing user name {name!r}: not a valid {backend} user name (letters, digits, "
            f"'_', '-', '.'{', @' if backend == 'vergeos' else ''}; not starting with '-'); "
            "check the event data the task's 'user' parameter comes from", retryable=False)
    return name
