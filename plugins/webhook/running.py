"""The dispatchers running in this process, one per started engine, so that an action that
queues a delivery can wake the dispatcher at once instead of waiting for its next poll."""

from __future__ import annotations

import functools
import os
import threading

from taskengine_core.context import EngineInfo

from .dispatcher import Dispatcher

_running: dict[int, Dispatcher] = {}
_lock = threading.Lock()


@functools.lru_cache(maxsize=64)
def _real(path: str) -> str:
    return os.path.realpath(path)


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


def wake_for(db_path: str, webhook: str | None = None) -> None:
    """Tell this process's dispatchers on ``db_path`` that deliveries were queued."""
    real = _real(db_path)
    with _lock:
        targets = [d for d in _running.values() if _real(d.info.db_path) == real]
    for dispatcher in targets:
        dispatcher.wake(webhook)
