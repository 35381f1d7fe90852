"""Running one attempt of one run: render parameters, resolve secrets, call the action, and
turn whatever happens (success, ActionError, any exception, garbage output) into an Outcome."""

from __future__ import annotations

import json
import threading
import traceback
from typing import Any, Callable

from taskengine_core.clock import Clock, to_iso
from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError, ParameterError, SecretError, TemplateError
from taskengine_core.plugin_state import PluginState
from taskengine_core.registry import Registry
from taskengine_core.rules.schema_check import SchemaCheck
from taskengine_core.runs import Claimed, Outcome
from taskengine_core.secrets import SecretResolver
from taskengine_core.template_event import AbsentEvent
from taskengine_core.templating import TemplateRenderer


class _ConfigProblem(Exception):
    """The run cannot start: its parameters or settings are wrong. Not retried."""


class AttemptRunner:
    """Everything needed to run attempts; one instance shared by all workers (thread-safe)."""

    def __init__(self, *, registry: Registry, secrets: SecretResolver, clock: Clock,
                 load_event: Callable[[str], dict | None], emit: Callable[..., str],
                 deliveries: Any = None, state_store: Callable[[], Any] | None = None) -> None:
        self.registry = registry
        self.deliveries = deliveries  # ctx.deliveries: the engine's webhook delivery queue
        self.state_store = state_store  # the calling thread's Store, for ctx.state
        self.secrets = secrets
        self.clock = clock
        self.load_event = load_event
        self.emit = emit
        self.renderer = TemplateRenderer()
        self._validators: dict[str, SchemaCheck] = {}
        # id(task) -> (task, schema, fixed): fixed when the task's own parameters (no templates, no
        # secret references) passed its action's schema, so its runs without overrides are not
        # bound, rendered and checked again; False when they have templates or references
        self._fixed_params: dict[int, tuple] = {}
        self._lock = threading.Lock()

    def prepare(self, run: Claimed, settings: dict, cancelled: threading.Event) -> tuple[Any, ActionContext]:
        """The action item and its context; raises _ConfigProblem when the run cannot start."""
        task = run.task
        item = self.registry.actions.get(task.action)
        if item is None:
            raise _ConfigProblem(f"action {task.action!r} is not installed; see 'taskengine plugins'")
        event = run.event if run.event is not None or not run.event_id else self.load_event(run.event_id)
        params = merged(task.params, run.params or {})
        # the task's own values with no template or secret reference in them, checked before:
        # binding and rendering would copy them as they are (so does _copied), and they pass
        fixed = run.params is None and self._fixed(task, item.schema) is True
        try:
            bound, secret_values = (params, {}) if fixed else self.secrets.bind(params)
            plugin_settings = self.secrets.resolve(settings.get(task.action.split(".", 1)[0]) or {})
        except SecretError as exc:
            raise _ConfigProblem(f"task {task.name!r}: {exc}") from None
        resolved = _copied(params) if fixed else self._rendered(run, event, params, bound, secret_values, item)
        ctx = ActionContext(run_id=run.id, task=task.name, attempt=run.attempt, event=event,
                            settings=plugin_settings, timeout=task.timeout, cancelled=cancelled,
                            emit=self.emit, deliveries=self.deliveries, state=self._state(task.action),
                            outcome_writes=[])
        return (item, resolved), ctx

    def _rendered(self, run: Claimed, event: dict | None, params: dict, bound: Any, secret_values: dict,
                  item) -> Any:
        """``params`` (``bound``: with secrets bound) rendered and checked against the action's
        schema; raises _ConfigProblem naming what is wrong."""
        task = run.task
        context = {
            "event": event if event is not None else AbsentEvent(_no_event_reason(run)),
            "run": {"id": run.id, "attempt": run.attempt, "trigger": run.trigger,
                    "schedule": run.schedule, "slot": run.slot, "task": task.name},
            "task": {"name": task.name, "action": task.action},
            "now": to_iso(self.clock.now()),
        }
        try:
            resolved = self.renderer.render_value(bound, {**context, **secret_values},
                                                  time_limit=task.timeout, schema=item.schema)
        except TemplateError as exc:
            raise _ConfigProblem(f"task {task.name!r}: {self.secrets.redactor(str(exc))}") from None
        validator = self._validator(task.action, item.schema)
        errors = list(validator.errors(resolved))
        if errors and coerce_templated(resolved, params, errors):
            errors = list(validator.errors(resolved))
        if errors:
            from taskengine_core.rules.messages import explain

            extra, message = explain(errors[0])
            where = ".".join(str(p) for p in ("with", *errors[0].absolute_path, *extra))
            raise _ConfigProblem(f"task {task.name!r}: parameters invalid after rendering: {where}: "
                                 f"{self.secrets.redactor(message)}")
        if run.params is None and self._fixed(task, item.schema) is None:  # the same values every attempt
            self._remember(task, item.schema, True)
        return resolved

    def check_params(self, task, overrides: dict,
                     exists: Callable[[str, str], bool] | None = None) -> None:
        """Check a manual run's parameters before it is queued: the task's own with
        ``overrides`` laid over them, against the action's schema (a templated value is checked
        when an attempt renders it), the overrides' template syntax, and with ``exists(section,
        name)`` that an overridden reference (``webhook: NAME``) names a defined object.

        :raises ParameterError: naming the parameter and what was expected.
        """
        item = self.registry.actions.get(task.action)
        if item is None:
            raise ParameterError(f"task {task.name!r}: action {task.action!r} is not installed; "
                                 "see 'taskengine plugins'")
        known = not overrides and self._fixed(task, item.schema)
        if known is True:  # the task's own values, no template or secret in them: they passed
            return
        from taskengine_core.rules.messages import explain
        from taskengine_core.rules.paths import _ref_params, dig

        for where, problem in self.renderer.check(overrides):
            raise ParameterError(f"task {task.name!r}: parameter {where}: {problem}; nothing was queued")
        params = merged(task.params, overrides)
        for error in self._validator(task.action, item.schema).errors(params):
            if isinstance(error.instance, str) and ("{{" in error.instance or "{%" in error.instance):
                continue
            extra, message = explain(error)
            where = ".".join(str(p) for p in (*error.absolute_path, *extra))
            named = f"parameter {where}" if where else "parameters"
            raise ParameterError(f"task {task.name!r}: {named}: {self.secrets.redactor(message)}; "
                                 "nothing was queued")
        if known is None:  # no error above: what an attempt checks too, the same every time
            self._remember(task, item.schema, True)
        for path, section in (_ref_params(item.schema) if exists else ()):
            value = dig(overrides, path)
            if isinstance(value, str) and "{{" not in value and not exists(section, value):
                where = ".".join(map(str, path))
                raise ParameterError(f"task {task.name!r}: parameter {where}: no {section.rstrip('s')} named "
                                     f"{value!r}; see 'taskengine {section} list'; nothing was queued")

    def run(self, run: Claimed, settings: dict, cancelled: threading.Event) -> Outcome:
        started = self.clock.now()
        plugin = version = writes = None
        attention = False
        try:
            (item, params), ctx = self.prepare(run, settings, cancelled)
            plugin, version = item.plugin.distribution, item.plugin.version
            output = item.func(params, ctx)
            output = _checked_output(output)
            # an action that returned normally did its work, even if a cancel came meanwhile
            status, error, tb, retryable = "succeeded", None, None, True
            writes = ctx.outcome_writes or None
        except _ConfigProblem as exc:  # retrying cannot help: an operator must fix it
            output, status, error, tb, retryable, attention = None, "failed", str(exc), None, False, True
        except (SecretError, TemplateError) as exc:  # raised by the action itself: configuration too
            output, status, tb, retryable, attention = None, "failed", None, False, True
            error = f"task {run.task.name!r}: {self.secrets.redactor(str(exc))}"
        except ActionError as exc:
            output, status, error, tb, retryable = exc.output, "failed", str(exc), None, exc.retryable
            if cancelled.is_set():
                status = "cancelled"
        except Exception as exc:  # noqa: BLE001 - a plugin may raise anything; its run fails, we go on
            output, status, tb, retryable = None, "failed", traceback.format_exc(limit=20), True
            error = f"{type(exc).__name__}: {exc}"
            if cancelled.is_set():  # whatever a cancelled action raises, it was cancelled
                status = "cancelled"
        return Outcome(run, status, started, self.clock.now(), output=output, error=error,
                       traceback=tb, retryable=retryable, plugin=plugin, plugin_version=version,
                       attention=attention, writes=writes)

    def _fixed(self, task, schema: dict) -> bool | None:
        """Whether ``task``'s own parameters (a run without overrides) are known to pass
        ``schema`` every attempt: True once checked, False when they cannot be known ahead (a
        template or a secret reference in them: rendered per attempt), None when not checked yet."""
        known = self._fixed_params.get(id(task))
        if known is not None and known[0] is task and known[1] is schema:
            return known[2]
        if _varies(task.params):
            self._remember(task, schema, False)
            return False
        return None

    def _remember(self, task, schema: dict, fixed: bool) -> None:
        if len(self._fixed_params) >= _FIXED_MAX:  # configurations applied over a long run
            self._fixed_params.clear()
        self._fixed_params[id(task)] = (task, schema, fixed)  # the task kept: its id is not reused meanwhile

    def _state(self, action: str):
        if self.state_store is None:
            return None
        return PluginState(self.state_store, "actions:" + action.split(".", 1)[0], self.clock)

    def _validator(self, action: str, schema: dict) -> SchemaCheck:
        with self._lock:
            if action not in self._validators:
                self._validators[action] = SchemaCheck(schema)
            return self._validators[action]


