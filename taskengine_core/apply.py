"""Making the database match the rule files: one transaction, one audit row per change."""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass, field
from typing import Iterable

from taskengine_core.clock import Clock, to_iso
from taskengine_core.rules.fingerprint import KnownSpecs, absolute, files_key, read_digest, validation_key
from taskengine_core.rules.validate import Config
from taskengine_core.secrets import redact_by_key
from taskengine_core.store import Store, audit
from taskengine_core.store import config as stored

# rule-file section -> (table, kind shown to users)
TABLES = {
    "schedules": ("schedules", "schedule"),
    "webhooks": ("webhooks", "webhook"),
    "events": ("event_rules", "event"),
    "tasks": ("tasks", "task"),
}
LINKS = stored.LINKS
DELTA_APPLY = True  # apply_delta's shortcut for a few changed files (tests turn it off to compare)


@dataclass
class Change:
    """One object created, updated or deleted. The changed fields are worked out when asked
    for, from the two specs, so a 100,000-object apply holds no copies of them."""

    action: str  # created | updated | deleted
    kind: str
    name: str
    old: dict = field(default_factory=dict, repr=False)
    new: dict = field(default_factory=dict, repr=False)

    @property
    def changes(self) -> dict:
        """``{"field": {"from": old, "to": new}}`` for each changed top-level field, redacted."""
        return _diff(self.old, self.new)

    def describe(self, dry_run: bool = False) -> str:
        verb = {"created": "create", "updated": "update", "deleted": "delete"}[self.action]
        head = f"{'would ' + verb if dry_run else self.action} {self.kind} {self.name}"
        if self.action == "updated":
            head += f" ({', '.join(sorted(self.changes))})"
        return head


@dataclass
class ApplyResult:
    changes: list[Change]
    dry_run: bool

    def counts(self) -> dict[str, int]:
        out = {"created": 0, "updated": 0, "deleted": 0}
        for change in self.changes:
            out[change.action] += 1
        return out

    def summary(self) -> str:
        if not self.changes:
            return "no changes: the database already matches the rule files"
        c = self.counts()
        prefix = "dry run, nothing written: " if self.dry_run else ""
        return f"{prefix}{c['created']} created, {c['updated']} updated, {c['deleted']} deleted"


def canonical(spec) -> str:
    return audit.canonical(spec)


def current_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def plan(conn, config: Config) -> tuple[list[Change], dict]:
    """The changes needed, and the rows to write for them (used by :func:`apply_config`)."""
    changes: list[Change] = []
    writes: dict = {"upsert": {}, "delete": {}, "links": {}, "moved": {}}
    for section, (_, kind) in TABLES.items():
        existing, files = {}, {}
        for name, spec, file in stored.object_specs_and_files(conn, kind):
            existing[name], files[name] = spec, file
        plan_objects(section, existing, files, config.objects[section], changes, writes)
    existing_settings = stored.settings(conn)
    setting_rows = []
    for name, value in config.settings.items():
        text = canonical(value)
        if existing_settings.get(name) != text:
            old = json.loads(existing_settings[name]) if name in existing_settings else None
            action = "created" if old is None else "updated"
            changes.append(Change(action, "setting", name, {name: old} if old is not None else {}, {name: value}))
            setting_rows.append((name, text, config.settings_files.get(name)))
    gone = [n for n in existing_settings if n not in config.settings]
    for name in gone:
        changes.append(Change("deleted", "setting", name, {name: json.loads(existing_settings[name])}, {}))
    writes["settings"], writes["settings_gone"] = setting_rows, gone
    for link_table in LINKS:
        have = stored.link_pairs(conn, link_table)
        want = getattr(config, link_table)
        writes["links"][link_table] = (want - have, have - want)
    return changes, writes


