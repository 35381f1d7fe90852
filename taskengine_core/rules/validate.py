"""Loading and checking rule files: every problem reported at once, each with its position."""

from __future__ import annotations

import functools
import json
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from taskengine_core.errors import Problem, RuleFileError
from taskengine_core.registry import Registry
from taskengine_core.rules import messages
from taskengine_core.rules.fingerprint import KnownSpecs, applied_files, object_counts
from taskengine_core.rules.loader import Document, expand_paths, load_document
from taskengine_core.rules.schema_check import SchemaCheck
from taskengine_core.rules.paths import _ref_params, _split_path, dig
from taskengine_core.rules.schema import NAME_PATTERN, SECTIONS, SectionChecks
from taskengine_core.rules.secret_fields import (_NO_SECRET_FIELDS, _is_template, _leaves, _literal_secret,
                                                 _mentions_reference)
from taskengine_core.secrets import LITERAL_SECRET, iter_references, reference_problem

KIND = {"schedules": "schedule", "webhooks": "webhook", "tasks": "task", "events": "event rule"}
_NAME_CHECK = re.compile(NAME_PATTERN)


@dataclass(slots=True)  # one per object: 100,000 schedules make slots worth it
class Definition:
    """One object from a rule file, as written (both YAML readers keep dates and times as text)."""

    section: str
    name: str
    spec: dict
    file: str
    doc: Document
    text: str | None = None  # the canonical spec (what the store holds): encoded once

    @property
    def path(self) -> tuple:
        return (self.section, self.name)


@dataclass
class Config:
    """Everything the rule files define, checked and ready to apply."""

    settings: dict = field(default_factory=dict)
    settings_files: dict[str, str] = field(default_factory=dict)
    objects: dict[str, dict[str, Definition]] = field(
        default_factory=lambda: {s: {} for s in SECTIONS if s != "settings"}
    )
    task_schedules: set[tuple[str, str]] = field(default_factory=set)
    task_events: set[tuple[str, str]] = field(default_factory=set)
    task_webhooks: set[tuple[str, str]] = field(default_factory=set)
    validated_with: str | None = None  # the validation key it was checked under (fingerprint.py)
    applied_files: dict | None = None  # digests of the rule files it came from (fingerprint.py)

    @property
    def tasks(self) -> dict[str, Definition]:
        return self.objects["tasks"]


def load_config(paths: Iterable[str | Path], registry: Registry, known: KnownSpecs | None = None) -> Config:
    """Read, merge and check rule files. Raises :class:`RuleFileError` listing every problem.
    ``known``: what the database holds, already checked (see :mod:`.fingerprint`)."""
    config, problems = check_paths(paths, registry, known)
    if problems:
        raise RuleFileError(problems)
    return config


def check_paths(paths: Iterable[str | Path], registry: Registry,
                known: KnownSpecs | None = None) -> tuple[Config, list[Problem]]:
    """The merged configuration and every problem. Objects whose canonical spec equals what
    ``known`` holds (checked under the same validation key, with the same settings) skip the
    per-object checks they passed before; references between objects are always checked."""
    files, problems = expand_paths(paths)
    checker = RuleChecker(registry, known)
    digests = []
    for path in files:
        stored = known.stored_data(path) if known is not None else None
        if stored is not None:  # unchanged since the last apply: as the database holds it
            data, texts, digest = stored
            doc, parse_problems = Document(str(path), data, digest=digest, texts=texts), []
        else:
            doc, parse_problems = load_document(path)
        problems.extend(parse_problems)
        digests.append((path, doc.digest if doc is not None else None))
        if doc is not None:
            checker.add_document(doc)
    checker.finish_objects()
    checker.check_references()
    problems.extend(checker.problems)
    problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0))
    if known is not None:
        checker.config.validated_with = known.key
        checker.config.applied_files = None if problems else applied_files(
            digests, known.key, object_counts(checker.config.objects, (str(path) for path, _ in digests)))
    return checker.config, problems


