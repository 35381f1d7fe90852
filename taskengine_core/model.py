"""The configuration as the engine uses it: tasks with their run policy, event rules indexed
for matching. Built from the database (what ``apply`` wrote); when it changes, only the objects
named in the ``config_changes`` log are read and compiled again (:func:`refresh_runtime`)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from taskengine_core.durations import parse_duration
from taskengine_core.rules.schema import DEFAULT_CONCURRENCY
from taskengine_core.store import Store, config

DEFAULT_BACKOFF = 10.0
DEFAULT_MAX_BACKOFF = 3600.0
FULL_RELOAD_AT = 2000  # changed objects from which one full rebuild is cheaper than patching
CONFIG_CHANGES_KEPT = 10_000  # newest rows of the change log that retention leaves


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all; the wait before attempt n+1 is ``backoff * 2**(n-1)``, capped, with
    full jitter between half and all of it."""

    attempts: int = 1
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    jitter: bool = True

    def delay_after(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.max_backoff, self.backoff * (2 ** max(0, attempt - 1)))
        if not self.jitter:
            return base
        return (rng or random).uniform(base / 2, base)

    @classmethod
    def from_spec(cls, spec: dict | None) -> "RetryPolicy":
        spec = spec or {}
        return cls(
            attempts=int(spec.get("attempts", 1)),
            backoff=parse_duration(spec.get("backoff", DEFAULT_BACKOFF), clamp=True),
            max_backoff=parse_duration(spec.get("max_backoff", DEFAULT_MAX_BACKOFF), clamp=True),
            jitter=bool(spec.get("jitter", True)),
        )


@dataclass(frozen=True)
class TaskConfig:
    name: str
    action: str
    params: dict
    enabled: bool = True
    retired: bool = False
    timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: str = DEFAULT_CONCURRENCY
    delete_after_run: bool = False
    notify: tuple = ()  # the task's ``notify`` entries (taskengine_core.notify)
    tags: tuple = ()  # for blackout windows scoped by tag (taskengine_core.holds)

    @property
    def fires(self) -> bool:
        """Whether triggers (schedules, events) may start it."""
        return self.enabled and not self.retired

    @classmethod
    def from_row(cls, row: dict) -> "TaskConfig":
        spec = json.loads(row["spec"]) if isinstance(row["spec"], str) else row["spec"]
        timeout = spec.get("timeout")
        return cls(
            name=row["name"], action=spec["action"], params=spec.get("with") or {},
            enabled=bool(row["enabled"]), retired=bool(row.get("retired_at")),
            timeout=parse_duration(timeout, clamp=True) if timeout is not None else None,
            retry=RetryPolicy.from_spec(spec.get("retry")),
            concurrency=spec.get("concurrency", DEFAULT_CONCURRENCY),
            delete_after_run=bool(spec.get("delete_after_run", False)),
            tags=tuple(spec.get("tags") or ()),
            notify=tuple(spec["notify"] if isinstance(spec.get("notify"), list) else
                         [spec["notify"]] if spec.get("notify") else ()),
        )


@dataclass(frozen=True)
class RulePayload:
    """What a matched event rule does: which tasks, after what delay, throttled how."""

    name: str
    enabled: bool
    tasks: tuple[str, ...]
    delay: float = 0.0
    throttle_window: float | None = None
    throttle_key: tuple[str, ...] = ()


@dataclass
class Runtime:
    """A consistent snapshot of the configuration, tagged with its generation."""

    generation: int
    tasks: dict[str, TaskConfig]
    rules: "object"  # RuleIndex
    settings: dict
    changes_seq: int = 0  # the last ``config_changes`` row this snapshot reflects

    def listens(self, event_type: str) -> bool:
        """Whether any event rule's type pattern matches ``event_type``. The engine records
        its own task.* events only when something listens: the runs table already logs them.
        Answered from the rule index (exact types, globs by prefix), with a bounded cache."""
        return self.rules.listens(event_type)


def config_generation(store: Store) -> int:
    return config.generation(store.conn)


def load_runtime(store: Store) -> Runtime:
    """The configuration as stored now, read in one snapshot so that a concurrent apply is
    never seen half done."""
    with config.snapshot(store) as conn:
        return _load_runtime(conn)


def load_settings(store: Store) -> dict:
    """The stored ``settings:`` alone (references unresolved), without compiling the rest."""
    with config.snapshot(store) as conn:
        return _read_settings(conn)


