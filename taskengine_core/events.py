"""Events: their shape, their validation, and the inbox they are committed to before any
acknowledgement."""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from taskengine_core.clock import Clock, from_iso, to_iso
from taskengine_core.errors import EventError
from taskengine_core.event_check import plainly_valid
from taskengine_core.event_types import TYPE_PATTERN  # also importable from here
from taskengine_core.ids import new_id
from taskengine_core.store import Store, inbox
from taskengine_core.store.decisions import insert_decisions

MAX_ID_LENGTH = 200
# The schema of an event as it arrives (HTTP body, --data); the engine fills in the rest.
EVENT_SCHEMA = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "pattern": TYPE_PATTERN, "maxLength": 200,
                 "description": "an event type such as user.login (letters, digits, _ . : -)"},
        "data": {"type": "object"},
        "source": {"type": "string", "minLength": 1, "maxLength": 200},
        "id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
        "time": {"type": "string", "format": "date-time"},
    },
}
INTERNAL_SOURCE = "taskengine"
MAX_DATA_DEPTH = 64  # nesting levels of an event's data, on every way in (HTTP, CLI)
DEDUP_WINDOW_SECONDS = 7 * 86400


@dataclass
class Event:
    type: str
    data: dict = field(default_factory=dict)
    source: str = "api"
    source_id: str | None = None
    time: datetime | None = None
    id: str = field(default_factory=new_id)

    def as_dict(self) -> dict:
        """The event as rules and templates see it."""
        return {"id": self.id, "type": self.type, "source": self.source,
                "source_id": self.source_id, "time": to_iso(self.time) if self.time else None,
                "data": self.data}


def event_from_json(body: Any, *, default_source: str) -> Event:
    """Validate an incoming event (HTTP body or ``--data``); raises :class:`EventError` naming the field."""
    _validate_body(body)
    source = body.get("source", default_source)
    _refuse_internal(source)
    time = from_iso(body["time"]) if "time" in body else None
    return Event(type=body["type"], data=body.get("data") or {}, source=source,
                 source_id=body.get("id"), time=time)


def _validate_body(body: Any) -> None:
    """Raise :class:`EventError` naming the first field where ``body`` breaks the event schema."""
    # the common body needs no schema library (a fast 'taskengine emit'); the rest, and every
    # error, goes through the validators
    if plainly_valid(body, EVENT_SCHEMA):
        return
    fast, thorough = _validators()
    try:
        fast(body)
        return
    except Exception:  # noqa: BLE001 - JsonSchemaValueException: let jsonschema explain it
        errors = sorted(thorough.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        from taskengine_core.rules.messages import explain

        error = errors[0]
        extra, message = explain(error)
        where = ".".join(str(p) for p in (*error.absolute_path, *extra)) or "(event)"
        raise EventError(f"invalid event: {where}: {message}", field=where)


def _refuse_internal(source: str) -> None:
    if source == INTERNAL_SOURCE:  # its events carry a chain depth the engine trusts
        raise EventError(f"invalid event: source: {INTERNAL_SOURCE!r} is reserved for the engine's own events",
                         field="source")


@functools.cache
def _validators():
    """Built once. fastjsonschema (same formats as jsonschema) passes a valid event ten times
    faster; jsonschema explains an invalid one."""
    import fastjsonschema
    from jsonschema import Draft202012Validator, FormatChecker

    formats = FormatChecker()
    fast = fastjsonschema.compile(EVENT_SCHEMA, formats={
        "date-time": lambda value: formats.conforms(value, "date-time")})
    return fast, Draft202012Validator(EVENT_SCHEMA, format_checker=formats)


def check_event(event: Event) -> None:
    """Check an event built in Python (the API, a plugin source)."""
    checked_data_text(event)


def checked_data_text(event: Event) -> str:
    """Check an event built in Python and return its data as the JSON text the inbox stores:
    serialised once, for the check and for the insert alike."""
    body = {"type": event.type, "data": event.data, "source": event.source}
    if event.source_id is not None:
        body["id"] = event.source_id
    if not _plain(event):
        _validate_body(body)
    _refuse_internal(event.source)
    try:
        text = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        for value in (text, event.source, event.source_id or ""):
            if not value.isascii():
                value.encode("utf-8")  # a lone surrogate cannot be stored or printed
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        check_values(body)  # a lone surrogate or NaN: names the field
        raise EventError(f"invalid event: data: not JSON-serialisable ({exc})", field="data") from None
    return text


_TYPE_RE = re.compile(TYPE_PATTERN)


def nested_deeper(value, limit: int = MAX_DATA_DEPTH) -> bool:
    """Whether mappings and lists in ``value`` nest more than ``limit`` levels (``value`` is 1)."""
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return False


def _plain(event: Event) -> bool:
    """True when the event certainly satisfies EVENT_SCHEMA (what ``plainly_valid`` checks,
    read from the attributes without building a body); anything else goes to the validators."""
    type_, source, source_id = event.type, event.source, event.source_id
    return (type(type_) is str and len(type_) <= 200 and _TYPE_RE.search(type_) is not None
            and type(event.data) is dict and type(source) is str and 0 < len(source) <= 200
            and (source_id is None or (type(source_id) is str and 0 < len(source_id) <= MAX_ID_LENGTH)))


def data_text(event: Event) -> str:
    """An already checked event's data as the JSON text the inbox stores."""
    return json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)


