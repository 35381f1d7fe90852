"""What the engine hands to plugin code: action, source and lifecycle contexts.

This is plugin API version 2 (:data:`taskengine_core.hookspecs.PLUGIN_API_VERSION`): plugin code
never learns where the database is. It keeps durable state in ``state``, records webhook
deliveries through ``deliveries`` and creates events with ``emit``; see ``docs/hooks.md``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from taskengine_core.deliveries import Deliveries
    from taskengine_core.plugin_processes import PluginProcess  # noqa: F401
    from taskengine_core.plugin_state import PluginState


def _no_emit(type: str, data: dict | None = None, **kwargs) -> str:  # noqa: A002
    raise RuntimeError("this context cannot emit events")


@dataclass
class ActionContext:
    """Everything an action may know about the run it is part of."""

    run_id: str
    task: str
    attempt: int = 1
    event: dict | None = None
    settings: dict = field(default_factory=dict)
    timeout: float | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    emit: Callable[..., str] = _no_emit
    started_monotonic: float = field(default_factory=time.monotonic)
    # the engine's webhook delivery queue, for actions that queue work durably (the database
    # behind it, SQLite or PostgreSQL, is the engine's); None outside an engine
    deliveries: "Deliveries | None" = None
    # durable key/value state shared by the runs of one plugin's actions (scope: the action's
    # namespace, e.g. ``updates``); None outside an engine
    state: "PluginState | None" = None
    # rows committed in the transaction that records this run's outcome, filled by
    # write_with_outcome; None where no executor records the outcome (a context made elsewhere)
    outcome_writes: list | None = None

    def write_with_outcome(self, writer: Any, item: Any) -> None:
        """Have ``writer.write(conn, items, now)`` write ``item`` in the transaction that records
        this run's outcome, if the attempt succeeds (see :mod:`taskengine_core.outcome_writes`)."""
        if self.outcome_writes is None:
            raise RuntimeError("this context has no outcome to write with (outcome_writes is None)")
        self.outcome_writes.append((writer, item))

    def time_left(self) -> float | None:
        """Seconds until the task's timeout, or ``None`` when the task has none."""
        if self.timeout is None:
            return None
        return max(0.0, self.timeout - (time.monotonic() - self.started_monotonic))


@dataclass
class SourceContext:
    """Handed to an event source (trigger) running in its own thread."""

    name: str
    settings: dict
    emit: Callable[..., str]
    stopping: threading.Event = field(default_factory=threading.Event)
    # durable key/value state of this source (positions, cursors, last seen states), kept in the
    # engine's database across restarts; see :class:`~taskengine_core.plugin_state.PluginState`
    state: "PluginState | None" = None
    # many events in one transaction: ``emit_many([{"type": T, "data": {...}, "id": ID}, ...])``
    # returns their ids; an ``id`` seen from this source before (the inbox's duplicate check) is
    # recorded as a duplicate and runs nothing
    emit_many: Callable[[list[dict]], list[str]] = lambda events: [_no_emit("")]


@dataclass(frozen=True)
class EngineInfo:
    """What lifecycle hooks get: facts about the running engine and the few services a plugin
    that runs in the background (a delivery queue, say) needs."""

    listen: str | None = None
    emit: Callable[..., str] = _no_emit
    settings: dict = field(default_factory=dict)  # the rule files' settings, references unresolved
    resolve: Callable[[Any], Any] = lambda value: value  # resolves ${env:...} references at use
    redact: Callable[[Any], Any] = lambda value: value  # removes resolved secrets from text/data
    # the webhook delivery queue in the engine's database, for a dispatcher running in the
    # background (see :class:`~taskengine_core.deliveries.Deliveries`)
    deliveries: "Deliveries | None" = None
    # start_process(entry, name=...): run a plugin's background work ("module:function") in a
    # process of its own, on this engine's database (see :mod:`taskengine_core.plugin_processes`);
    # None where no engine runs
    start_process: "Callable[..., PluginProcess] | None" = None


@dataclass(frozen=True)
class RunInfo:
    """A finished run, for the ``run_finished`` hook."""

    id: str
    task: str
    status: str
    error: str | None = None
    duration: float | None = None
    output: Any = None
