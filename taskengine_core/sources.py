"""The engine's event sources (triggers): each in a thread of its own, started when its
settings section is configured. A source registered ``runs_on="one_node"`` runs on one engine
of those sharing the database: the one holding its lease (see :mod:`taskengine_core.cluster`)."""

from __future__ import annotations

import logging
import threading

from taskengine_core.cluster import ONE_NODE, LeasedWork
from taskengine_core.context import SourceContext
from taskengine_core.events import Event

log = logging.getLogger("taskengine.engine")


class EventSources:
    def __init__(self, engine, *, owner: str, lease: float) -> None:
        self.engine = engine
        self.owner = owner
        self.lease = lease
        self._running: list[tuple[threading.Thread, SourceContext]] = []
        self._leased: list[LeasedWork] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        engine = self.engine
        for name, item in engine.registry.triggers.items():
            settings = engine.runtime.settings.get(name)
            if settings is None:
                continue  # a source runs only when its settings section is configured
            if item.runs_on == ONE_NODE:
                work = LeasedWork(f"source:{name}", self.owner, engine.open_thread_store,
                                  lambda _n=name, _i=item, _s=settings: self._start_one(_n, _i, _s),
                                  clock=engine.clock, lease=self.lease)
                work.begin()
                self._leased.append(work)
            else:
                self._start_one(name, item, settings)

    def stop(self, join: bool = True) -> None:
        for work in self._leased:
            work.close()
        with self._lock:
            running = list(self._running)
        for _, ctx in running:
            ctx.stopping.set()
        if join:
            for thread, _ in running:
                thread.join(timeout=5)

    def _start_one(self, name: str, item, settings: dict):
        """Start source ``name`` in a thread; returns what stops it (and waits for it)."""
        engine = self.engine
        ctx = SourceContext(name=name, settings=engine.secrets.resolve(settings),
                            emit=lambda type, data=None, id=None: engine.emit(  # noqa: A002
                                type, data, source=name, id=id),
                            state=engine.source_state(name),
                            emit_many=lambda events: engine.emit_many(
                                [Event(e["type"], e.get("data") or {}, source=name, source_id=e.get("id"))
                                 for e in events]))
        thread = threading.Thread(target=self._run, args=(item, ctx), name=f"taskengine-source-{name}",
                                  daemon=True)
        thread.start()
        with self._lock:
            self._running.append((thread, ctx))

        def stop() -> None:
            ctx.stopping.set()
            thread.join(timeout=5)
            with self._lock:
                if (thread, ctx) in self._running:
                    self._running.remove((thread, ctx))

        return stop

    @staticmethod
    def _run(item, ctx: SourceContext) -> None:
        try:
            item.func(ctx)
        except Exception:  # noqa: BLE001 - a broken source must not stop the engine
            log.exception("event source %s (%s) failed", ctx.name, item.plugin)
