"""Notifications on a task's outcome: ``notify:`` on a task sends a message through a notifier
(``register_notifiers``; the built-in ``email``) when a run ends in one of the listed states.

```yaml
tasks:
  backup:
    action: command.run
    with: {argv: [backup.sh]}
    notify: {on: [failed], via: email, to: ops@example.com}
```

``subject``, ``text`` and ``to`` are templates over ``run`` (id, task, status, error, duration,
output, attempts), ``task`` and ``event``. The notifier reads the settings section named after
it (``settings.email``). Messages go out on a thread of their own, so a slow mail server never
holds up the engine; a retryable failure is tried again (3 attempts); each outcome is a
decision row (``notified`` / ``notify failed``) shown by ``taskengine logs show RUN_ID``.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

log = logging.getLogger("taskengine.notify")
OUTCOMES = ("succeeded", "failed", "cancelled", "interrupted")
ATTEMPTS = 3
BACKOFF = 5.0  # seconds before the second attempt; doubles
DEFAULT_SUBJECT = "[taskengine] task {{ run.task }} {{ run.status }}"
DEFAULT_TEXT = ("Task {{ run.task }} {{ run.status }} (run {{ run.id }}, attempt {{ run.attempts }}"
                "{% if run.duration is not none %}, {{ '%.1f' | format(run.duration) }}s{% endif %})."
                "{% if run.error %}\n\nError: {{ run.error }}{% endif %}"
                "{% if event %}\n\nTriggered by event {{ event.type }} ({{ event.id }}).{% endif %}"
                "\n\nDetails: taskengine logs show {{ run.id }}")

_RULE = {
    "type": "object",
    "required": ["via", "to"],
    "additionalProperties": False,
    "properties": {
        "on": {"type": "array", "items": {"enum": list(OUTCOMES)}, "minItems": 1, "uniqueItems": True,
               "default": ["failed"], "description": "the outcomes that send a message"},
        "via": {"type": "string", "minLength": 1, "description": "a notifier: see 'taskengine plugins'"},
        "to": {"oneOf": [{"type": "string", "minLength": 1},
                         {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}],
               "description": "recipients (templates allowed)"},
        "subject": {"type": "string", "description": "a template over run, task and event"},
        "text": {"type": "string", "description": "a template over run, task and event"},
    },
}
# one entry or a list of them (if/then/else, so that errors name the failing key, not "oneOf")
SCHEMA = {"type": ["object", "array"],
          "if": {"type": "array"}, "then": {"items": _RULE, "minItems": 1}, "else": _RULE,
          "description": "send a message through a notifier when a run ends in a listed state"}


def rules_of(spec: Any) -> list[dict]:
    """The ``notify`` entries of a task spec, as a list."""
    if not spec:
        return []
    return list(spec) if isinstance(spec, list) else [spec]


def check(spec: Any, registry, renderer) -> list[tuple[tuple, str]]:
    """Problems of a (schema-valid) ``notify`` value: unknown notifiers, template syntax."""
    problems = []
    many = isinstance(spec, list)
    for n, rule in enumerate(rules_of(spec)):
        where = (n,) if many else ()
        via = rule.get("via")
        if via not in registry.notifiers:
            known = ", ".join(sorted(registry.notifiers)) or "none installed"
            problems.append((where + ("via",), f"unknown notifier {via!r}; installed notifiers: {known} "
                                               "(see 'taskengine plugins')"))
        for key in ("to", "subject", "text"):
            for sub, message in renderer.check(rule.get(key), path=key):
                problems.append((where + (key,), message))
    return problems


class HooksWithNotifications:
    """The plugin hooks as the engine's executor calls them: ``run_finished`` goes through
    pluggy's call loop with this engine's notifications as one more implementation (for this
    engine only: several engines may share one plugin manager)."""

    def __init__(self, hook, notifications: "RunNotifications") -> None:
        self._hook, self._notifications = hook, notifications

    def run_finished(self, *, run) -> list:
        caller = self._hook.run_finished
        impls = caller.get_hookimpls()
        if any(impl.tryfirst or impl.wrapper or impl.hookwrapper for impl in impls):
            return caller.call_extra([self._notifications.run_finished], {"run": run})
        # the order call_extra gives when no implementation is a wrapper or tryfirst (ours first,
        # then the plugins'; an exception stops the rest), without building pluggy's HookImpl
        # for ours (signature inspection) once per finished run
        self._notifications.run_finished(run)
        return caller(run=run) if impls else []

    def heard(self):
        """For one batch of finished runs: a function telling whether a run of a task (by name)
        finishing is heard by anyone (a plugin implementing ``run_finished``, or the task's
        ``notify`` entries), so that the executor makes no call for runs nobody listens to."""
        if self._hook.run_finished.get_hookimpls():
            return lambda task: True
        tasks = self._notifications.engine.runtime.tasks
        return lambda task: bool(getattr(tasks.get(task), "notify", ()))

    def __getattr__(self, name: str):
        return getattr(self._hook, name)


class RunNotifications:
    """Queues the messages a finished run's task asks for (``run_finished``); a thread renders
    and sends them."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def run_finished(self, run) -> None:
        task = self.engine.runtime.tasks.get(run.task)
        wanted = [r for r in getattr(task, "notify", ()) if run.status in r.get("on", ["failed"])]
        if not wanted:
            return
        for rule in wanted:
            self._queue.put((run.id, rule))
        self._ensure_thread()

    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every queued message was sent or given up (for tests and scripts)."""
        import time

        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._work, name="taskengine-notify", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        from taskengine_core.store import open_store

        store = open_store(self.engine.db_path, migrate=False)
        try:
            while True:
                item = self._queue.get()
                try:
                    if item is None:
                        return
                    self._send(store, *item)
                except Exception:  # noqa: BLE001 - one bad message must not stop the others
                    log.exception("notification for run %s failed", item[0] if item else "?")
                finally:
                    self._queue.task_done()
        finally:
            store.close()

    def _send(self, store, run_id: str, rule: dict) -> None:
        from taskengine_core.clock import to_iso
        from taskengine_core.errors import ActionError, TaskEngineError
        from taskengine_core.store.decisions import record_decision
        from taskengine_core.task_logs import show_run
        from taskengine_core.templating import TemplateRenderer

        run = show_run(store, run_id)
        via = rule["via"]
        item = self.engine.registry.notifiers.get(via)
        secrets = self.engine.secrets
        outcome, reason = "notify failed", ""
        try:
            if item is None:
                raise ActionError(f"notifier {via!r} is not installed; see 'taskengine plugins'", retryable=False)
            context = {
                "run": {"id": run["id"], "task": run["task"], "status": run["status"], "error": run["error"],
                        "duration": run["duration"], "output": run["output"], "attempts": run["attempt"],
                        "trigger": run["trigger"]},
                "task": {"name": run["task"]},
                "event": run.get("event"),
            }
            renderer = TemplateRenderer()
            message = {
                "to": renderer.render_value(rule["to"], context, path="notify.to"),
                "subject": str(renderer.render_value(rule.get("subject", DEFAULT_SUBJECT), context)),
                "text": str(renderer.render_value(rule.get("text", DEFAULT_TEXT), context)),
                "run_id": f"{run_id}.notify",
            }
            settings = secrets.resolve(self.engine.runtime.settings.get(via) or {})
            self._deliver(item, message, settings)
            outcome = "notified"
            reason = f"{via} to {_recipients(message['to'])}: run {run['status']}"
        except (ActionError, TaskEngineError) as exc:
            reason = f"{via}: {secrets.redactor(str(exc))}"
        except Exception as exc:  # noqa: BLE001 - a notifier may raise anything
            reason = f"{via}: {type(exc).__name__}: {secrets.redactor(str(exc))}"
        if outcome != "notified":
            log.warning("run %s: notification not sent (%s)", run_id, reason)
        with store.write() as db:
            record_decision(db.conn, to_iso(self.engine.clock.now()), outcome, reason,
                            task=run["task"], run_id=run_id)

    def _deliver(self, item, message: dict, settings: dict) -> None:
        from taskengine_core.errors import ActionError

        delay = BACKOFF
        for attempt in range(1, ATTEMPTS + 1):
            try:
                item.func(message, settings)
                return
            except ActionError as exc:
                if not exc.retryable or attempt == ATTEMPTS:
                    raise
            if self._stop.wait(delay):
                raise ActionError("the engine stopped before the message could be sent")
            delay *= 2


def _recipients(to: Any) -> str:
    return ", ".join(to) if isinstance(to, list) else str(to)