class RuleChecker:
    """Checks objects as documents are added (:meth:`add_document`), then across them
    (:meth:`finish_objects`, :meth:`check_references`); ``problems`` lists what it found and
    ``config`` what it accepted. ``apply_delta`` uses it on the changed files alone."""

    def __init__(self, registry: Registry, known: KnownSpecs | None = None) -> None:
        self.registry = registry
        self.config = Config()
        self.problems: list[Problem] = []
        self.known = known.specs if known is not None else {}
        self.known_settings = known.settings if known is not None else None
        self._unchanged: list[Definition] = []  # as stored: checked at the end if settings differ
        self._schedules: list[Definition] = []  # schema-valid: checked at the end, in the final zone
        self.validators = SectionChecks(registry)  # each section's check made on first use
        self.action_validators = {name: SchemaCheck(item.schema) for name, item in registry.actions.items()}
        self.action_refs = {name: list(_ref_params(item.schema)) for name, item in registry.actions.items()}
        self._renderer = None

    # -- one document ------------------------------------------------------------------------

    def add_document(self, doc: Document) -> None:
        data = doc.data
        if not isinstance(data, dict):
            self.problems.append(doc.problem((), f"expected a mapping of sections ({', '.join(SECTIONS)}), got {messages.describe_value(data)}"))
            return
        for section, body in data.items():
            if section not in SECTIONS:
                self.problems.append(doc.problem((section,), f"unknown section {section!r}; expected one of: {', '.join(SECTIONS)}"))
                continue
            if body is None:
                continue
            if not isinstance(body, dict):
                self.problems.append(doc.problem((section,), f"expected a mapping, got {messages.describe_value(body)}"))
                continue
            if section == "settings":
                self._add_settings(doc, body)
            else:
                for name, spec in body.items():
                    self._add_object(doc, section, name, spec)

    def _add_settings(self, doc: Document, body: dict) -> None:
        self._schema_problems(doc, ("settings",), body, self.validators["settings"])
        for key, value in body.items():
            if key in self.config.settings_files:
                self.problems.append(doc.problem(("settings", key), f"setting {key!r} is already defined in {self.config.settings_files[key]}"))
                continue
            self.config.settings[key] = value
            self.config.settings_files[key] = doc.file
        self._plugin_setting_problems(doc, body)
        zone = body.get("timezone")
        if isinstance(zone, str) and not _zone_exists(zone):
            self.problems.append(doc.problem(("settings", "timezone"), f"unknown time zone {zone!r}; expected an IANA name such as Europe/Berlin"))
        if "blackouts" in body:  # schedules and durations of blackout windows
            from taskengine_core.holds import check_blackouts

            zone = body.get("timezone") if isinstance(body.get("timezone"), str) and _zone_exists(body["timezone"]) else "UTC"
            for sub, problem in check_blackouts(body["blackouts"], zone):
                self.problems.append(doc.problem(("settings", "blackouts", *sub), problem))
            self._blackouts_doc = doc  # its task names are checked with the other references
        self._secret_problems(doc, ("settings",), body)

    def _plugin_setting_problems(self, doc: Document, body: dict) -> None:
        """What a section's own ``check`` finds (see ``register_settings``), once its schema holds."""
        for key, value in body.items():
            item = self.registry.settings.get(key)
            if item is None or item.check is None or any(True for _ in SchemaCheck(item.schema).errors(value)):
                continue
            try:
                found = list(item.check(value))
            except Exception as exc:  # noqa: BLE001 - a plugin's bug is reported, not raised
                found = [((), f"the {item.plugin} plugin could not check this section: {exc}")]
            for sub, message in found:
                self.problems.append(doc.problem(("settings", key, *sub), message))

    def _add_object(self, doc: Document, section: str, name: Any, spec: Any) -> None:
        path = (section, name)
        if not isinstance(name, str) or not _NAME_CHECK.match(name):
            self.problems.append(doc.problem(path, f"bad {KIND[section]} name {name!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit"))
            return
        if spec is None:
            spec = {}
        existing = self.config.objects[section].get(name)
        if existing is not None:
            line, _ = existing.doc.position(existing.path) or (None, None)
            where = f"{existing.file}:{line}" if line else existing.file
            self.problems.append(doc.problem(path, f"{KIND[section]} {name!r} is already defined in {where}; names must be unique across all rule files"))
            return
        text = doc.texts.get((section, name)) if doc.texts else None
        definition = Definition(section, name, spec, doc.file, doc, text if text is not None else _canonical(spec))
        self.config.objects[section][name] = definition
        known = self.known.get(section)
        if known and definition.text is not None and known.get(name) == definition.text:
            self._unchanged.append(definition)  # checked by the apply that stored it
        else:
            self._check_object(definition)

    def _check_object(self, definition: Definition) -> None:
        """Every per-object check: schema, the section's own semantics, secrets."""
        doc, section, name, spec = definition.doc, definition.section, definition.name, definition.spec
        if not self._schema_problems(doc, definition.path, spec, self.validators[section]):
            if section == "schedules":
                self._schedules.append(definition)  # needs the final time zone: see finish_objects
            else:
                getattr(self, f"_check_{section}")(doc, name, spec)
        if section in _NO_SECRET_FIELDS and definition.text is not None and "${" not in definition.text:
            return  # no secret field, and no ${...} reference anywhere in it (keys included)
        self._secret_problems(doc, definition.path, spec)

    def finish_objects(self) -> None:
        """After every document: check schedules in the time zone the engine will use (the
        ``timezone`` setting, wherever it is defined), and check objects found unchanged in
        full after all when the settings they were checked with changed."""
        settings_text = {key: _canonical(value) for key, value in self.config.settings.items()}
        if self._unchanged and settings_text != self.known_settings:
            for definition in self._unchanged:
                self._check_object(definition)
        self._unchanged = []
        zone = self.config.settings.get("timezone") or "UTC"
        zone = zone if isinstance(zone, str) and _zone_exists(zone) else "UTC"
        for definition in self._schedules:
            self._check_schedules(definition.doc, definition.name, definition.spec, zone, definition.text)
        self._schedules = []

    # -- per section semantics ---------------------------------------------------------------

    def _check_tasks(self, doc: Document, name: str, spec: dict) -> None:
        action = spec["action"]
        validator = self.action_validators.get(action)
        if validator is None:
            known = ", ".join(sorted(self.registry.actions)) or "none installed"
            self.problems.append(doc.problem(("tasks", name, "action"), f"unknown action {action!r}; installed actions: {known} (see 'taskengine plugins')"))
            return
        params = spec.get("with", {})
        for error in validator.errors(params):
            if _is_template(error.instance):
                continue  # checked again after rendering, when the value is known
            extra, message = messages.explain(error)
            self.problems.append(doc.problem(("tasks", name, "with", *error.absolute_path, *extra), message))
        for where, problem in self.renderer.check(params, schema=validator.schema):
            self.problems.append(doc.problem(("tasks", name, "with", *_split_path(where)), problem))
        if "notify" in spec:  # notify: {on: [failed], via: email, to: ...}
            from taskengine_core.notify import check as check_notify

            for sub, problem in check_notify(spec["notify"], self.registry, self.renderer):
                self.problems.append(doc.problem(("tasks", name, "notify", *sub), problem))

    def _check_schedules(self, doc: Document, name: str, spec: dict, zone: str, text: str | None = None) -> None:
        from taskengine_core.recurrence import check_schedule

        for sub, message in check_schedule(spec, zone, text=text):
            subpath = tuple(p for p in sub.split(".") if p) if isinstance(sub, str) else tuple(sub)
            self.problems.append(doc.problem(("schedules", name, *subpath), f"schedule {name!r}: {message}"))

    def _check_events(self, doc: Document, name: str, spec: dict) -> None:
        from taskengine_core.conditions import compile_conditions

        try:
            compile_conditions(spec.get("when"))
        except ValueError as exc:
            self.problems.append(doc.problem(("events", name, "when"), str(exc)))

    def _check_webhooks(self, doc: Document, name: str, spec: dict) -> None:
        pass

    # -- across documents --------------------------------------------------------------------

    def check_references(self) -> None:
        objects, config = self.config.objects, self.config
        for name, task in objects["tasks"].items():
            if not isinstance(task.spec, dict):  # already reported: expected a mapping
                continue
            for section, link_set in (("schedules", config.task_schedules), ("events", config.task_events)):
                for i, ref in enumerate(task.spec.get(section) or ()):
                    if ref in objects[section]:
                        link_set.add((name, ref))
                    else:
                        self._dangling(task, (section, i), KIND[section], ref, section)
            for param_path, section in self.action_refs.get(task.spec.get("action"), ()):
                value = dig(task.spec.get("with", {}), param_path)
                if not isinstance(value, str) or _is_template(value):
                    continue
                if section.startswith("settings."):
                    self._check_settings_ref(task, ("with", *param_path), value, section)
                elif value not in objects[section]:
                    self._dangling(task, ("with", *param_path), KIND[section], value, section)
                elif section == "webhooks":
                    config.task_webhooks.add((name, value))
        self._check_blackout_tasks()
        for name, rule in objects["events"].items():
            if not isinstance(rule.spec, dict):
                continue
            for i, ref in enumerate(rule.spec.get("tasks") or ()):
                if ref in objects["tasks"]:
                    config.task_events.add((ref, name))
                else:
                    self._dangling(rule, ("tasks", i), "task", ref, "tasks")

    def _check_settings_ref(self, owner: Definition, sub: tuple, ref: str, where: str) -> None:
        """A parameter marked ``x-taskengine-ref: settings.vm.hosts`` names a key of that
        mapping in the settings (which any rule file may hold)."""
        mapping = dig(self.config.settings, tuple(where.split(".")[1:]))
        known = sorted(mapping) if isinstance(mapping, dict) else []
        if ref in known:
            return
        kind, hint = where.rsplit(".", 1)[-1].rstrip("s") or where, _closest(ref, known)
        message = f"task {owner.name!r} refers to {kind} {ref!r}, which is not defined under {where}"
        if hint:
            message += f"; did you mean {hint!r}?"
        elif known:
            message += f"; defined: {', '.join(known)}"
        else:
            message += f"; add it under '{where}:'"
        self.problems.append(owner.doc.problem(owner.path + sub, message))

    def _check_blackout_tasks(self) -> None:
        """settings.blackouts[n].tasks must name tasks: a typo would hold nothing, silently."""
        doc = getattr(self, "_blackouts_doc", None)
        blackouts = self.config.settings.get("blackouts")
        if doc is None or not isinstance(blackouts, list):
            return
        known = sorted(self.config.objects["tasks"])
        for n, blackout in enumerate(blackouts):
            names = blackout.get("tasks") if isinstance(blackout, dict) else None
            for i, ref in enumerate(names if isinstance(names, list) else ()):
                if isinstance(ref, str) and ref not in self.config.objects["tasks"]:
                    hint = _closest(ref, known)
                    self.problems.append(doc.problem(
                        ("settings", "blackouts", n, "tasks", i),
                        f"blackout window refers to task {ref!r}, which is not defined"
                        + (f"; did you mean {hint!r}?" if hint else "; define it under 'tasks:'")))

    def _dangling(self, owner: Definition, sub: tuple, kind: str, ref: str, section: str) -> None:
        known = sorted(self.config.objects[section])
        hint = _closest(ref, known)
        message = f"{KIND[owner.section]} {owner.name!r} refers to {kind} {ref!r}, which is not defined"
        message += f"; did you mean {hint!r}?" if hint else f"; define it under '{section}:'"
        self.problems.append(owner.doc.problem(owner.path + sub, message))

    # -- helpers -----------------------------------------------------------------------------

    @property
    def renderer(self):
        if self._renderer is None:
            from taskengine_core.templating import TemplateRenderer

            self._renderer = TemplateRenderer()
        return self._renderer

    def _schema_problems(self, doc: Document, path: tuple, value: Any, validator) -> bool:
        found = False
        for error in validator.errors(value):
            extra, message = messages.explain(error)
            self.problems.append(doc.problem(path + tuple(error.absolute_path) + extra, message))
            found = True
        return found

    def _secret_problems(self, doc: Document, path: tuple, value: Any) -> None:
        if path[0] in _NO_SECRET_FIELDS and not _mentions_reference(value):
            return  # no literal can be a secret here, and no ${...} reference to check
        if path[0] == "tasks" and len(path) == 2 and isinstance(value, dict):
            # a task's literal secrets can only be among its parameters ('with'); elsewhere
            # (its schedules and events lists, notify) only ${...} references are checked
            for key, sub in value.items():
                if key == "with" or _mentions_reference(sub):
                    self._secret_problems(doc, path + (key,), sub)
            return
        for sub, leaf in _leaves(value):
            if _literal_secret(path + sub, leaf):
                self.problems.append(doc.problem(path + sub, LITERAL_SECRET))
                continue
            if not isinstance(leaf, str) or "${" not in leaf:
                continue
            for scheme, ref in iter_references(leaf):
                problem = reference_problem(scheme, ref, plugin_schemes=self.registry.plugin_secret_schemes)
                if problem:
                    self.problems.append(doc.problem(path + sub, problem))


def _canonical(value: Any) -> str | None:
    """The text the store holds for ``value`` (see ``store.audit.canonical``); None when it is
    not plain JSON data."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return None



@functools.lru_cache(maxsize=512)
def _zone_exists(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
        return True
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False


def _closest(word: str, candidates: list[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.75)
    return match[0] if match else None
