"""Holding runs back: the operator's pause, and blackout windows from ``settings.blackouts``.

The executor asks :func:`hold_runs` once per claim, inside its write transaction. While the
engine is paused nothing is claimed (events are still accepted and evaluated; runs wait as
``pending``). A due run of a task inside a blackout window is deferred to the window's end or
skipped, per the window's policy, and the decision is logged. A run started by hand in the
foreground (``taskengine tasks run NAME``) is not held: the operator asked for it.

```yaml
settings:
  blackouts:
    - name: weekend-freeze
      schedule: {every: week, days: [fri], at: "16:00", timezone: Europe/Berlin}  # when it starts
      duration: 64h
      tags: [deploy]          # or tasks: [...]; neither: every task
      policy: defer           # defer (to the window's end, the default) | skip
```
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from taskengine_core.clock import from_iso, to_iso

log = logging.getLogger("taskengine.holds")
POLICIES = ("defer", "skip")
MAX_CHAINED = 1000  # overlapping occurrences followed to find where a window ends
SCAN = 1000  # due runs looked at per claim

BLACKOUT_SCHEMA = {
    "type": "array",
    "description": "windows in which runs are deferred or skipped (change freezes, maintenance)",
    "items": {
        "type": "object",
        "required": ["name", "schedule", "duration"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "named in logged decisions"},
            "schedule": {"type": "object", "description": "when each window starts: a schedule, as under 'schedules'"},
            "duration": {"type": ["string", "number"], "description": "how long each window lasts, e.g. 64h"},
            "tasks": {"type": "array", "items": {"type": "string"}, "uniqueItems": True,
                      "description": "the tasks it holds"},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True,
                     "description": "tasks with any of these tags are held"},
            "policy": {"enum": list(POLICIES), "default": "defer",
                       "description": "defer: run at the window's end; skip: do not run"},
        },
    },
}


# -- pause ---------------------------------------------------------------------------------------


def current_pause(conn, now: datetime | None = None) -> dict | None:
    """The pause in force (None if none, or if its ``until`` has passed)."""
    from taskengine_core.store.holds import read_pause

    pause = read_pause(conn)
    if pause and pause.get("until") and now is not None and from_iso(pause["until"]) <= now:
        return None
    return pause


def pause(conn, now: datetime, *, until: datetime | None, reason: str, actor: str, source: str) -> dict:
    """Pause (or change the pause); audited and logged as a decision. In a write transaction."""
    from taskengine_core.apply import audit_rows
    from taskengine_core.store.decisions import record_decision
    from taskengine_core.store.holds import read_pause, write_pause

    before = read_pause(conn)
    state = {"since": (before or {}).get("since") or to_iso(now), "until": to_iso(until) if until else None,
             "reason": reason, "by": actor}
    write_pause(conn, state)
    audit_rows(conn, [("paused", "engine", "runs", {"pause": {"from": before, "to": state}})], to_iso(now),
               actor=actor, source=source)
    record_decision(conn, to_iso(now), "paused", _describe(state))
    return state


def resume(conn, now: datetime, *, actor: str, source: str, why: str = "resumed") -> dict | None:
    """End the pause; returns the pause that ended (None if there was none)."""
    from taskengine_core.apply import audit_rows
    from taskengine_core.store.decisions import record_decision
    from taskengine_core.store.holds import read_pause, write_pause

    before = read_pause(conn)
    if before is None or not write_pause(conn, None):  # none, or another engine ended it first
        return None
    audit_rows(conn, [("resumed", "engine", "runs", {"pause": {"from": before, "to": None}})], to_iso(now),
               actor=actor, source=source)
    record_decision(conn, to_iso(now), "resumed", f"{why}; paused since {before['since']}")
    return before


def pause_note(conn) -> str | None:
    """One line for listings while paused (``logs list`` prints it to stderr)."""
    from taskengine_core.clock import Clock

    state = current_pause(conn, Clock().now())
    return None if state is None else f"paused since {state['since']}: {_describe(state)} ('taskengine resume' ends it)"


_announced: set = set()


def _announce(state: dict) -> None:
    """Log a pause once per pause and process, when it first holds runs back."""
    if state["since"] not in _announced:
        _announced.add(state["since"])
        log.warning("paused since %s: %s; runs wait ('taskengine resume' ends it)", state["since"], _describe(state))


def _describe(state: dict) -> str:
    text = f"runs held by {state['by']}"
    if state.get("until"):
        text += f" until {state['until']}"
    if state.get("reason"):
        text += f": {state['reason']}"
    return text


# -- blackout windows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    name: str
    ends: datetime
    policy: str
    tasks: frozenset
    tags: frozenset

    def holds(self, task) -> bool:
        if not self.tasks and not self.tags:
            return True
        return task.name in self.tasks or bool(self.tags & set(getattr(task, "tags", ()) or ()))


def active_windows(blackouts: list, now: datetime, default_zone: str = "UTC") -> list[Window]:
    """The blackout windows open at ``now``, each with the end of its (overlapping) occurrences."""
    from taskengine_core.durations import parse_duration

    out = []
    for spec in blackouts or ():
        duration = timedelta(seconds=parse_duration(spec["duration"], clamp=True))
        recurrence = _compiled(json.dumps(spec["schedule"], sort_keys=True), default_zone)
        start = recurrence.next_after(now - duration)
        if start is None or start > now:
            continue
        ends = start + duration
        for _ in range(MAX_CHAINED):  # a later occurrence inside this window extends it
            following = recurrence.next_after(start)
            if following is None or following >= ends:
                break
            start, ends = following, max(ends, following + duration)
        out.append(Window(spec["name"], ends, spec.get("policy", "defer"),
                          frozenset(spec.get("tasks") or ()), frozenset(spec.get("tags") or ())))
    return out


_CACHE: dict = {}


def _compiled(spec_text: str, zone: str):
    key = (spec_text, zone)
    if key not in _CACHE:
        from taskengine_core.recurrence import compile_schedule

        if len(_CACHE) > 256:
            _CACHE.clear()
        _CACHE[key] = compile_schedule(json.loads(spec_text), zone)
    return _CACHE[key]


def check_blackouts(blackouts, default_zone: str) -> list[tuple[tuple, str]]:
    """Problems of a (schema-valid) ``settings.blackouts``: bad schedules and durations."""
    from taskengine_core.durations import parse_duration
    from taskengine_core.recurrence import check_schedule

    problems = []
    for n, spec in enumerate(blackouts if isinstance(blackouts, list) else ()):
        if not isinstance(spec, dict):
            continue
        if isinstance(spec.get("schedule"), dict):
            for sub, message in check_schedule(spec["schedule"], default_zone):
                path = tuple(p for p in sub.split(".") if p) if isinstance(sub, str) else tuple(sub)
                problems.append(((n, "schedule", *path), message))
        if "duration" not in spec:
            continue  # the schema says it is missing
        try:
            if parse_duration(spec["duration"]) <= 0:
                raise ValueError("must be longer than 0")
        except (ValueError, TypeError) as exc:
            problems.append(((n, "duration"), f"expected a duration such as 64h or 30m: {exc}"))
    return problems


# -- the executor's check ------------------------------------------------------------------------


def hold_runs(conn, runtime, now: datetime) -> bool:
    """Called by the executor before it claims, in its write transaction. Returns True when
    nothing may be claimed (paused); otherwise defers or skips the due runs that a blackout
    window holds, so that the claim that follows does not see them."""
    pause_state = current_pause(conn)
    if pause_state is not None:
        if pause_state.get("until") and from_iso(pause_state["until"]) <= now:
            resume(conn, now, actor=pause_state.get("by") or "engine", source="engine",
                   why=f"the pause ended at {pause_state['until']}")
            log.info("pause ended (it was until %s); runs go on", pause_state["until"])
        else:
            _announce(pause_state)
            return True
    blackouts = runtime.settings.get("blackouts")
    if not blackouts:
        return False
    windows = active_windows(blackouts, now, runtime.settings.get("timezone") or "UTC")
    if not windows:
        return False
    from taskengine_core.store.decisions import record_decision
    from taskengine_core.store.holds import defer_run, due_runs, skip_run

    now_text = to_iso(now)
    for run_id, task_name, attempt in due_runs(conn, now_text, SCAN):
        task = runtime.tasks.get(task_name)
        window = next((w for w in windows if task is not None and w.holds(task)), None)
        if window is None:
            continue
        if window.policy == "skip" and attempt == 0:
            why = f"blackout window {window.name!r} until {to_iso(window.ends)} (policy: skip)"
            if skip_run(conn, run_id, now_text, why):
                record_decision(conn, now_text, "skipped", why, task=task_name, run_id=run_id)
        else:  # a retry of a run already under way is deferred, never dropped
            why = f"blackout window {window.name!r}: deferred to {to_iso(window.ends)}"
            if defer_run(conn, run_id, to_iso(window.ends)):
                record_decision(conn, now_text, "deferred", why, task=task_name, run_id=run_id)
    return False


def seconds_until_resume(conn, now: datetime) -> float | None:
    """While paused: seconds until the pause ends (None: until resumed); not paused: 0."""
    pause_state = current_pause(conn)
    if pause_state is None:
        return 0.0
    if not pause_state.get("until"):
        return None
    return max(0.0, (from_iso(pause_state["until"]) - now).total_seconds())