def check_values(body: dict) -> None:
    """Raise :class:`EventError` naming the first string or key that is not valid Unicode, or
    the first number that is not finite. JSON can spell half of a surrogate pair (``"\\ud800"``)
    and Python decodes it, but no database or UTF-8 output can hold it; NaN and Infinity are
    not JSON at all (Python's json writes them anyway)."""
    stack: list[tuple[object, str]] = [(body, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            children = [(child, f"{path}.{key}" if path else str(key)) for key, child in value.items()]
            for key, (_, where) in zip(value, children):
                if not _valid_unicode(str(key)):
                    raise _not_unicode(where, "a key is not valid Unicode")
            stack.extend(reversed(children))  # reversed: popped in document order
        elif isinstance(value, list):
            stack.extend(reversed([(child, f"{path}.{i}") for i, child in enumerate(value)]))
        elif isinstance(value, str) and not _valid_unicode(value):
            raise _not_unicode(path, "not valid Unicode")
        elif isinstance(value, float) and not math.isfinite(value):
            where = _printable(path)
            raise EventError(f"invalid event: {where}: {value} is not a JSON number; send a finite "
                             "number, or the text in quotes", field=where)


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _printable(path: str) -> str:
    return path.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates too


def _not_unicode(path: str, what: str) -> EventError:
    where = _printable(path)
    return EventError(f"invalid event: {where}: {what} (a lone surrogate)", field=where)


def insert_events(store: Store, events: Iterable[Event], *, clock: Clock | None = None,
                  checked: bool = False) -> list[str]:
    """Commit events to the inbox in one transaction; returns their ids. A (source, id) seen
    within the dedup window is stored as a duplicate that triggers nothing. ``checked`` says
    the events were already validated (the HTTP ingress does that per request)."""
    now_dt = (clock or Clock()).now()
    now = to_iso(now_dt)
    window_start = to_iso(datetime.fromtimestamp(now_dt.timestamp() - DEDUP_WINDOW_SECONDS, now_dt.tzinfo))
    events = list(events)
    texts = [data_text(event) if checked else checked_data_text(event) for event in events]
    if getattr(store, "dialect", None) == "postgresql":
        _refuse_nul(events)
    with store.write() as db:
        return _insert(db.conn, events, texts, now, window_start)


def _refuse_nul(events: list[Event]) -> None:
    """PostgreSQL's text cannot hold a NUL character (SQLite's can): say which field has one
    rather than fail with the driver's error (the data is JSON, where a NUL is escaped)."""
    for event in events:
        for field, value in (("source", event.source), ("id", event.source_id)):
            if isinstance(value, str) and "\x00" in value:
                raise EventError(f"invalid event: {field}: contains a NUL character, which a PostgreSQL "
                                 f"database cannot store: remove it", field=field)


DUPLICATE_KEYS_PER_QUERY = inbox.DUPLICATE_KEYS_PER_QUERY


def _insert(conn, events: list[Event], texts: list[str], now: str, window_start: str) -> list[str]:
    keys = list({(e.source, e.source_id): None for e in events if e.source_id is not None})
    seen = inbox.originals(conn, keys, window_start) if keys else {}
    rows = []
    for event, text in zip(events, texts):
        duplicate_of = None
        if event.source_id is not None:
            key = (event.source, event.source_id)
            duplicate_of = seen.get(key)
            if duplicate_of is None:  # the first of its key: later ones in this batch repeat it
                seen[key] = event.id
        rows.append((event.id, event.type, event.source, event.source_id, text,
                     to_iso(event.time) if event.time else now, now,
                     now if duplicate_of else None, duplicate_of))
    inbox.insert(conn, rows)
    dup_rows = [(now, "duplicate", f"duplicate of event {r[8]} (same source and id)", r[0]) for r in rows if r[8]]
    insert_decisions(conn, ("time", "decision", "reason", "event_id"), dup_rows)
    return [r[0] for r in rows]


def inbox_waiting(conn) -> bool:
    """Whether any event waits to be evaluated."""
    return inbox.waiting(conn)


def row_to_event(row: dict | tuple) -> dict:
    """An inbox row as the dict rules and templates see."""
    if not isinstance(row, dict):
        row = dict(zip(("id", "type", "source", "source_id", "data", "time"), row))
    data = row["data"]
    return {"id": row["id"], "type": row["type"], "source": row["source"],
            "source_id": row.get("source_id"), "time": row["time"],
            "data": json.loads(data) if isinstance(data, str) else data}
