"""The dispatchers of the engines started in this process, one :class:`~.placement.Placement`
per engine (its dispatcher in this process, or its dispatcher processes). An action that queues a
delivery wakes its own engine's dispatchers through ``ctx.deliveries.queued()``; callers that
have no context (the dashboard) use :func:`wake_for`."""

from __future__ import annotations

import threading

from taskengine_core.context import EngineInfo

from .dispatcher import Dispatcher
from .placement import Placement

_running: dict[int, Placement] = {}
_lock = threading.Lock()


def start_for(info: EngineInfo) -> Placement:
    placement = Placement(info)
    with _lock:
        _running[id(info)] = placement
    placement.start()
    return placement


def stop_for(info: EngineInfo) -> None:
    with _lock:
        placement = _running.pop(id(info), None)
    if placement is not None:
        placement.stop()


def wake_for(database: object = None, webhook: str | None = None) -> None:
    """Tell this process's engines' dispatchers that deliveries were queued (for ``webhook``,
    or any). ``database``: the engine's :class:`~taskengine_core.deliveries.Deliveries` to wake
    only its dispatchers; anything else (a path, from callers of plugin API 1) wakes them all,
    which costs a look each and is always safe."""
    with _lock:
        targets = [p for p in _running.values()
                   if not hasattr(database, "queued") or p.info.deliveries is database]
    for placement in targets:
        placement.wake(webhook)


def dispatchers_of(deliveries: object) -> list[Dispatcher]:
    """The dispatchers in this process working on the queue ``deliveries`` (the intake lets
    them write in its transactions; dispatchers in processes of their own cannot)."""
    with _lock:
        placements = [p for p in _running.values() if p.info.deliveries is deliveries]
    return [d for d in (p.local for p in placements) if d is not None]
