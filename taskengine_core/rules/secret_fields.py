"""Where rule files may hold secrets, and how a literal secret is told from a reference
(``${env:NAME}``) or a template: what ``validate`` refuses in settings, webhooks and a task's
parameters."""

from __future__ import annotations

from typing import Any, Iterator

from taskengine_core.secrets import is_literal_secret, is_reference

# Fields that hold secrets: (section, then keys; "*" matches any object name).
_SECRET_FIELDS = (
    ("settings", "ingress", "token"), ("settings", "email", "password"),
    ("webhooks", "*", "secret"), ("webhooks", "*", "auth", "password"),
    ("webhooks", "*", "auth", "token"), ("webhooks", "*", "auth", "key"),
)


# Sections where ``_literal_secret`` is never true (no secret field, no parameters): only
# their ``${...}`` references are checked, and most objects have none.
_NO_SECRET_FIELDS = frozenset({"schedules", "events"})


def _mentions_reference(value: Any) -> bool:
    """Whether any string in ``value`` (keys aside) contains ``${``."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(_mentions_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(_mentions_reference(v) for v in value)
    return False


def _is_secret_field(path: tuple) -> bool:
    return any(len(path) == len(f) and all(a == "*" or a == b for a, b in zip(f, path))
               for f in _SECRET_FIELDS)


def _literal_secret(path: tuple, leaf: Any) -> bool:
    """A literal where a secret belongs: in a secret field, or under a secret-looking key
    (``DB_PASSWORD``) among settings, webhooks or a task's parameters. Templates are not
    literals: what they render is not stored."""
    if _is_secret_field(path):
        return isinstance(leaf, str) and not is_reference(leaf)
    holds_parameters = path[0] in ("settings", "webhooks") or (path[0] == "tasks" and path[2:3] == ("with",))
    return holds_parameters and is_literal_secret(path[-1], leaf) and not _is_template(leaf)


def _leaves(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """``(path, value)`` of each string and number in ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, path + (i,))
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        yield path, value


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)
