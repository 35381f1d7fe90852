"""Checkpointing the WAL from a thread of its own while the engine runs.

SQLite normally checkpoints inside the ``COMMIT`` that pushes the WAL past 1,000 pages: that
commit then copies the WAL into the database file and syncs it, a few milliseconds during which
the committing thread (the ingress's event loop, say) and every writer queued on the store's
lock wait. While the engine runs, its connections turn that off
(``PRAGMA wal_autocheckpoint = 0``) and this thread checkpoints instead, without holding any
write lock: SQLite copies the frames while the others keep committing, and the copying runs
outside Python's GIL.
"""

from __future__ import annotations

import collections
import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("taskengine.store")

INTERVAL = 0.05  # seconds between passive checkpoints
# Under a steady stream of commits a passive checkpoint seldom finds the whole WAL copied at the
# moment a writer starts, which is when SQLite rewinds the WAL. Past this size, wait for that.
RESTART_FRAMES = 8192  # 32 MB of 4 KB pages
AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, restored when the checkpointer stops


_RUNNING: collections.Counter[str] = collections.Counter()  # files a checkpointer here looks after
_RUNNING_GUARD = threading.Lock()


def checkpointed_here(real_path: str) -> bool:
    """Whether a checkpointer in this process looks after the file at ``real_path`` (as given by
    ``os.path.realpath``); every connection to it then leaves checkpoints to that thread."""
    return _RUNNING[real_path] > 0


class Checkpointer:
    def __init__(self, path: str | Path, *, interval: float = INTERVAL) -> None:
        self.path, self.interval = Path(path), interval
        self._real_path = os.path.realpath(path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with _RUNNING_GUARD:
            _RUNNING[self._real_path] += 1
        self._thread = threading.Thread(target=self._run, name="taskengine-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after a last pass; connections go back to checkpointing in their commits."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None
        with _RUNNING_GUARD:
            _RUNNING[self._real_path] -= 1
            if _RUNNING[self._real_path] <= 0:
                del _RUNNING[self._real_path]

    def _run(self) -> None:
        try:
            # timeout=0: no busy handler. A RESTART waiting on a reader would hold every writer up
            # meanwhile; without one it reports "busy" at once and the next pass tries again.
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=0)
        except sqlite3.Error as exc:
            log.error("cannot open %s to checkpoint it: %s; commits are not checkpointed", self.path, exc)
            return
        try:
            while not self._stop.wait(self.interval):
                self._checkpoint(conn)
            self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> str | None:
        """One pass; returns the kind of checkpoint that ran last, None if it failed."""
        try:
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames <= RESTART_FRAMES:
                return "passive"
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            return "busy" if busy else "restart"
        except sqlite3.Error as exc:  # the next pass tries again; SQLite loses nothing meanwhile
            log.warning("checkpoint of %s failed: %s", self.path, exc)
            return None
