"""``apply`` of a few changed rule files among many unchanged ones, without reading the rest.

When the database holds exactly what the last ``apply`` of these same files left (the same
validation key, the same paths under the same names, and nothing changed since: the generation
and the change log's last row, see ``apply._config_state``), the objects of the unchanged files
are in the database already, checked. Only the changed files are then parsed and checked, and
only their old objects (the rows whose ``file`` is one of them) are read and compared: an apply
that edits one schedule among 100,000 spread over many files touches a few thousand rows, not
every one.

Whenever the shortcut cannot prove its answer equals the whole ``apply``'s, it steps aside and
the whole ``apply`` runs (:func:`try_apply` returns None): when a changed file holds settings
(or held them), when anything in the changed files has a problem, when a name in them is also
defined in an unchanged file, when an unchanged object refers to one the changed files no
longer define, or when the database changed between the read and the write. So every message a
user sees comes from the whole ``apply``, and the result is the same either way
(``tests/test_apply_delta.py`` compares the two on random edits).
"""

from __future__ import annotations

import json
from pathlib import Path

from taskengine_core.apply import (LINKS, TABLES, ApplyResult, Change, _config_state, current_actor,
                                   mark_applied, plan_objects, write_plan)
from taskengine_core.clock import Clock, to_iso
from taskengine_core.rules.fingerprint import KnownSpecs, absolute, applied_files, object_counts
from taskengine_core.rules.loader import load_document
from taskengine_core.rules.paths import dig
from taskengine_core.rules.secret_fields import _is_template
from taskengine_core.store import config as stored

_SECTIONS = tuple(TABLES)  # schedules, webhooks, events, tasks


class _NotApplicable(Exception):
    """The shortcut cannot prove its result: the whole apply runs instead."""


def try_apply(files: list[Path], digests: list[tuple[Path, bytes | None]], registry, store, key: str, *,
              dry_run: bool, source: str | None, clock: Clock | None,
              absolutes: dict[str, str] | None = None) -> ApplyResult | None:
    """Apply ``files`` (their ``digests``) by their changed files alone, or return None when
    only the whole ``apply`` can. ``absolutes``: see :func:`fingerprint.absolute`."""
    absolutes = {} if absolutes is None else absolutes
    try:
        with stored.snapshot(store) as conn:
            delta = _Delta.read(conn, files, digests, registry, key, absolutes)
        if delta is None:
            return None
        if dry_run:
            return ApplyResult(delta.changes, True)
        now = to_iso((clock or Clock()).now())
        with store.write() as db:
            conn = db.conn
            stored.lock_for_change(conn)
            if _config_state(conn) != delta.state:  # changed since the read: start over, in full
                raise _NotApplicable
            write_plan(conn, delta.changes, delta.writes, now, actor=current_actor(), source=source or "apply")
            mark_applied(conn, key, applied_files(digests, key, delta.counts, absolutes))
        return ApplyResult(delta.changes, False)
    except _NotApplicable:
        return None