def plan_objects(section: str, existing: dict[str, str], files: dict[str, str | None],
                 definitions: dict, changes: list[Change], writes: dict) -> None:
    """Plan one section: ``existing`` (stored name -> spec text, ``files``: its file) against
    ``definitions`` (name -> Definition). Appends to ``changes`` and fills ``writes``."""
    kind = TABLES[section][1]
    upserts, deletes, moved = [], [], []
    for name, definition in definitions.items():
        text = definition.text if definition.text is not None else canonical(definition.spec)
        old_text = existing.get(name)
        if old_text == text:
            if files[name] != definition.file:  # the same object, now in another file
                moved.append((name, definition.file))
            continue
        if old_text is None:
            changes.append(Change("created", kind, name, {}, definition.spec))
        else:
            changes.append(Change("updated", kind, name, json.loads(old_text), definition.spec))
        upserts.append((definition, text))
    for name, old_text in existing.items():
        if name not in definitions:
            changes.append(Change("deleted", kind, name, json.loads(old_text), {}))
            deletes.append(name)
    writes["upsert"][section], writes["delete"][section] = upserts, deletes
    writes["moved"][section] = moved


def apply_config(
    store: Store, config: Config, *, dry_run: bool = False, clock: Clock | None = None,
    actor: str | None = None, source: str | None = None,
) -> ApplyResult:
    """Diff ``config`` against the database and apply it in one transaction (all or nothing):
    the objects, their links and one audit row per change are written together or not at all."""
    if dry_run:
        changes, _ = plan(store.conn, config)
        return ApplyResult(changes, True)
    now = to_iso((clock or Clock()).now())
    actor = actor or current_actor()
    with store.write() as db:
        conn = db.conn
        stored.lock_for_change(conn)  # the diff stays true until it is written (other engines, CLIs)
        changes, writes = plan(conn, config)
        write_plan(conn, changes, writes, now, actor=actor, source=source or "apply")
        _mark_applied(conn, config)
    return ApplyResult(changes, False)


def write_plan(conn, changes: list[Change], writes: dict, now: str, *, actor: str, source: str) -> None:
    """Write what :func:`plan` found (inside the caller's write transaction, after
    :func:`stored.lock_for_change`): the objects, their links, one audit row per change, and a
    new generation when anything but the file an object is in changed."""
    for section, (_, kind) in TABLES.items():  # which file each object is in: no change to it
        stored.set_object_files(conn, kind, writes["moved"][section])
    links_changed = any(add or remove for add, remove in writes["links"].values())
    if not changes and not links_changed:
        return
    for section, (_, kind) in TABLES.items():
        stored.delete_objects(conn, kind, writes["delete"][section])
    for section in ("schedules", "webhooks", "events", "tasks"):
        kind = TABLES[section][1]
        rows = writes["upsert"][section]
        if rows:
            stored.upsert_objects(conn, kind, (
                (d.name, text, d.spec.get("enabled", True), d.spec.get("description", ""), d.file,
                 *((d.spec["action"],) if kind == "task" else ()))
                for d, text in rows), now)
    stored.upsert_settings(conn, writes["settings"], now)
    stored.delete_settings(conn, writes["settings_gone"])
    for link_table in LINKS:
        add, remove = writes["links"][link_table]
        stored.change_links(conn, link_table, add, remove)
    stored.forget_schedule_state(conn, writes["delete"]["schedules"])  # added again: starts afresh
    audit.record(conn, ((c.action, c.kind, c.name, c.changes) for c in changes), now,
                 actor=actor, source=source)
    stored.bump_generation(conn)


def _mark_applied(conn, config: Config) -> None:
    """What the database now holds was checked under ``config.validated_with`` and came from
    the files ``config.files_key`` digests; a configuration built otherwise records nothing
    known, so the next ``apply`` checks everything."""
    mark_applied(conn, config.validated_with, config.applied_files)


def mark_applied(conn, validated_with: str | None, applied: dict | None) -> None:
    """Record the validation key and the files applied (see rules/fingerprint.py), with the
    configuration state they left (inside the transaction that wrote it)."""
    files = json.dumps({**applied, "state": _config_state(conn)}) if applied else ""
    stored.set_applied_marks(conn, validated_with or "", files)


