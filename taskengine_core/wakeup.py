"""Waking a running engine as soon as another process commits work for it.

The engine binds a datagram socket in Linux's abstract namespace, named after the database
file (no file to clean up, nothing left behind by a killed engine). ``taskengine emit``, a
config change from the CLI, or an ``Engine`` in another process that is not running its loop,
send one byte to it after their commit: the engine evaluates at once instead of at its next
poll. The datagram carries nothing: it only says "look now", so a stray or hostile one costs a
read of the inbox, and wake-ups are coalesced (at most one per millisecond). The commit is what
counts: without a listener (another OS, every slot taken) the engine still finds the work at
its next poll.

On PostgreSQL (several engines, perhaps on several machines) the same is done with the
server's ``NOTIFY``/``LISTEN`` (:mod:`taskengine_core.store.postgres.wake`): every engine on the
database listens, whatever machine it runs on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import sys
import threading
import time
from typing import Callable

log = logging.getLogger("taskengine.wakeup")
SLOTS = 4  # engines on one database that can listen at once (more still poll)
COALESCE = 0.001  # seconds: a flood of datagrams wakes the engine at most this often
SUPPORTED = sys.platform.startswith("linux")


def _address(db_path: str, slot: int) -> str:
    digest = hashlib.sha256(os.path.realpath(db_path).encode("utf-8", "surrogateescape")).hexdigest()
    return f"\0taskengine-wake-{digest[:32]}-{slot}"


def _postgres_url(target) -> str | None:
    text = str(getattr(target, "url", None) or target)
    return text if text.startswith(("postgresql://", "postgres://")) else None


def poke(target) -> int:
    """Tell every engine listening on the database to look now; returns how many were told
    (on PostgreSQL: 1 when the notification was sent). ``target``: the SQLite file's path, a
    ``postgresql://`` URL, or a store (its own connection sends the notification). Never
    raises: a wake-up is an optimisation, the committed row is the message."""
    conn = getattr(target, "conn", None)
    if conn is not None and getattr(conn, "dialect", None) == "postgresql":
        from taskengine_core.store.postgres.wake import notify

        try:
            notify(conn)
            return 1
        except Exception:  # noqa: BLE001 - the committed row is the message
            return 0
    url = _postgres_url(target)
    if url is not None:
        from taskengine_core.store.postgres.wake import poke_url

        return poke_url(url)
    db_path = getattr(target, "path", target)
    if not SUPPORTED:
        return 0
    told = 0
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            for slot in range(SLOTS):
                try:
                    sock.sendto(b"w", _address(str(db_path), slot))
                    told += 1
                except OSError:  # nobody there, or its queue is full (it is awake anyway)
                    pass
    except OSError:
        pass
    return told


def listener(target, on_wake: Callable[[], None]):
    """What wakes an engine on this database: a ``NotifyListener`` for a ``postgresql://`` URL,
    else a :class:`WakeListener` on the SQLite file. Both have ``start()`` and ``stop()``."""
    url = _postgres_url(target)
    if url is not None:
        from taskengine_core.store.postgres.wake import NotifyListener

        return NotifyListener(url, on_wake)
    return WakeListener(target, on_wake)


class WakeListener:
    """A thread that calls ``on_wake`` when another process pokes this database."""

    def __init__(self, db_path: str | os.PathLike, on_wake: Callable[[], None]) -> None:
        self.db_path, self.on_wake = str(db_path), on_wake
        self.address: str | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> bool:
        """Bind the first free slot and listen; False when none could be bound (polling only)."""
        if not SUPPORTED:
            return False
        for slot in range(SLOTS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.bind(_address(self.db_path, slot))
            except OSError:
                sock.close()
                continue
            self._sock, self.address = sock, _address(self.db_path, slot)
            self._thread = threading.Thread(target=self._listen, name="taskengine-wakeup", daemon=True)
            self._thread.start()
            return True
        log.info("wake-up: %d engines already listen on %s; this one polls", SLOTS, self.db_path)
        return False

    def stop(self) -> None:
        if self._sock is None:
            return
        self._stopping.set()
        try:  # a datagram to ourselves ends the blocking receive
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"s", self.address)
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sock.close()
        self._sock = None

    def _listen(self) -> None:
        sock = self._sock
        while not self._stopping.is_set():
            try:
                sock.recv(16)
            except OSError:
                return
            if self._stopping.is_set():
                return
            try:
                self.on_wake()
            except Exception:  # noqa: BLE001 - waking is best effort
                log.exception("wake-up handler failed")
            time.sleep(COALESCE)
            _drain(sock)


def _drain(sock: socket.socket) -> None:
    """Drop the datagrams that arrived meanwhile: one wake-up answers them all."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(16)
    except OSError:
        pass
    finally:
        sock.setblocking(True)
