"""Offline tests of rule files (``taskengine rules test CASES.yaml``): each case gives an event
(or a time, for schedules) and the tasks expected to fire, optionally with their rendered
parameters. The real loader, evaluator and renderer decide; no action runs, nothing outside a
temporary database is written.

```yaml
rules: [../rules]                  # rule files or folders, relative to this file
cases:
  - name: alice's login powers on her VM
    event: {type: user.login, data: {user: alice}}
    expect:
      - task: gpu-vm-on
        params: {vm: gpu-alice}    # only the keys given are compared
  - name: bob's login does nothing
    event: {type: user.login, data: {user: bob}}
    expect: []
  - name: Saturday 17:00 Chicago time
    time: "2027-03-06T17:00:00-06:00"
    expect: [{task: download-updates}]
```
"""

from __future__ import annotations

import difflib
import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from taskengine_core.errors import TaskEngineError

CASE_KEYS = {"name", "event", "time", "expect"}
SCHEDULE_WINDOW = timedelta(minutes=1)  # a time case covers the minute it names


class CasesFileError(TaskEngineError):
    """The cases file itself is wrong (not a failing case)."""


@dataclass
class CaseResult:
    name: str
    passed: bool
    expected: list = field(default_factory=list)
    actual: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why rules did not fire, rendering problems

    def diff(self) -> str:
        want = _lines(self.expected)
        got = _lines(self.actual)
        return "\n".join(difflib.unified_diff(want, got, "expected", "actual", lineterm=""))


def load_cases(path: Path) -> tuple[list[Path], list[dict]]:
    """The rule paths and cases of a cases file; :class:`CasesFileError` names what is wrong."""
    from taskengine_core.rules.loader import load_document

    doc, problems = load_document(path)
    if problems:
        raise CasesFileError("; ".join(str(p) for p in problems))
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) or not data["cases"]:
        raise CasesFileError(f"{path}: expected a mapping with 'cases:', a list of cases (and 'rules:', "
                             "the rule files to test)")
    rules = data.get("rules") or []
    rules = [rules] if isinstance(rules, str) else rules
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise CasesFileError(f"{path}: 'rules' must be a path or a list of paths")
    cases = data["cases"]
    for n, case in enumerate(cases):
        where = f"{path}: case {n + 1}"
        if not isinstance(case, dict):
            raise CasesFileError(f"{where}: expected a mapping with event or time, and expect")
        where += f" ({case['name']})" if isinstance(case.get("name"), str) else ""
        unknown = set(case) - CASE_KEYS
        if unknown:
            raise CasesFileError(f"{where}: unknown key {sorted(unknown)[0]!r}; expected: {', '.join(sorted(CASE_KEYS))}")
        if ("event" in case) == ("time" in case) and "event" not in case:
            raise CasesFileError(f"{where}: give an event (type and data) or a time (for schedules)")
        if "event" in case and not (isinstance(case["event"], dict) and isinstance(case["event"].get("type"), str)):
            raise CasesFileError(f"{where}: event must be a mapping with a type, e.g. {{type: user.login, data: {{user: alice}}}}")
        if "time" in case:
            case["_time"] = _parse_time(case["time"], where)
        expect = case.get("expect")
        if not isinstance(expect, list) or not all(
                isinstance(e, str) or (isinstance(e, dict) and isinstance(e.get("task"), str)
                                       and set(e) <= {"task", "params"}) for e in expect):
            raise CasesFileError(f"{where}: expect must be a list of task names or {{task: NAME, params: {{...}}}} "
                                 "([] for nothing)")
    return [(path.parent / r) for r in rules], cases


def run_cases(rule_paths: list[Path], cases: list[dict], registry) -> list[CaseResult]:
    from taskengine_core.rules.validate import load_config

    config = load_config(rule_paths, registry)  # RuleFileError: reported like 'validate'
    return [_run_case(config, case, n, registry) for n, case in enumerate(cases)]


def _run_case(config, case: dict, n: int, registry) -> CaseResult:
    name = case.get("name") or f"case {n + 1}"
    when = case.get("_time") or datetime.now(timezone.utc)
    if "event" in case:
        fired, notes = _fired_by_event(config, case["event"], when, registry)
    else:
        fired, notes = _fired_at(config, when, registry)
    expected = [{"task": e} if isinstance(e, str) else dict(e) for e in case["expect"]]
    actual = []
    for fire in fired:  # only the parameters a case names are compared, so show just those
        wanted = next((e for e in expected if e["task"] == fire["task"] and "params" in e), None)
        entry = {"task": fire["task"]}
        if wanted is not None:
            entry["params"] = _subset_like(fire["params"], wanted["params"])
        actual.append(entry)
        notes.extend(f"{fire['task']}: {p}" for p in fire["problems"])
    key = lambda e: json.dumps(e, sort_keys=True, default=str)  # noqa: E731
    passed = sorted(map(key, expected)) == sorted(map(key, actual))
    return CaseResult(name, passed, sorted(expected, key=key), sorted(actual, key=key), notes)