def known_specs(store, registry, digests: dict[str, bytes | None] | None = None) -> KnownSpecs:
    """What the database holds, for :func:`load_config` to skip the checks it passed (empty
    when it was checked under another validation key), and which of the files (``digests``:
    absolute path -> text digest) are unchanged since the last apply, with nothing changed in
    the database since. Nothing is created."""
    key = validation_key(registry)
    with stored.snapshot(store) as conn:
        marks = stored.applied_marks(conn)
        if marks.get("validated_with") != key:
            return KnownSpecs(key)
        known = KnownSpecs(key)
        for section, (_, kind) in TABLES.items():
            rows = stored.object_specs_and_files(conn, kind)
            known.specs[section] = {name: spec for name, spec, _ in rows}
            known.origin[section] = {name: file for name, _, file in rows}
        rows = stored.settings_and_files(conn)
        known.settings = {name: spec for name, spec, _ in rows}
        known.setting_origin = {name: file for name, _, file in rows}
        recorded = json.loads(marks.get("applied_files") or "{}")
        if digests and recorded.get("state") == _config_state(conn):
            for path, (digest, name) in (recorded.get("each") or {}).items():
                if digests.get(path) is not None and digests[path].hex() == digest:
                    known.files[path] = (digests[path], name)
        return known


def unchanged_since_last_apply(store, files_key: str | None) -> bool:
    """Whether the last ``apply`` applied exactly these files (same paths, same text, same
    validation key) and nothing changed the configuration since (:func:`_config_state`): then
    applying them again changes nothing, and they need not be read."""
    if not files_key:
        return False
    with stored.snapshot(store) as conn:
        mark = stored.applied_marks(conn).get("applied_files")
        if not mark:
            return False
        recorded = json.loads(mark)
        return recorded.get("files") == files_key and recorded.get("state") == _config_state(conn)


def _config_state(conn) -> list[int]:
    """What tells whether the configuration changed since: the generation (bumped by every
    writer) and the last row of the change log (written by triggers on every configuration
    table, so even a change by hand that bumps nothing shows)."""
    return [stored.generation(conn), stored.last_change(conn)]


def apply_paths(paths, registry, open_store, *, dry_run: bool = False, source: str | None = None,
                clock: Clock | None = None) -> ApplyResult:
    """``taskengine apply``: check the rule files at ``paths`` and apply them. ``open_store(create)``
    opens the database (raising :class:`StoreError` when ``create`` is false and there is none):
    files unchanged since the last apply are not read at all, objects unchanged since it are
    not checked again (see :mod:`taskengine_core.rules.fingerprint`), and a database is created
    only once the files are known to be valid."""
    from taskengine_core.errors import StoreError
    from taskengine_core.rules.loader import expand_paths
    from taskengine_core.rules.validate import load_config

    key = validation_key(registry)
    files, missing = expand_paths(paths)
    digests = [(path, read_digest(path)) for path in files]
    absolutes: dict[str, str] = {}  # each file's absolute path, made once
    digest = None if missing else files_key(digests, key, absolutes)
    try:
        existing = open_store(False)
    except StoreError:
        existing = None
    if existing is not None and unchanged_since_last_apply(existing, digest):
        return ApplyResult([], dry_run)
    if existing is not None and digest is not None and DELTA_APPLY:
        from taskengine_core.apply_delta import try_apply

        result = try_apply(files, digests, registry, existing, key, dry_run=dry_run, source=source, clock=clock,
                           absolutes=absolutes)
        if result is not None:
            return result
    by_path = {absolute(path, absolutes): text for path, text in digests}
    known = known_specs(existing, registry, by_path) if existing is not None else KnownSpecs(key)
    config = load_config(paths, registry, known)  # its digests: of the very text it parsed or reused
    return apply_config(open_store(True), config, dry_run=dry_run, source=source, clock=clock)


def audit_rows(conn, entries: Iterable[tuple[str, str, str, dict]], now: str, *,
               actor: str | None = None, source: str) -> None:
    """One audit row per ``(action, kind, name, changes)``; ``changes`` must already be redacted.
    ``entries`` may be a generator: rows are made as they are written."""
    audit.record(conn, entries, now, actor=actor or current_actor(), source=source)


def bump_generation(conn) -> None:
    """Tell running engines the configuration changed: they reload it on their next step."""
    stored.bump_generation(conn)


def _diff(old: dict, new: dict) -> dict:
    """Changed top-level fields, ``{"field": {"from": old, "to": new}}``, secrets masked."""
    old, new = redact_by_key(old), redact_by_key(new)
    out = {}
    for key in sorted(set(old) | set(new), key=str):
        if old.get(key, _MISSING) != new.get(key, _MISSING):
            entry = {}
            if key in old:
                entry["from"] = old[key]
            if key in new:
                entry["to"] = new[key]
            out[str(key)] = entry
    return out


_MISSING = object()
