"""Several engines on one database: each is a node with a heartbeat, and work that must run once
in the whole cluster (an event source that polls a shared system) runs on whichever node holds
its lease. Nothing here elects a leader or talks to other nodes: the database's unique keys and
row updates are the only coordination."""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta
from typing import Callable

from taskengine_core.clock import Clock, to_iso
from taskengine_core.store import leases

log = logging.getLogger("taskengine.cluster")

LEASE_SECONDS = 30.0  # a dead node's cluster-wide sources move to another node within this
RENEW_FRACTION = 1 / 3  # renewed every third of a lease, so two missed renewals still hold it

EVERY_NODE = "every_node"  # e.g. a log file: each machine watches its own
ONE_NODE = "one_node"  # e.g. a VergeOS poller: once per cluster, or every event comes N times
SOURCE_SCOPES = (EVERY_NODE, ONE_NODE)


def node_id(owner: str) -> str:
    return owner


def host_name() -> str:
    return socket.gethostname()


class LeasedWork:
    """Keeps ``start()`` running on this node only while it holds the lease ``name``.

    A thread tries to take (or renew) the lease every third of ``lease`` seconds. On taking it,
    ``start()`` is called and returns a ``stop()`` callable; on losing it (another node took it
    after this one failed to renew in time) or at :meth:`close`, ``stop()`` is called. A write
    that fails (database unreachable) counts as not holding the lease."""

    def __init__(self, name: str, owner: str, open_store: Callable[[], object],
                 start: Callable[[], Callable[[], None]], *, clock: Clock | None = None,
                 lease: float = LEASE_SECONDS) -> None:
        self.name = name
        self.owner = owner
        self.lease = lease
        self.clock = clock or Clock()
        self._open_store = open_store
        self._start = start
        self._stop_work: Callable[[], None] | None = None
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._stop_work is not None

    def begin(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"taskengine-lease-{self.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def step(self, store) -> bool:
        """One try to take or renew the lease, starting or stopping the work to match."""
        now = self.clock.now()
        try:
            with store.write() as db:
                holding = leases.acquire(db.conn, self.name, self.owner, to_iso(now),
                                         to_iso(now + timedelta(seconds=self.lease)))
        except Exception as exc:  # noqa: BLE001 - unreachable database: not holding it
            log.warning("lease %s: cannot renew (%s); stopping its work until it can", self.name, exc)
            holding = False
        if holding and self._stop_work is None:
            log.info("lease %s taken by %s: starting its work here", self.name, self.owner)
            self._stop_work = self._start()
        elif not holding and self._stop_work is not None:
            log.warning("lease %s lost by %s: stopping its work here", self.name, self.owner)
            self._stop_now()
        return holding

    def _loop(self) -> None:
        store = self._open_store()
        try:
            while not self._closing.is_set():
                self.step(store)
                self._closing.wait(self.lease * RENEW_FRACTION)
            self._stop_now()
            try:
                with store.write() as db:
                    leases.release(db.conn, self.name, self.owner)  # the next node need not wait
            except Exception:  # noqa: BLE001 - it expires by itself
                pass
        finally:
            store.close()

    def _stop_now(self) -> None:
        stop, self._stop_work = self._stop_work, None
        if stop is not None:
            stop()


def default_owner() -> str:
    return f"{host_name()}:{os.getpid()}"


class NodeHeartbeat:
    """This engine's row in ``nodes``, refreshed every third of a lease and removed at a clean
    stop, so the dashboard lists the engines sharing the database and when each was last seen
    (a node killed outright stays listed, with its last heartbeat getting older)."""

    def __init__(self, node: str, open_store: Callable[[], object], *, clock: Clock | None = None,
                 lease: float = LEASE_SECONDS) -> None:
        self.node = node
        self.lease = lease
        self.clock = clock or Clock()
        self._open_store = open_store
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="taskengine-heartbeat", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        store = self._open_store()
        try:
            while not self._closing.is_set():
                try:
                    with store.write() as db:
                        leases.heartbeat(db.conn, self.node, host_name(), os.getpid(), to_iso(self.clock.now()))
                except Exception as exc:  # noqa: BLE001 - the loop's own checks report a lost database
                    log.debug("heartbeat of %s not written: %s", self.node, exc)
                self._closing.wait(self.lease * RENEW_FRACTION)
            try:
                with store.write() as db:
                    leases.forget_node(db.conn, self.node)
            except Exception:  # noqa: BLE001 - it just stays listed as last seen then
                pass
        finally:
            store.close()