def refresh_runtime(store: Store, runtime: Runtime) -> Runtime:
    """``runtime`` itself if the configuration did not change; else a new snapshot in which
    only the changed tasks, event rules and settings were read and compiled again (all of it
    when the change log was pruned past ``runtime`` or names too many objects)."""
    if config_generation(store) == runtime.generation:  # every loop step: one read, no transaction
        return runtime
    with config.snapshot(store) as conn:
        generation = config.generation(conn)
        if generation == runtime.generation:
            return runtime
        changes, last = config.changes_since(conn, runtime.changes_seq, FULL_RELOAD_AT + 1)
        if changes is None or len(changes) > FULL_RELOAD_AT:
            return _load_runtime(conn)
        return _patched(conn, runtime, generation, changes, last)


def _patched(conn, runtime: Runtime, generation: int, changes: set[tuple[str, str]],
             last: int) -> Runtime:
    def named(kind: str) -> list[str]:
        return sorted(name for k, name in changes if k == kind)

    tasks = runtime.tasks
    if task_names := named("task"):
        tasks = dict(tasks)
        found = _read_tasks(conn, task_names)
        for name in task_names:
            if name in found:
                tasks[name] = found[name]
            else:
                tasks.pop(name, None)
    rules = runtime.rules
    if rule_names := named("event"):
        found = _read_rules(conn, rule_names)
        rules = rules.updated({name: found.get(name) for name in rule_names})
    settings = _read_settings(conn) if named("setting") else runtime.settings
    return Runtime(generation, tasks, rules, settings, last)


def rules_for_explaining(store: Store, event_type) -> tuple[list, dict[str, TaskConfig]]:
    """Every event rule, with conditions compiled only where the type matches ``event_type``
    (the others are explained by their type alone), and the tasks those rules name: what
    ``logs explain`` needs, without building the whole runtime."""
    from taskengine_core.conditions import MISSING
    from taskengine_core.rule_index import type_reason

    def listens(rule) -> bool:
        return type_reason(rule, None, MISSING if event_type is None else event_type) is None

    with config.snapshot(store) as conn:  # one snapshot, as for the engine
        rules = list(_read_rules(conn, wanted=listens).values())
        names = sorted({task for rule in rules if listens(rule) for task in rule.payload.tasks})
        tasks = _read_tasks(conn, names)
    return rules, tasks


def _read_tasks(conn, names: list[str] | None = None) -> dict[str, TaskConfig]:
    return {r["name"]: TaskConfig.from_row(r) for r in config.task_rows(conn, names)}


def _read_rules(conn, names: list[str] | None = None, *, wanted=None) -> dict:
    """Rules as stored (all, or those ``names`` names); ``wanted(rule)`` False leaves a rule's
    conditions uncompiled (an always-true condition stands in: never to be evaluated)."""
    from taskengine_core.conditions import compile_conditions
    from taskengine_core.rule_index import Rule

    links = config.tasks_linked(conn, "task_events", names)
    rules, always = {}, compile_conditions(None)
    for row in config.rule_rows(conn, names):
        spec = _spec(row["spec"])
        on = spec["on"]
        throttle = spec.get("throttle") or {}
        payload = RulePayload(
            name=row["name"], enabled=bool(row["enabled"]), tasks=tuple(links.get(row["name"], ())),
            delay=parse_duration(spec.get("delay", 0), clamp=True),
            throttle_window=parse_duration(throttle["window"], clamp=True) if throttle else None,
            throttle_key=tuple(throttle.get("key", ())),
        )
        rule = Rule(row["name"], [on] if isinstance(on, str) else list(on), always, payload)
        if wanted is None or wanted(rule):
            rule.condition = compile_conditions(spec.get("when"))
        rules[row["name"]] = rule
    return rules


def _spec(value):
    return json.loads(value) if isinstance(value, str) else value


def _read_settings(conn) -> dict:
    return {name: _spec(spec) for name, spec in config.settings(conn).items()}


def _load_runtime(conn) -> Runtime:
    """Everything, inside the caller's read transaction."""
    from taskengine_core.rule_index import RuleIndex

    generation = config.generation(conn)
    last = config.last_change(conn)
    tasks = _read_tasks(conn)
    rules = _read_rules(conn)
    return Runtime(generation, tasks, RuleIndex(rules.values()), _read_settings(conn), last)


def prune_config_changes(conn, batch: int) -> bool:
    """Delete a batch of the change log's rows older than the newest ``CONFIG_CHANGES_KEPT``
    (inside the caller's write transaction); returns whether more remain. An engine that had
    not read that far reloads everything."""
    return config.prune_changes(conn, CONFIG_CHANGES_KEPT, batch)
