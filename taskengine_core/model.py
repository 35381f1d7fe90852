"""The configuration as the engine uses it: tasks with their run policy, event rules indexed
for matching. Built from the database (what ``apply`` wrote), rebuilt when it changes."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from taskengine_core.durations import parse_duration
from taskengine_core.rules.schema import DEFAULT_CONCURRENCY
from taskengine_core.store import Store

DEFAULT_BACKOFF = 10.0
DEFAULT_MAX_BACKOFF = 3600.0


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

    def listens(self, event_type: str) -> bool:
        """Whether any event rule's type pattern matches ``event_type``. The engine records
        its own task.* events only when something listens: the runs table already logs them.
        Answered from the rule index (exact types, globs by prefix), with a bounded cache."""
        return self.rules.listens(event_type)


def config_generation(store: Store) -> int:
    row = store.conn.execute("SELECT value FROM meta WHERE key = 'config_generation'").fetchone()
    return int(row[0]) if row else 0


def load_runtime(store: Store) -> Runtime:
    """The configuration as stored now, read in one snapshot so that a concurrent apply is
    never seen half done."""
    with store._lock:
        return _load_runtime(store)


def _load_runtime(store: Store) -> Runtime:
    from taskengine_core.conditions import compile_conditions
    from taskengine_core.rule_index import Rule, RuleIndex

    store.conn.execute("BEGIN")
    try:
        generation = config_generation(store)
        tasks = {r["name"]: TaskConfig.from_row(r) for r in store.db.query("SELECT * FROM tasks")}
        links: dict[str, list[str]] = {}
        for rule_name, task in store.conn.execute(
                "SELECT event_rule, task FROM task_events ORDER BY task"):
            links.setdefault(rule_name, []).append(task)
        rules = []
        for row in store.db.query("SELECT * FROM event_rules"):
            spec = json.loads(row["spec"])
            on = spec["on"]
            throttle = spec.get("throttle") or {}
            payload = RulePayload(
                name=row["name"], enabled=bool(row["enabled"]), tasks=tuple(links.get(row["name"], ())),
                delay=parse_duration(spec.get("delay", 0), clamp=True),
                throttle_window=parse_duration(throttle["window"], clamp=True) if throttle else None,
                throttle_key=tuple(throttle.get("key", ())),
            )
            rules.append(Rule(row["name"], [on] if isinstance(on, str) else list(on),
                              compile_conditions(spec.get("when")), payload))
        settings = {r["name"]: json.loads(r["spec"]) for r in store.db.query("SELECT * FROM settings")}
    finally:
        store.conn.execute("COMMIT")
    return Runtime(generation, tasks, RuleIndex(rules), settings)
