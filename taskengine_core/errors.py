"""Domain errors. The CLI turns these into messages at one boundary (``cli/_app.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field


class TaskEngineError(Exception):
    """Base class of every expected failure: shown to the user without a traceback."""


@dataclass
class Problem:
    """One thing wrong with a rule file: where it is, what is wrong, what was expected."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        path = self.path or "(document)"
        return f"{where}  {path}  {self.message}"


@dataclass
class RuleFileError(TaskEngineError):
    """One or more problems in rule files; ``problems`` lists every one of them."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        count = len(self.problems)
        lines = [str(p) for p in self.problems]
        lines.append(f"{count} error{'s' if count != 1 else ''} found")
        return "\n".join(lines)


class RegistrationError(TaskEngineError):
    """A plugin registered an item badly: a duplicate name, a bad schema, a missing callable."""


class StoreError(TaskEngineError):
    """The database cannot be opened or written."""


class NotFoundError(TaskEngineError):
    """A named object (task, schedule, run, event) does not exist."""


class ParameterError(TaskEngineError):
    """Parameters given for a run (``tasks run --param``) do not fit the action's schema."""


class SecretError(TaskEngineError):
    """A secret reference cannot be resolved. The message never contains the secret."""


class TemplateError(TaskEngineError):
    """A template failed to render: syntax, undefined name, or output too large."""


class ActionError(TaskEngineError):
    """An action failed. ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = True, output=None):
        super().__init__(message)
        self.retryable = retryable
        self.output = output


class EventError(TaskEngineError):
    """An event is malformed; ``field`` names the failing part."""

    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message)
        self.field = field


class DatabaseFileError(StoreError):
    """The database file was deleted or replaced while it was in use: writes would be lost."""


class StoreBusy(StoreError):
    """A write would have to wait for a lock held elsewhere, and this store does not wait."""


_TRANSIENT = ("locked", "busy", "lock timeout", "deadlock detected", "could not serialize",
              "server closed the connection", "connection is lost", "connection failed")


def transient(exc: BaseException) -> bool:
    """Whether a write failed because of other writers or the connection (SQLite's lock,
    PostgreSQL's lock timeout or a deadlock another engine was part of, a server restart), not
    because of what was written: then the same write may be tried again as it is."""
    if isinstance(exc, StoreBusy):
        return True
    text = str(exc)
    return any(part in text for part in _TRANSIENT)
