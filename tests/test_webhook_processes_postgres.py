"""``settings.webhook.processes`` on PostgreSQL: the dispatcher processes open the engine's
database from the URL the engine hands them through their standard input (never their command
line, where a password would show in ``ps``), and send what the engine's runs queue."""

from __future__ import annotations

import json

from taskengine_core.events import Event
from tests.test_webhook_processes import processes_rules
from tests.test_webhook_support import receiver, wait_until  # noqa: F401 (fixtures)


def _statuses(url: str) -> list[str]:
    from taskengine_core.store import open_store

    store = open_store(url, migrate=False, create=False)
    try:
        return [r[0] for r in store.conn.execute("SELECT status FROM webhook_deliveries").fetchall()]
    finally:
        store.close()


def test_dispatcher_processes_send_from_a_postgresql_database(postgres_url, write_rules, receiver):
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import open_store
    from taskengine_webhook.running import _running

    server = receiver()
    store = open_store(postgres_url)
    try:
        rules = write_rules(processes_rules(server.url, 2), "rules.yaml")
        apply_config(store, load_config([rules], get_plugin_manager().registry()))
    finally:
        store.close()
    engine = Engine(postgres_url, poll_interval=0.05)
    engine.start()
    try:
        children = _running[id(engine.info)].children
        assert len(children) == 2
        for child in children:
            with open(f"/proc/{child.pid}/cmdline", "rb") as f:
                assert b"postgresql://" not in f.read()
        engine.emit_many([Event("test.ping", {"n": i}) for i in range(30)])
        server.wait_for(30)
        wait_until(lambda: set(_statuses(postgres_url)) == {"delivered"}, timeout=20)
        assert len(_statuses(postgres_url)) == 30
        sent = sorted(json.loads(r.body)["event"]["data"]["n"] for r in server.requests)
        assert sent == list(range(30))  # each once: the two processes' claims never overlap
    finally:
        engine.stop(grace=5)