class _Delta:
    """The changes the changed files make, worked out inside one read snapshot."""

    def __init__(self, conn, registry, key: str, state: list[int], digests: dict[str, bytes],
                 changed: dict[str, Path], settings: dict[str, str], counts: dict) -> None:
        self.conn, self.registry, self.key = conn, registry, key
        self.state = state  # the configuration state the changes were worked out against
        self.digests = digests  # file name -> digest of the text to apply
        self.changed = changed  # stored file name -> path, of the files whose text changed
        self.settings_text = settings
        # file name -> {section: number of objects}, as the last apply left them; updated for
        # the changed files and recorded again
        self.counts = counts
        self.changes: list[Change] = []
        self.writes: dict = {"upsert": {}, "delete": {}, "links": {}, "moved": {},
                             "settings": [], "settings_gone": []}

    @classmethod
    def read(cls, conn, files, digests, registry, key: str, absolutes: dict[str, str]) -> _Delta | None:
        marks = stored.applied_marks(conn)
        if marks.get("validated_with") != key or not marks.get("applied_files"):
            return None
        recorded = json.loads(marks["applied_files"])
        state = _config_state(conn)
        each = recorded.get("each") or {}
        if recorded.get("state") != state or len(each) != len(files):
            return None
        changed: dict[str, Path] = {}
        recorded_counts = recorded.get("counts") if isinstance(recorded.get("counts"), dict) else {}
        for path, digest in digests:
            entry = each.get(absolute(path, absolutes))
            if entry is None or digest is None or entry[1] != str(path):
                return None  # a file added, removed or named otherwise: its objects move
            if entry[0] != digest.hex():
                changed[str(path)] = path
        if not changed:
            return None
        names = [str(path) for path, _ in digests]
        counts = {name: recorded_counts[name] for name in names if isinstance(recorded_counts.get(name), dict)}
        if len(counts) != len(names):  # recorded by an older version: counted once, then recorded
            counts = _counted(conn, names)
        settings = stored.settings_and_files(conn)
        if any(file in changed for _, _, file in settings):
            return None  # settings change what every object is checked under
        delta = cls(conn, registry, key, state, {str(path): digest for path, digest in digests}, changed,
                    {name: text for name, text, _ in settings}, counts)
        try:
            delta._work_out()
        except _NotApplicable:
            return None
        return delta

    def _work_out(self) -> None:
        from taskengine_core.rules.validate import RuleChecker

        docs = []
        for name, path in self.changed.items():
            doc, problems = load_document(path)
            if problems or doc is None or not isinstance(doc.data, dict) or "settings" in doc.data:
                raise _NotApplicable
            if doc.digest != self.digests[name]:
                raise _NotApplicable  # edited again since it was first read
            docs.append(doc)
        old, old_files = self._old_objects(docs)
        checker = RuleChecker(self.registry, KnownSpecs(self.key, specs=old, settings=self.settings_text))
        checker.config.settings = {name: json.loads(text) for name, text in self.settings_text.items()}
        for doc in docs:
            checker.add_document(doc)
        checker.finish_objects()
        if checker.problems:
            raise _NotApplicable
        new = {section: checker.config.objects[section] for section in _SECTIONS}
        self.counts = {**self.counts, **object_counts(new, self.changed)}
        for section in _SECTIONS:
            plan_objects(section, old[section], old_files[section], new[section], self.changes, self.writes)
        self._links(checker, old, new)

    def _old_objects(self, docs) -> tuple[dict, dict]:
        """The stored objects of the changed files: ``{section: {name: spec text}}`` and
        ``{section: {name: file}}``. They are looked up by the names the changed files define
        now (by key: no scan of the table); a name stored from an unchanged file is a duplicate
        (the whole apply reports it). When fewer are found than the file held (one was removed
        or renamed), they are read by file."""
        conn, changed = self.conn, list(self.changed)
        old: dict[str, dict[str, str]] = {}
        old_files: dict[str, dict[str, str | None]] = {}
        for section, (_, kind) in TABLES.items():
            names = sorted({name for doc in docs if isinstance(doc.data.get(section), dict)
                            for name in doc.data[section] if isinstance(name, str)})
            rows = stored.objects_named(conn, kind, names)
            if any(file not in self.changed for _, _, file in rows):
                raise _NotApplicable
            found = {file: 0 for file in changed}
            for _, _, file in rows:
                found[file] += 1
            if any(found[file] != self.counts[file].get(section, 0) for file in changed):
                rows = stored.objects_in_files(conn, kind, changed)  # only reading by file finds it
            old[section] = {name: spec for name, spec, _ in rows}
            old_files[section] = {name: file for name, _, file in rows}
        return old, old_files

    def _links(self, checker, old: dict, new: dict) -> None:
        """Check the references the changed files make and the ones made to what they removed,
        and plan the link rows that involve their objects."""
        conn = self.conn
        tasks = set(old["tasks"]) | set(new["tasks"])  # of the changed files, before and after
        events = set(old["events"]) | set(new["events"])
        removed = {section: [n for n in old[section] if n not in new[section]] for section in _SECTIONS}
        if removed["tasks"] and self._blackouts_name(removed["tasks"]):
            raise _NotApplicable
        exists = _Existence(conn, new, self.changed)
        want = {table: set() for table in LINKS}
        for name, task in new["tasks"].items():
            for section, table in (("schedules", "task_schedules"), ("events", "task_events")):
                for ref in task.spec.get(section) or ():
                    exists.require(section, ref)
                    want[table].add((name, ref))
            for param_path, section in checker.action_refs.get(task.spec.get("action"), ()):
                value = dig(task.spec.get("with", {}), param_path)
                if not isinstance(value, str) or _is_template(value):
                    continue
                if section.startswith("settings."):
                    mapping = dig(checker.config.settings, tuple(section.split(".")[1:]))
                    if not isinstance(mapping, dict) or value not in mapping:
                        raise _NotApplicable
                    continue
                exists.require(section, value)
                if section == "webhooks":
                    want["task_webhooks"].add((name, value))
        for name, rule in new["events"].items():
            for ref in rule.spec.get("tasks") or ():
                exists.require("tasks", ref)
                want["task_events"].add((ref, name))
        exists.settle()
        have = {table: stored.link_pairs_touching(conn, table, sorted(tasks),
                                                  sorted(events) if table == "task_events" else ())
                for table in LINKS}
        # an unchanged task that linked to a schedule or webhook the changed files removed
        for table, section in (("task_schedules", "schedules"), ("task_webhooks", "webhooks")):
            if any(task not in tasks for task, _ in stored.link_pairs_touching(conn, table, (), removed[section])):
                raise _NotApplicable
        # task_events pairs between a changed object and an unchanged one: kept while the
        # unchanged one's own spec names the other
        kept_tasks = sorted({t for t, e in have["task_events"] if t not in tasks})
        kept_events = sorted({e for t, e in have["task_events"] if e not in events})
        gone_tasks, gone_events = set(removed["tasks"]), set(removed["events"])
        if any(t in gone_tasks and e not in events or e in gone_events and t not in tasks
               for t, e in have["task_events"]):
            raise _NotApplicable  # an unchanged object may name one that is gone
        task_specs = {n: json.loads(t) for n, t in stored.object_specs_named(conn, "task", kept_tasks).items()}
        event_specs = {n: json.loads(t) for n, t in stored.object_specs_named(conn, "event", kept_events).items()}
        for task, event in have["task_events"]:
            if task in task_specs and event in (task_specs[task].get("events") or ()):
                want["task_events"].add((task, event))
            if event in event_specs and task in (event_specs[event].get("tasks") or ()):
                want["task_events"].add((task, event))
        for table in LINKS:
            self.writes["links"][table] = (want[table] - have[table], have[table] - want[table])

    def _blackouts_name(self, tasks: list[str]) -> bool:
        blackouts = json.loads(self.settings_text["blackouts"]) if "blackouts" in self.settings_text else None
        named = {t for b in blackouts or () if isinstance(b, dict) for t in b.get("tasks") or ()}
        return bool(named & set(tasks))


def _counted(conn, files: list[str]) -> dict[str, dict[str, int]]:
    """``{file: {section: number of objects}}`` as stored (see :func:`object_counts`)."""
    counts: dict[str, dict[str, int]] = {file: {} for file in files}
    for section, (_, kind) in TABLES.items():
        for file, number in stored.object_counts_by_file(conn, kind).items():
            if file in counts:
                counts[file][section] = number
    return counts


class _Existence:
    """Which referenced names exist: defined in the changed files, or stored from an unchanged
    file. Names are collected, then looked up with one query per section."""

    def __init__(self, conn, new: dict, changed: dict[str, Path]) -> None:
        self.conn, self.new, self.changed = conn, new, changed
        self.asked: dict[str, set[str]] = {section: set() for section in _SECTIONS}

    def require(self, section: str, name) -> None:
        if not isinstance(name, str):
            raise _NotApplicable
        if name not in self.new[section]:
            self.asked[section].add(name)

    def settle(self) -> None:
        for section, names in self.asked.items():
            found = stored.object_files(self.conn, TABLES[section][1], sorted(names))
            if any(name not in found or found[name] in self.changed for name in names):
                raise _NotApplicable  # not defined anywhere (or only in the old text of a changed file)
