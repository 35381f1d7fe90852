"""What a run would do, without doing it: its parameters rendered as the worker renders them
(templates over the event, run and task), secret references left as references, checked
against the action's schema. Used by ``tasks run --dry-run`` and ``rules test``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskengine_core.clock import to_iso
from taskengine_core.model import TaskConfig


@dataclass
class Preview:
    task: str
    action: str
    plugin: str | None
    params: Any
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"task": self.task, "action": self.action, "plugin": self.plugin,
                "params": self.params, "problems": self.problems}


def preview_run(task: TaskConfig, registry, *, now: datetime, event: dict | None = None,
                trigger: str = "manual", overrides: dict | None = None, schedule: str | None = None,
                renderer=None) -> Preview:
    """Render ``task``'s parameters for a run triggered by ``trigger`` (with ``event``)."""
    from taskengine_core.errors import TemplateError
    from taskengine_core.templating import TemplateRenderer
    from taskengine_core.worker import coerce_templated, merged

    item = registry.actions.get(task.action)
    preview = Preview(task.name, task.action, str(item.plugin) if item else None, None)
    if item is None:
        preview.problems.append(f"action {task.action!r} is not installed; see 'taskengine plugins'")
    context = {
        "event": event,
        "run": {"id": "(dry run)", "attempt": 1, "trigger": trigger, "schedule": schedule,
                "slot": to_iso(now) if schedule else None, "task": task.name},
        "task": {"name": task.name, "action": task.action},
        "now": to_iso(now),
    }
    params = merged(task.params, overrides or {})
    try:
        preview.params = (renderer or TemplateRenderer()).render_value(params, context)
    except TemplateError as exc:
        preview.problems.append(f"task {task.name!r}: {exc}")
        return preview
    if item is not None:
        from taskengine_core.rules.schema_check import SchemaCheck

        check = SchemaCheck(item.schema)
        errors = list(check.errors(preview.params))
        if errors and coerce_templated(preview.params, params, errors):
            errors = list(check.errors(preview.params))
        for error in errors:
            from taskengine_core.rules.messages import explain

            extra, message = explain(error)
            where = ".".join(str(p) for p in ("with", *error.absolute_path, *extra))
            preview.problems.append(f"parameters invalid after rendering: {where}: {message}")
    return preview