def _fired_by_event(config, spec: dict, when: datetime, registry) -> tuple[list[dict], list[str]]:
    """Apply the rules to a scratch database, commit the event, let the real evaluator decide."""
    from taskengine_core.apply import apply_config
    from taskengine_core.clock import to_iso
    from taskengine_core.evaluator import Evaluator
    from taskengine_core.events import Event, insert_events
    from taskengine_core.model import load_runtime
    from taskengine_core.preview import preview_run
    from taskengine_core.store import Store
    from taskengine_core.task_logs import explain_event, list_runs

    clock = _FixedClock(when)
    with tempfile.TemporaryDirectory(prefix="taskengine-rules-test-") as scratch:
        store = Store(Path(scratch) / "cases.db")
        try:
            apply_config(store, config, clock=clock)
            runtime = load_runtime(store)
            event = Event(spec["type"], spec.get("data") or {}, source=spec.get("source", "test"), time=when)
            [event_id] = insert_events(store, [event], clock=clock)
            Evaluator(clock).process_pending(store, runtime)
            fired = []
            for run in reversed(list_runs(store, limit=1_000_000)):
                if run["event_id"] != event_id:
                    continue
                task = runtime.tasks[run["task"]]
                due = datetime.fromisoformat(run["not_before"].replace("Z", "+00:00"))
                event_dict = {"id": event_id, "type": event.type, "source": event.source,
                              "source_id": None, "time": to_iso(when), "data": event.data}
                preview = preview_run(task, registry, now=due, event=event_dict, trigger="event")
                fired.append({"task": run["task"], "params": preview.params, "problems": preview.problems})
            explained = explain_event(store, event_id)
            notes = [f"{d['rule']}: {d['decision']} ({d['reason']})" + (f" for {d['task']}" if d["task"] else "")
                     for d in explained["decisions"] if d["decision"] != "matched"]
            # rules whose type matched but whose conditions did not (the rest are noise here)
            notes += [f"{r['rule']}: {r['reason']}" for r in explained["rules_now"]
                      if not r["matched"] and not r["reason"].startswith("type ")]
        finally:
            store.close()
    return fired, notes


def _fired_at(config, when: datetime, registry) -> tuple[list[dict], list[str]]:
    """Tasks whose schedules have a slot in the minute starting at ``when``."""
    from taskengine_core.model import TaskConfig
    from taskengine_core.preview import preview_run
    from taskengine_core.recurrence import compile_schedule

    zone = config.settings.get("timezone") or "UTC"
    fired, notes = [], []
    for name, definition in sorted(config.objects["schedules"].items()):
        slot = compile_schedule(definition.spec, zone).next_after(when - timedelta(microseconds=1))
        if slot is None or slot >= when + SCHEDULE_WINDOW:
            continue
        if definition.spec.get("enabled", True) is False:
            notes.append(f"schedule {name}: due, but disabled")
            continue
        for task_name, schedule in sorted(config.task_schedules):
            if schedule != name:
                continue
            spec = config.tasks[task_name].spec
            if spec.get("enabled", True) is False:
                notes.append(f"schedule {name}: task {task_name} is disabled")
                continue
            task = TaskConfig.from_row({"name": task_name, "spec": spec, "enabled": True})
            preview = preview_run(task, registry, now=slot, trigger="schedule", schedule=name)
            fired.append({"task": task_name, "params": preview.params, "problems": preview.problems})
    return fired, notes


def _subset_like(actual: Any, wanted: Any) -> Any:
    """``actual`` cut down to the keys ``wanted`` names (recursively), so a case compares only
    the parameters it lists; a key ``actual`` lacks stays missing (and fails the case)."""
    if isinstance(wanted, dict) and isinstance(actual, dict):
        return {k: _subset_like(actual[k], v) for k, v in wanted.items() if k in actual}
    return actual


def _parse_time(value: Any, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise CasesFileError(f"{where}: time must be an ISO date-time with a zone offset, e.g. "
                             "2027-03-06T17:00:00-06:00 or 2027-03-06T23:00:00Z")
    return parsed.astimezone(timezone.utc)


def _lines(entries: list) -> list[str]:
    return json.dumps(entries, indent=2, sort_keys=True, default=str, ensure_ascii=False).splitlines()


class _FixedClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        import time

        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        pass
