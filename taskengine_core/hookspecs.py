"""Hook specifications of the ``taskengine`` plugin system.

Only markers and specs live here. Plugins import ``hookimpl`` and implement any of the hooks
below; see ``docs/hooks.md`` for a guide with examples. Hooks are always called with keyword
arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover - import only for type checkers
    import click

    from taskengine_core.context import EngineInfo, RunInfo

PROJECT = "taskengine"
# What plugin code can rely on; raised when a context loses or changes a field. 2: the database
# path is gone from ActionContext and EngineInfo; actions and dispatchers get ``deliveries``
# (taskengine_core.deliveries.Deliveries) and keep ``state`` and ``emit`` (see docs/hooks.md).
PLUGIN_API_VERSION = 2

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- Registration: what a plugin provides ---------------------------------------------------


@hookspec
def register_actions(register: Callable[..., None]) -> None:
    """Register the actions a task can run.

    :param register: call ``register(name, func, *, schema=None, description="",
        idempotent=False)`` once per action. ``func(params, ctx)`` receives the task's rendered
        parameters (validated against ``schema``, a JSON Schema) and an
        :class:`~taskengine_core.context.ActionContext`; it returns JSON-serialisable output or
        raises :class:`~taskengine_core.errors.ActionError`. ``idempotent=True`` lets the engine
        re-run an attempt that a crash interrupted. Duplicate names are refused.
    :return: nothing; items go through ``register``.
    """


@hookspec
def register_triggers(register: Callable[..., None]) -> None:
    """Register event sources: long-running producers of events.

    :param register: call ``register(name, func, *, schema=None, description="",
        runs_on="every_node")``. ``func(ctx)`` runs in its own thread while the engine runs; it
        reads its settings from ``ctx.settings``, calls ``ctx.emit(type, data, id=...)`` for
        each event and returns when ``ctx.stopping`` is set. ``schema`` describes its settings
        section. ``runs_on="one_node"``: with several engines on one database, only the engine
        holding the source's lease runs it (a poller of a shared system).
    :return: nothing; items go through ``register``.
    """


@hookspec
def register_notifiers(register: Callable[..., None]) -> None:
    """Register notifiers: ways to tell a person something (email, chat, ...).

    Rule files use them with ``notify: {on: [failed], via: NAME, to: ...}`` on a task: when a
    run ends in a listed state the engine renders the message and calls the notifier (see
    :mod:`taskengine_core.notify`).

    :param register: call ``register(name, func, *, schema=None, description="")``.
        ``func(message, settings)`` delivers ``message`` (a dict with ``subject``, ``text``,
        ``to`` and ``run_id``) using the settings section named after the notifier, secrets
        resolved; it raises :class:`~taskengine_core.errors.ActionError` on failure
        (``retryable`` decides whether it is tried again).
    :return: nothing; items go through ``register``.
    """


@hookspec
def register_settings(register: Callable[..., None]) -> None:
    """Register a section of the rule files' ``settings`` block.

    :param register: call ``register(name, schema, *, description="", check=None)``;
        ``name`` is the key under ``settings`` (for example ``email``), ``schema`` its JSON
        Schema, and ``check(value)`` (optional) yields ``(path, message)`` pairs for what a
        schema cannot say; ``validate`` reports them at their file and line.
    :return: nothing; items go through ``register``.
    """


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add commands or command groups to the ``taskengine`` CLI.

    :param cli: the top-level click group; call ``cli.add_command(...)`` or use
        ``@cli.command()``.
    :return: nothing.
    """


# --- Evaluation: turning references into values ---------------------------------------------


@hookspec(firstresult=True)
def resolve_secret(scheme: str, reference: str) -> str | None:
    """Resolve a secret reference ``${scheme:reference}`` to its value, at the moment of use.

    First result wins: return the value, or ``None`` when this plugin does not handle
    ``scheme``. The built-in implementation (``env`` and ``file``) is ``trylast``, so an
    installed plugin can add schemes such as ``vault`` or override the built-in ones.

    :param scheme: the part before the colon, e.g. ``env``.
    :param reference: the part after the colon, e.g. ``SMTP_PASSWORD``.
    :return: the secret value, or ``None`` if not handled.
    :raises SecretError: if the scheme is handled but the secret is missing.
    """


# --- Execution: the engine's lifecycle ------------------------------------------------------


@hookspec
def engine_started(engine: "EngineInfo") -> None:
    """Called once the engine has started its scheduler, executor, ingress and sources.

    :param engine: an :class:`~taskengine_core.context.EngineInfo`: the listen address, the
        settings, ``emit``, secret ``resolve``/``redact`` and the ``deliveries`` queue in the
        engine's database (never its path: plugin API 2).
    :return: nothing.
    """


@hookspec
def engine_stopping(engine: "EngineInfo") -> None:
    """Called when the engine begins a graceful stop, before in-flight runs are awaited.

    :param engine: the same object passed to ``engine_started``.
    :return: nothing.
    """


@hookspec
def run_finished(run: "RunInfo") -> Any:
    """Called once per run, after it reaches a final state (succeeded, failed, cancelled,
    interrupted); a failed attempt that will be retried does not call it.

    A plugin failure here is logged and does not change the run's outcome.

    :param run: the run's id, task, status, error, duration and output.
    :return: ignored.
    """
