"""Where an engine's delivery dispatcher runs: in the engine's process (``settings.webhook.
processes: 0``, the default) or in that many processes of its own.

In the engine's process the dispatcher shares one interpreter, so one core at a time (the GIL),
with everything else the engine does, and it rides on the engine's commits (no commits of its
own while runs queue deliveries). In processes of their own, dispatchers use other cores: on a
machine with cores to spare, deliveries go out faster (``benchmarks/bench_webhook_process.py``
measures both). Each is :func:`serve` in a child the engine supervises
(:mod:`taskengine_core.plugin_processes`); they claim deliveries under leases exactly as the
dispatchers of several engines on one database do, so none is sent twice at once, and a child
that dies has its deliveries recovered by the next one started.

The setting is read every :data:`CHECK_EVERY` seconds: ``taskengine apply`` moves the
dispatchers while the engine runs. Moving stops the old ones first (they give back what they
claimed and had not sent), then starts the new ones.
"""

from __future__ import annotations

import logging
import threading

from taskengine_core.context import EngineInfo

from . import store as db
from .dispatcher import Dispatcher

log = logging.getLogger("taskengine.webhook")
CHECK_EVERY = 1.0  # seconds between two looks at settings.webhook.processes
ENTRY = "taskengine_webhook.placement:serve"


def serve(info: EngineInfo) -> Dispatcher:
    """A child process's dispatcher (the entry :data:`ENTRY` names); it polls every second
    besides the engine's wake-ups."""
    dispatcher = Dispatcher(info)
    dispatcher.start()
    return dispatcher


class Placement:
    """This engine's dispatcher, or its dispatcher processes, kept as the setting says."""

    def __init__(self, info: EngineInfo) -> None:
        self.info = info
        self.local: Dispatcher | None = None  # the dispatcher in this process, if it runs here
        self.children: list = []  # PluginProcess: the dispatchers in processes of their own
        self.processes: int | None = None  # the count in effect (-1: one could not be started)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe = None

    def start(self) -> None:
        self._place(self._wanted(default=0))
        if self.info.deliveries is not None:
            self._unsubscribe = self.info.deliveries.subscribe(self._wake_children)
        self._thread = threading.Thread(target=self._watch, name="taskengine-webhooks-placement",
                                        daemon=True)
        self._thread.start()

    def wake(self, webhook: str | None = None) -> None:
        with self._lock:
            local = self.local
        if local is not None:
            local.wake(webhook)
        else:
            self._wake_children(webhook)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._place(None)

    # -- the placement's thread --------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(CHECK_EVERY):
            wanted = self._wanted(default=self.processes)
            if wanted != self.processes and not self._stop.is_set():
                self._place(wanted)

    def _wanted(self, default: int | None) -> int | None:
        try:
            with self.info.deliveries.read() as conn:
                wanted = db.settings(conn).processes
        except Exception as exc:  # noqa: BLE001 - the dispatchers say more; keep what runs
            log.debug("settings.webhook.processes could not be read: %s", exc)
            return default
        if wanted and self.info.start_process is None:
            log.warning("settings.webhook.processes is %d, but this engine cannot start "
                        "processes: the dispatcher runs in the engine's process", wanted)
            return 0
        return wanted

    def _place(self, wanted: int | None) -> None:
        """Run ``wanted`` dispatcher processes (0: the dispatcher in this process; None:
        none at all)."""
        before = self.processes
        if wanted != 0 and self.local is not None:
            with self._lock:
                local, self.local = self.local, None
            local.stop()
        keep = wanted or 0
        with self._lock:
            leaving, self.children = self.children[keep:], self.children[:keep]
        for child in leaving:  # all asked at once: each may take the dispatcher's grace to stop
            child.ask_to_stop()
        for child in leaving:
            child.stop()
        while len(self.children) < keep:
            try:
                child = self.info.start_process(ENTRY, name=f"webhook-dispatcher-{len(self.children) + 1}")
            except Exception as exc:  # noqa: BLE001 - no more threads, say: tried again next check
                log.error("webhook dispatcher process %d could not be started: %s; trying again in %gs",
                          len(self.children) + 1, exc, CHECK_EVERY)
                self.processes = -1  # not what is wanted: the next check places them again
                return
            with self._lock:
                self.children.append(child)
        if wanted == 0 and self.local is None:
            local = Dispatcher(self.info)
            local.start()
            with self._lock:
                self.local = local
        self.processes = wanted
        if wanted is not None and (before is not None or wanted):
            log.info("webhook dispatchers: %s", "in the engine's process" if wanted == 0 else
                     f"{wanted} process(es) of their own (pids {', '.join(str(c.pid) for c in self.children)})")

    def _wake_children(self, webhook: str | None) -> None:
        with self._lock:
            children = list(self.children)
        for child in children:
            child.wake(webhook)
