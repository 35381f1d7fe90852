"""The dispatchers running in this process, one per started engine. An action that queues a
delivery wakes its own engine's dispatcher through ``ctx.deliveries.queued()``; callers that
have no context (the dashboard) use :func:`wake_for`."""

from __future__ import annotations

import threading

from taskengine_core.context import EngineInfo

from .dispatcher import Dispatcher

_running: dict[int, Dispatcher] = {}
_lock = threading.Lock()


def start_for(info: EngineInfo) -> Dispatcher:
    dispatcher = Dispatcher(info)
    with _lock:
        _running[id(info)] = dispatcher
    dispatcher.start()
    return dispatcher


def stop_for(info: EngineInfo) -> None:
    with _lock:
        dispatcher = _running.pop(id(info), None)
    if dispatcher is not None:
        dispatcher.stop()


def wake_for(database: object = None, webhook: str | None = None) -> None:
    """Tell this process's dispatchers that deliveries were queued (for ``webhook``, or any).
    ``database``: the engine's :class:`~taskengine_core.deliveries.Deliveries` to wake only
    its dispatcher; anything else (a path, from callers of plugin API 1) wakes them all, which
    costs a look each and is always safe."""
    with _lock:
        targets = [d for d in _running.values()
                   if not hasattr(database, "queued") or d.info.deliveries is database]
    for dispatcher in targets:
        dispatcher.wake(webhook)


def dispatchers_of(deliveries: object) -> list[Dispatcher]:
    """This process's dispatchers working on the queue ``deliveries`` (the intake lets them
    write in its transactions)."""
    with _lock:
        return [d for d in _running.values() if d.info.deliveries is deliveries]