_FIXED_MAX = 4096


def _copied(value: Any) -> Any:
    """What rendering makes of a value with no template in it: mappings and lists copied
    (tuples become lists), anything else as it is; an action changing its parameters never
    changes the task's."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copied(v) for v in value]
    return value


def _varies(value: Any) -> bool:
    """Whether rendering can change ``value`` from one attempt to the next: a template, or a
    secret reference (resolved at each attempt), anywhere in it."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value or "${" in value
    if isinstance(value, dict):
        return any(_varies(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_varies(v) for v in value)
    return False


def _no_event_reason(run: Claimed) -> str:
    if run.event_id:
        return f"its event {run.event_id} is no longer stored"
    if run.trigger == "schedule":
        return f"it was fired by schedule {run.schedule!r}"
    if run.trigger == "manual":
        return "it was run by hand"
    return f"it was started by {run.trigger!r}"


def _checked_output(output: Any) -> Any:
    if output is None or type(output) in (str, int, bool):  # serialisable as it is
        return output
    try:
        json.dumps(output)
    except (TypeError, ValueError) as exc:
        raise ActionError(f"the action returned output that is not JSON-serialisable ({exc})",
                          retryable=False) from None
    return output


def coerce_templated(value: Any, source: Any, errors: list) -> bool:
    """Give a templated scalar the type the action's schema asks for, as Ansible's argument
    specs do: ``argv: [echo, "{{ event.data.n }}"]`` renders the number 5, and a string is
    wanted. Only values that came from a template change. Returns whether anything changed."""
    changed = False
    for error in errors:
        if error.validator != "type" or not error.absolute_path:
            continue
        path = list(error.absolute_path)
        original = _dig(source, path)
        if not (isinstance(original, str) and ("{{" in original or "{%" in original)):
            continue
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        new = _convert(error.instance, wanted)
        if new is not _NO:
            parent = _dig(value, path[:-1])
            parent[path[-1]] = new
            changed = True
    return changed


_NO = object()


def _convert(instance: Any, wanted: list[str]) -> Any:
    if "string" in wanted and isinstance(instance, (int, float)) and not isinstance(instance, bool):
        return str(instance)
    if isinstance(instance, str):
        text = instance.strip()
        if "integer" in wanted and text.lstrip("-").isdigit():
            return int(text)
        if "number" in wanted:
            try:
                return float(text)
            except ValueError:
                pass
        if "boolean" in wanted and text.lower() in ("true", "false"):
            return text.lower() == "true"
    return _NO


def _dig(value: Any, path: list) -> Any:
    from taskengine_core.rules.paths import dig

    return dig(value, tuple(path))


def merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` laid over it, mapping by mapping: ``--param env.B=x`` adds
    ``B`` to the task's ``env`` and keeps the rest. Any other value replaces what was there."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
