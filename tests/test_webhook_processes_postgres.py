"""``settings.webhook.processes`` on PostgreSQL: the dispatcher processes open the engine's
database from the URL the engine hands them through their standard input (never their command
line, where a password would show in ``ps``), and send what the engine's runs queue."""

from __future__ import annotations

import json

from taskengine_core.events import Event
from tests.test_webhook_hostile_answers import HostileReceiver
from tests.test_webhook_processes import processes_rules
from tests.test_webhook_support import receiver, wait_until  # noqa: F401 (fixtures)


def _statuses(url: str) -> list[str]:
    from taskengine_core.store import open_store

    store = open_store(url, migrate=False, create=False)
    try:
        return [r[0] for r in store.conn.execute("SELECT status FROM webhook_deliveries").fetchall()]
    finally:
        store.close()


def _applied_on(url: str, write_rules, text: str) -> None:
    from taskengine_core.apply import apply_config
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import open_store

    store = open_store(url)
    try:
        apply_config(store, load_config([write_rules(text, "rules.yaml")], get_plugin_manager().registry()))
    finally:
        store.close()


def test_dispatcher_processes_send_from_a_postgresql_database(postgres_url, write_rules, receiver):
    from taskengine_core.engine import Engine
    from taskengine_webhook.running import _running

    server = receiver()
    _applied_on(postgres_url, write_rules, processes_rules(server.url, 2))
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


def test_a_nul_in_a_receivers_answer_is_recorded_on_postgresql(postgres_url, write_rules):
    """PostgreSQL's text cannot hold NUL: an answer holding one (in its body or reason phrase)
    was kept as the attempt's excerpt and error, so every write of the dispatcher's results
    failed, again at each pass: that delivery stayed 'sending' and no other attempt was
    recorded any more."""
    from taskengine_core.engine import Engine
    from tests.backends import rows

    server = HostileReceiver((b"500 bad\x00reason", b"", b"bad\x00body"))
    _applied_on(postgres_url, write_rules, processes_rules(server.url, 1))
    engine = Engine(postgres_url, poll_interval=0.05)
    engine.start()
    try:
        engine.emit("test.ping", {"n": 1})
        wait_until(lambda: _statuses(postgres_url) == ["delivered"], timeout=20,
                   what="the delivery to be retried and delivered")
        engine.emit("test.ping", {"n": 2})
        wait_until(lambda: _statuses(postgres_url) == ["delivered", "delivered"], timeout=20,
                   what="the next delivery recorded too")
    finally:
        engine.stop(grace=5)
        server.close()
    tried = rows(postgres_url, "SELECT error, response_excerpt FROM webhook_attempts ORDER BY started_at")
    assert [(a["error"], a["response_excerpt"]) for a in tried] == [
        ("HTTP 500 bad\ufffdreason", "bad\ufffdbody"), (None, "ok"), (None, "ok")]


def _allow_connections(url: str, allowed: bool) -> None:
    """New connections to the database at ``url`` refused (or let in again); those already
    open go on working, as when a server restarts or fails over while an engine holds its own."""
    import psycopg
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if allowed else "false"}')


def test_a_dispatcher_process_started_while_the_database_is_unreachable_sends_once_it_is_back(
        postgres_url, write_rules, receiver, capfd):
    """A process that cannot reach the database when it starts says so and exits; the engine
    starts it again until it can, and deliveries go out from it once the database is back."""
    import os
    import signal

    from taskengine_core.engine import Engine
    from taskengine_webhook.running import _running

    server = receiver()
    _applied_on(postgres_url, write_rules, processes_rules(server.url, 1))
    engine = Engine(postgres_url, poll_interval=0.05)
    engine.start()
    try:
        [child] = _running[id(engine.info)].children
        first = child.pid
        engine.emit("test.ping", {"n": 1})
        server.wait_for(1)
        _allow_connections(postgres_url, False)
        try:
            os.kill(first, signal.SIGKILL)  # started again while the database refuses it
            wait_until(lambda: child.pid not in (None, first), timeout=15, what="a new dispatcher process")
            wait_until(lambda: "webhook-dispatcher-1 could not start" in capfd.readouterr().err,
                       timeout=15, what="the new process to find the database unreachable")
        finally:
            _allow_connections(postgres_url, True)
        engine.emit("test.ping", {"n": 2})
        server.wait_for(2, timeout=30)
        wait_until(lambda: _statuses(postgres_url) == ["delivered", "delivered"], timeout=20,
                   what="both delivered")
        assert child.starts >= 3  # the one that could not reach the database, then another
    finally:
        engine.stop(grace=5)
