"""The scheduler's view of the stored schedules: loaded all at once (an engine starting, the
default time zone changed, the change log pruned or too long), or only those the configuration
change log names since the scheduler last read it (a running engine picking up an ``apply``).

Both read a schedule's row the same way (:func:`read_rows`): a schedule whose stored definition
hash matches keeps its persisted next fire time; a new or changed one starts from "now" (no
catch-up for the past, except a one-shot whose one slot has passed) and its state is persisted.
Links to tasks are logged by the triggers under the schedule's name (``task_schedules`` logs
``("schedule", name)``), so a relinked schedule is among those named.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from taskengine_core.clock import from_iso, to_iso
from taskengine_core.durations import parse_duration
from taskengine_core.model import FULL_RELOAD_AT, Runtime
from taskengine_core.store import config, slots as slot_store

log = logging.getLogger("taskengine.scheduler")
DEFAULT_MAX_LATENESS = 300.0
DEFAULT_CATCH_UP = "once"
_MISSING = object()
_LONG_AGO = datetime(1900, 1, 1, tzinfo=timezone.utc)


class _Definition:
    """One distinct stored schedule definition: its policy at once, its recurrence compiled on
    first use. An engine (re)loading 100,000 unchanged schedules compiles none of them until
    they fire; a reload after an apply reuses every definition it has already seen."""

    __slots__ = ("spec", "zone", "catch_up", "max_lateness", "digest", "_recurrence")

    def __init__(self, spec_text: str, zone: str) -> None:
        spec = self.spec = json.loads(spec_text)
        self.zone = zone
        self.catch_up = spec.get("catch_up", DEFAULT_CATCH_UP)
        self.max_lateness = parse_duration(spec.get("max_lateness", DEFAULT_MAX_LATENESS), clamp=True)
        self.digest = spec_hash(spec, zone)
        self._recurrence = None

    @property
    def recurrence(self):
        """The compiled recurrence; ``ValueError`` when the stored definition does not compile."""
        if self._recurrence is None:
            from taskengine_core.recurrence import compile_schedule

            self._recurrence = compile_schedule(self.spec, self.zone)
        return self._recurrence


@dataclass(slots=True)
class _Schedule:
    name: str
    enabled: bool
    definition: _Definition
    catch_up: str
    max_lateness: float
    tasks: tuple[str, ...]

    @property
    def recurrence(self):  # taskengine_core.recurrence.Recurrence
        return self.definition.recurrence


def spec_hash(spec: dict, default_zone: str) -> str:
    text = json.dumps([spec, default_zone], sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()


def default_zone(runtime: Runtime) -> str:
    return runtime.settings.get("timezone") or "UTC"


def read_rows(rows, links: dict[str, list[str]], zone: str, known: dict[str, _Definition],
              now: datetime, definitions: dict[str, _Definition | None]) -> tuple[dict, dict, list]:
    """The scheduler's entries for stored ``(name, spec text, enabled, stored spec hash, stored
    next fire)`` rows: ``({name: schedule}, {name: next fire}, [state rows to persist])``.

    Schedules with the same definition share one compiled recurrence (and its next fire time
    from "now"), so registering many alike schedules costs one compile per definition. Only new
    or changed schedules are compiled here; the others keep their stored next fire time and
    compile when they first fire. ``known`` definitions (an earlier load's) are reused;
    ``definitions`` receives every spec text seen (None: it does not compile)."""
    now_text = to_iso(now)
    upcoming_of: dict[str, tuple] = {}  # spec text -> (next fire after now, its text)
    parsed: dict[str, datetime] = {}  # stored next fire text -> datetime (shared)
    schedules, nexts, writes = {}, {}, []
    for name, spec_text, enabled, stored_hash, stored_next in rows:
        definition = definitions.get(spec_text, _MISSING)
        if definition is _MISSING:
            definition = known.get(spec_text)
            if definition is None:
                try:
                    definition = _Definition(spec_text, zone)
                except ValueError as exc:  # validate refuses these; a database edited by hand may not
                    log.error("schedule %s cannot be compiled: %s", name, exc)
            definitions[spec_text] = definition
        if definition is None:
            continue
        if stored_hash == definition.digest:
            schedules[name] = _Schedule(name, bool(enabled), definition, definition.catch_up,
                                        definition.max_lateness, tuple(links.get(name, ())))
            if stored_next:
                when = parsed.get(stored_next)
                if when is None:
                    when = parsed[stored_next] = from_iso(stored_next)
                nexts[name] = when
            continue
        if spec_text not in upcoming_of:  # new or changed: no catch-up for the past
            try:
                recurrence = definition.recurrence
            except ValueError as exc:  # validate refuses these; a database edited by hand may not
                log.error("schedule %s cannot be compiled: %s", name, exc)
                definitions[spec_text] = None
                continue
            upcoming = recurrence.next_after(now)
            if upcoming is None:  # a one-shot already past: its one slot follows catch_up
                upcoming = _past_one_shot(recurrence, now)
            upcoming_of[spec_text] = (upcoming, to_iso(upcoming) if upcoming else None)
        schedules[name] = _Schedule(name, bool(enabled), definition, definition.catch_up,
                                    definition.max_lateness, tuple(links.get(name, ())))
        upcoming, upcoming_text = upcoming_of[spec_text]
        if upcoming is not None:
            nexts[name] = upcoming
        writes.append((name, definition.digest, upcoming_text, now_text))
    return schedules, nexts, writes


def load_all(scheduler, runtime: Runtime) -> None:
    """(Re)build the scheduler from every schedule row and its persisted next fire time."""
    zone = default_zone(runtime)
    conn = scheduler.store.conn
    # read before the rows: a change logged after this is read again by the next refresh
    seq = config.last_change(conn)
    links = config.tasks_linked(conn, "task_schedules")
    known = scheduler._definitions if scheduler._definitions_zone == zone else {}
    definitions: dict[str, _Definition | None] = {}
    schedules, nexts, writes = read_rows(slot_store.schedules_with_state(conn), links, zone, known,
                                         scheduler.clock.now(), definitions)
    if writes:
        with scheduler.store.write() as db:
            slot_store.save_states(db.conn, writes)
    scheduler._schedules, scheduler._next = schedules, nexts
    scheduler._definitions = {text: d for text, d in definitions.items() if d is not None}
    scheduler._definitions_zone = zone
    scheduler._rebuild_heap()
    scheduler.generation, scheduler.changes_seq = runtime.generation, seq


def apply_changes(scheduler, runtime: Runtime) -> bool:
    """Read again only the schedules the change log names since the scheduler's last read
    (created, changed, deleted, enabled or disabled, relinked) and replace their entries, as
    :func:`load_all` would have built them. Returns False, having changed nothing, when only a
    full load will do: nothing loaded yet, another default time zone, the log pruned past the
    scheduler's last read or naming more than ``FULL_RELOAD_AT`` objects."""
    zone = default_zone(runtime)
    if scheduler.generation < 0 or zone != scheduler._definitions_zone:
        return False
    with config.snapshot(scheduler.store) as conn:  # the log and the rows it names, as of one moment
        changes, last = config.changes_since(conn, scheduler.changes_seq, FULL_RELOAD_AT + 1)
        if changes is None or len(changes) > FULL_RELOAD_AT:
            return False
        names = sorted({name for kind, name in changes if kind == "schedule"})
        rows = slot_store.schedules_with_state(conn, names) if names else []
        links = config.tasks_linked(conn, "task_schedules", names) if names else {}
    definitions: dict[str, _Definition | None] = {}
    schedules, nexts, writes = read_rows(rows, links, zone, scheduler._definitions, scheduler.clock.now(),
                                         definitions)
    if writes:
        with scheduler.store.write() as db:
            slot_store.save_states(db.conn, writes)
    scheduler._definitions.update((text, d) for text, d in definitions.items() if d is not None)
    for name in names:  # a name without a row (deleted, or not compiling) leaves the scheduler
        scheduler._replace(name, schedules.get(name), nexts.get(name))
    scheduler._compact_heap()
    scheduler.generation, scheduler.changes_seq = runtime.generation, max(last, scheduler.changes_seq)
    return True


def _past_one_shot(recurrence, now: datetime) -> datetime | None:
    """The fire time of a one-shot (``once:``) schedule that has already passed, else None.

    A new or changed recurring schedule starts from "now"; a one-shot has no later slot, so
    its single slot is handed to the catch-up policy like any slot missed while down.
    """
    spec = getattr(recurrence, "spec", None)
    if getattr(spec, "kind", None) != "once":
        return None
    first = recurrence.next_after(_LONG_AGO)
    return first if first is not None and first <= now else None
