"""Secret references (``${env:NAME}``, ``${file:PATH}``): found, checked, resolved at use, redacted.

A reference is stored and shown as written; its value exists only in memory while an action
uses it. ``Redactor`` scrubs resolved values out of any text before it is logged or stored.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Iterator

from taskengine_core.errors import SecretError

_ADDING = threading.Lock()

# Anything that looks like ${...}; checked strictly afterwards so malformed ones get a message.
_CANDIDATE = re.compile(r"\$\{([^}]*)\}")
_SCHEMES = {"env": re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z"), "file": re.compile(r"\S.*\Z")}
REDACTED = "********"
LITERAL_SECRET = ("a secret must be a reference such as ${env:NAME} or ${file:PATH}, not a literal "
                  "value: a literal would be stored in the database")
# Keys whose literal values are secrets even when the user did not write a reference.
# Not "key" alone (an object store's key, a throttle's key) nor "credentials" and "private_key"
# (most often a file's path, GOOGLE_APPLICATION_CREDENTIALS): fields that hold a secret under
# such a name (a webhook's auth key) are listed by the rule-file validator instead.
SECRET_KEYS = frozenset(
    {"password", "passwd", "token", "secret", "api_key", "apikey", "authorization", "passphrase"}
)
# ... and names that end in one of these after a separator: GITHUB_TOKEN, db-password, X-Api-Key
_SECRET_ENDINGS = re.compile(r"[_.-](password|passwd|token|secret|api[_-]?key|access[_-]key|passphrase)$")


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a secret: ``password``, ``token``, ``DB_PASSWORD``..."""
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return lowered in SECRET_KEYS or _SECRET_ENDINGS.search(lowered) is not None


def iter_references(text: str) -> Iterator[tuple[str, str]]:
    """Yield ``(scheme, reference)`` for each ``${...}`` in ``text``, well-formed or not."""
    for match in _CANDIDATE.finditer(text):
        inner = match.group(1)
        scheme, _, ref = inner.partition(":")
        yield scheme, ref


_PLUGIN_SCHEME = re.compile(r"[a-z][a-z0-9_+-]*\Z")


def reference_problem(scheme: str, ref: str, *, plugin_schemes: bool = False) -> str | None:
    """Why ``${scheme:ref}`` is malformed, or ``None`` when it is fine. With ``plugin_schemes``
    (a plugin implements ``resolve_secret``) any well-formed ``${scheme:reference}`` is accepted;
    whether the scheme is known is only decided when the secret is resolved."""
    if scheme not in _SCHEMES and plugin_schemes and _PLUGIN_SCHEME.match(scheme) and ref:
        return None
    if scheme not in _SCHEMES:
        return (
            f"malformed secret reference '${{{scheme}{':' + ref if ref else ''}}}': expected "
            f"${{env:NAME}} or ${{file:PATH}}"
        )
    pattern = _SCHEMES.get(scheme)
    if not ref or (pattern is not None and not pattern.match(ref)):
        what = "an environment variable name" if scheme == "env" else "a path"
        return f"malformed secret reference '${{{scheme}:{ref}}}': expected {what} after '{scheme}:'"
    return None


def resolve_builtin(scheme: str, ref: str) -> str | None:
    """The built-in resolver for ``env`` and ``file``; ``None`` for other schemes."""
    if scheme == "env":
        if ref not in os.environ:
            raise SecretError(f"secret reference ${{env:{ref}}}: environment variable {ref} is not set; "
                              f"set {ref} in the environment the engine runs in")
        return os.environ[ref]
    if scheme == "file":
        path = os.path.expanduser(ref)
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().rstrip("\r\n")
        except OSError as exc:
            raise SecretError(
                f"secret reference ${{file:{ref}}}: cannot read the file ({exc.strerror})"
            ) from None
    return None


