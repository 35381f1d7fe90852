"""``Engine.queue_run`` on PostgreSQL while another process's apply is under way: the run's
transaction confirms the task was checked in the stored configuration, so an apply that has
written its change but not committed it yet is waited for (SQLite's write transaction does
that by itself), and the task is looked up again in what it committed."""

from __future__ import annotations

import threading
import time

from taskengine_core.errors import NotFoundError

BOTH = "tasks:\n  t: {action: command.run, with: {argv: [echo, hi]}}\n  u: {action: command.run, with: {argv: [echo]}}\n"
ONLY_U = "tasks:\n  u: {action: command.run, with: {argv: [echo]}}\n"


def _apply(url, write_rules, text, name, *, written=None, release=None):
    """What ``apply_config`` does, with its commit held back until ``release`` is set."""
    from taskengine_core.apply import plan, write_plan
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import config as stored, open_store

    config = load_config([write_rules(text, name)], get_plugin_manager().registry())
    store = open_store(url)
    try:
        with store.write() as db:
            stored.lock_for_change(db.conn)
            changes, writes = plan(db.conn, config)
            write_plan(db.conn, changes, writes, "2026-01-01T00:00:00Z", actor="test", source="apply")
            if written is not None:
                written.set()
                assert release.wait(60)
    finally:
        store.close()


def _one(url, sql):
    from taskengine_core.store import open_store

    store = open_store(url, migrate=False, create=False)
    try:
        return store.conn.execute(sql).fetchone()[0]
    finally:
        store.close()


def test_an_apply_not_yet_committed_is_waited_for_and_its_change_seen(postgres_url, write_rules):
    from taskengine_core.engine import Engine

    _apply(postgres_url, write_rules, BOTH, "both.yaml")
    engine = Engine(postgres_url, wake_listener=False)  # holds the configuration with ``t``
    written, release = threading.Event(), threading.Event()
    applying = threading.Thread(target=lambda: _apply(postgres_url, write_rules, ONLY_U, "only_u.yaml",
                                                      written=written, release=release))
    applying.start()
    outcome: list = []

    def queue():
        try:
            outcome.append(engine.queue_run("t", actor="cli"))
        except Exception as exc:  # noqa: BLE001 - looked at below
            outcome.append(exc)

    try:
        assert written.wait(30)  # ``t`` is removed, not yet committed
        queuing = threading.Thread(target=queue)
        queuing.start()
        deadline = time.monotonic() + 30
        # until queue_run has returned, or waits for the apply's lock
        while queuing.is_alive() and time.monotonic() < deadline:
            if _one(postgres_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
                break
            time.sleep(0.01)
    finally:
        release.set()
        applying.join(60)
    queuing.join(60)
    try:
        assert not queuing.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], NotFoundError), outcome
        assert "no task named 't'" in str(outcome[0])
        assert _one(postgres_url, "SELECT count(*) FROM runs") == 0
        assert _one(postgres_url, "SELECT count(*) FROM decisions WHERE decision = 'manual'") == 0
        assert "t" not in engine.runtime.tasks
    finally:
        engine.store.close()
