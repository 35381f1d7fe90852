"""Committing new deliveries: many worker threads, few transactions (group commit).

Every ``webhook.send`` runs on its own worker thread and must not return before its delivery is
committed. If each opened its own write transaction, sixteen threads would queue on SQLite's
write lock, whose busy handler sleeps in steps of milliseconds. Instead, the first thread to
arrive writes every delivery waiting at that moment in one transaction while the others wait on
a condition; then each returns (or raises its own error). Durability is unchanged: nobody
returns before the transaction holding its row is committed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

from taskengine_core.errors import ActionError
from taskengine_core.store import Store

from . import store as db
from .config import Destination
from .txn import open_store, transaction


@dataclass
class _Entry:
    webhook: str
    rows: list[dict]  # without max_attempts: that comes from the destination
    done: bool = False
    error: BaseException | None = None


class _Intake:
    def __init__(self, path: str) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._pending: list[_Entry] = []
        self._writing = False
        self._store: Store | None = None

    def submit(self, webhook: str, rows: list[dict]) -> None:
        entry = _Entry(webhook, rows)
        with self._cond:
            self._pending.append(entry)
            while not entry.done and self._writing:
                self._cond.wait()
            if entry.done:
                if entry.error is not None:
                    raise entry.error
                return
            self._writing = True
            batch, self._pending = self._pending, []
        try:
            self._write(batch)
        except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the error
            for e in batch:
                e.error = e.error or exc
        finally:
            with self._cond:
                for e in batch:
                    e.done = True
                self._writing = False
                self._cond.notify_all()
        if entry.error is not None:
            raise entry.error

    def _write(self, batch: list[_Entry]) -> None:
        if self._store is None:
            self._store = open_store(self.path)
        now = datetime.now(timezone.utc)
        with transaction(self._store) as conn:
            names = sorted({e.webhook for e in batch})
            found = {name: Destination.from_row(name, spec, enabled) for name, spec, enabled in
                     conn.execute(f"SELECT name, spec, enabled FROM webhooks WHERE name IN "
                                     f"({', '.join('?' * len(names))})", names)}
            rows = []
            for e in batch:
                dest = found.get(e.webhook)
                if dest is None:
                    e.error = ActionError(f"no webhook named {e.webhook!r}; define it under "
                                          "'webhooks:' and run 'taskengine apply'", retryable=False)
                elif not dest.enabled:
                    e.error = ActionError(f"webhook {e.webhook!r} is disabled; 'taskengine webhooks "
                                          f"enable {e.webhook}' turns it back on", retryable=False)
                else:
                    rows += [{**r, "max_attempts": dest.retries + 1} for r in e.rows]
            db.enqueue(conn, rows, now)


_intakes: OrderedDict[str, _Intake] = OrderedDict()  # a few databases; the oldest is let go
_lock = threading.Lock()
MAX_DATABASES = 8


def commit(path: str, webhook: str, rows: list[dict]) -> None:
    """Commit ``rows`` (deliveries to ``webhook``) to the database at ``path``; returns after
    the commit. Raises :class:`ActionError` when the webhook is unknown or disabled."""
    with _lock:
        intake = _intakes.get(path)
        if intake is None:
            intake = _intakes[path] = _Intake(path)
            while len(_intakes) > MAX_DATABASES:  # its connection closes once nobody uses it
                _intakes.popitem(last=False)
        _intakes.move_to_end(path)
    intake.submit(webhook, rows)