class Redactor:
    """Remembers every secret value resolved so far and removes them from text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        # longest first, rebuilt on each new value (resolutions repeat the same few values;
        # texts are redacted far more often, e.g. every webhook attempt's response excerpt)
        self._ordered: tuple[str, ...] = ()

    def add(self, value: str) -> None:
        if value and len(value) >= 3 and value not in self._values:
            with _ADDING:  # two threads adding at once must not lose one's value from the order
                if value in self._values:
                    return
                self._ordered = tuple(sorted((*self._ordered, value), key=len, reverse=True))
                # known only once redacted: another thread adding it returns after that
                self._values.add(value)

    def __call__(self, text: Any) -> Any:
        ordered = self._ordered
        if not ordered or not isinstance(text, str):
            return text
        for value in ordered:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def scrub(self, data: Any) -> Any:
        """Redact secrets in every string of a JSON-like structure."""
        if isinstance(data, str):
            return self(data)
        if isinstance(data, dict):
            return {k: self.scrub(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.scrub(v) for v in data]
        return data


class SecretResolver:
    """Resolves references through the ``resolve_secret`` hook and feeds the redactor."""

    def __init__(self, hook, redactor: Redactor | None = None) -> None:
        self._hook = hook
        self.redactor = redactor or Redactor()

    def resolve_text(self, text: str) -> str:
        def replace(match: re.Match) -> str:
            scheme, _, ref = match.group(1).partition(":")
            problem = reference_problem(scheme, ref)
            if problem and scheme in _SCHEMES:
                raise SecretError(problem)
            value = self._hook.resolve_secret(scheme=scheme, reference=ref)
            if value is None:
                raise SecretError(f"no plugin resolves secret references of scheme {scheme!r}")
            self.redactor.add(value)
            return value

        return _CANDIDATE.sub(replace, text)

    def bind(self, data: Any, names: dict | None = None) -> tuple[Any, dict]:
        """Prepare task parameters for rendering without letting event data name secrets.

        References are resolved in the task's own text only: in a plain string directly; in a
        template each ``${...}`` becomes ``{{ _secret_N }}`` and its value goes into the returned
        context, so the sandbox inserts it verbatim and nothing rendered from an event is ever
        resolved. Returns the prepared structure and the extra template context.
        """
        names = {} if names is None else names
        if isinstance(data, str) and "${" in data:
            if "{{" not in data and "{%" not in data:
                return self.resolve_text(data), names

            def placeholder(match: re.Match) -> str:
                key = f"_secret_{len(names)}"
                names[key] = self.resolve_text(match.group(0))
                return "{{ " + key + " }}"

            return _CANDIDATE.sub(placeholder, data), names
        if isinstance(data, dict):
            return {k: self.bind(v, names)[0] for k, v in data.items()}, names
        if isinstance(data, list):
            return [self.bind(v, names)[0] for v in data], names
        return data, names

    def resolve(self, data: Any) -> Any:
        """Resolve every reference in a JSON-like structure (trusted text only: settings and
        task parameters as written, never rendered event data), returning a new structure."""
        if isinstance(data, str):
            return self.resolve_text(data) if "${" in data else data
        if isinstance(data, dict):
            return {k: self.resolve(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.resolve(v) for v in data]
        return data


def is_literal_secret(key: Any, value: Any) -> bool:
    """A literal value under a secret-looking key: a string with no reference in it (``Bearer
    ${env:API_TOKEN}`` has one), or a number (``--param password=123456`` reads as one). Lists
    and mappings under such a key are looked into, not masked whole."""
    if not is_secret_key(key) or isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) or (isinstance(value, str) and not _CANDIDATE.search(value))


def literal_secrets(data: Any, path: str = "") -> list[str]:
    """Dotted paths of the literal values under secret-looking keys."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if is_literal_secret(key, value):
                found.append(where)
            else:
                found.extend(literal_secrets(value, where))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found.extend(literal_secrets(value, f"{path}.{i}" if path else str(i)))
    return found


def redact_by_key(data: Any) -> Any:
    """Mask literal values under secret-looking keys; references stay visible as written."""
    if isinstance(data, dict):
        return {key: REDACTED if is_literal_secret(key, value) else redact_by_key(value)
                for key, value in data.items()}
    if isinstance(data, list):
        return [redact_by_key(v) for v in data]
    return data


def is_reference(value: str) -> bool:
    """Whether ``value`` is exactly one ``${scheme:reference}``."""
    return bool(_CANDIDATE.fullmatch(value.strip()))


class RedactingFilter:
    """A ``logging`` filter that removes resolved secrets from messages and tracebacks."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def filter(self, record) -> bool:
        import logging

        record.msg = self.redactor(record.getMessage())
        record.args = ()
        if record.exc_info:
            record.exc_text = self.redactor(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
