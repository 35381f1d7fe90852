"""``settings.webhook.processes``: what the dispatcher in the engine's process guarantees holds in
its processes too: secrets stay out of everything the child writes, applied settings reach it
without a restart, moves under load lose nothing and repeat nothing, and the CLI's redeliver
and enable work against a running engine whose dispatcher is a child.

Real child processes, real HTTP receivers on 127.0.0.1, the engine's real SQLite file; the
children's log goes to file descriptor 2, which ``capfd`` reads."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import sys
import threading
from pathlib import Path

import pytest

from taskengine_core.events import Event
from tests.test_webhook_processes import body, failure_told_rules, placement_of, processes_rules
from tests.test_webhook_support import (  # noqa: F401 (fixtures)
    Reply, attempts, deliveries, engine, free_port, new_secret, query, receiver, verify, wait_until)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")


def _files(db_path: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(str(db_path) + suffix)
        if path.exists():
            out += path.read_bytes()
    return out


def test_secrets_resolved_in_the_child_never_reach_its_log_the_attempts_or_last_error(
        applied, engine, receiver, db_path, monkeypatch, capfd, caplog):
    caplog.set_level(logging.DEBUG)  # the child logs at the engine's level: everything
    token, password, url_key = (secrets.token_urlsafe(18) for _ in range(3))
    signing = new_secret()
    for name, value in {"P_TOKEN": token, "P_PASS": password, "P_URLKEY": url_key,
                        "P_SIGNING": signing}.items():
        monkeypatch.setenv(name, value)
    basic = base64.b64encode(f"ops:{password}".encode()).decode()
    raw = [token, password, url_key, signing, signing.removeprefix("whsec_"), basic]
    echo = receiver([Reply(401, b"denied", echo_headers=True)])
    failing = receiver([Reply(500, b"broken", echo_headers=True)])
    closed = free_port()
    applied(f"""
settings:
  webhook: {{backoff: 0.05, max_backoff: 1, processes: 1}}
webhooks:
  bearer:
    url: "{echo.url}?key=${{env:P_URLKEY}}"
    auth: {{type: bearer, token: "${{env:P_TOKEN}}"}}
    secret: "${{env:P_SIGNING}}"
    retries: 1
  basic:
    url: {failing.url}
    auth: {{type: basic, username: ops, password: "${{env:P_PASS}}"}}
    retries: 1
  down:
    url: "http://127.0.0.1:{closed}/hook?key=${{env:P_URLKEY}}"
    auth: {{type: bearer, token: "${{env:P_TOKEN}}"}}
    retries: 1
tasks:
  t-bearer: {{action: webhook.send, with: {{webhook: bearer}}}}
  t-basic: {{action: webhook.send, with: {{webhook: basic}}}}
  t-down: {{action: webhook.send, with: {{webhook: down}}}}
events:
  ping: {{on: test.ping, tasks: [t-bearer, t-basic, t-down]}}
""")
    e = engine()
    [child] = placement_of(e).children
    pid = child.pid
    e.emit("test.ping", {})
    wait_until(lambda: len(deliveries(db_path)) == 3
               and all(d["status"] == "exhausted" for d in deliveries(db_path)), 20,
               "every delivery exhausted")
    # the receivers really got the secrets and echoed them back, so the check means something
    assert echo.requests[0].headers["Authorization"] == f"Bearer {token}"
    assert failing.requests[0].headers["Authorization"] == f"Basic {basic}"
    rows = deliveries(db_path)
    tried = [a for d in rows for a in attempts(db_path, d["id"])]
    assert len(tried) == 6 and all(a["error"] for a in tried)
    assert any("you sent" in (a["response_excerpt"] or "") for a in tried)
    e.stop(grace=5)
    log = capfd.readouterr().err
    assert f"[webhook-dispatcher-1 pid {pid}]" in log
    assert "attempt 1 failed" in log  # the child did log the failures
    haystacks = {"child's log": log, "database": _files(db_path).decode("latin-1"),
                 "attempt rows": repr(tried), "last_error": repr([d["last_error"] for d in rows])}
    for where, text in haystacks.items():
        for value in raw:
            assert value not in text, f"a secret value leaked into the {where}"


def test_applied_settings_and_secrets_reach_the_child_without_a_restart(
        applied, engine, receiver, db_path, monkeypatch):
    first, second = new_secret(), new_secret()
    monkeypatch.setenv("P_FIRST", first)
    monkeypatch.setenv("P_SECOND", second)
    server = receiver()
    applied(processes_rules(server.url, 1, retries="    secret: ${env:P_FIRST}\n"))
    e = engine()
    [child] = placement_of(e).children
    pid = child.pid
    e.emit("test.ping", {"n": 1})
    [req] = server.wait_for(1)
    assert verify(first, req)["event"]["data"] == {"n": 1}
    # the destination's signing secret changes: the child signs with the new one
    applied(processes_rules(server.url, 1, retries="    secret: ${env:P_SECOND}\n"))
    e.emit("test.ping", {"n": 2})
    server.wait_for(2)
    assert verify(second, server.requests[1])["event"]["data"] == {"n": 2}
    # a deny list now covers the receiver: the child refuses to connect
    applied(processes_rules(server.url, 1, retries="    secret: ${env:P_SECOND}\n").replace(
        "processes: 1}", "processes: 1, deny: [127.0.0.0/8]}"))
    e.emit("test.ping", {"n": 3})
    wait_until(lambda: len(deliveries(db_path)) == 3 and deliveries(db_path)[2]["status"] == "failed",
               timeout=10, what="the third delivery refused")
    assert "denied by settings.webhook.deny" in deliveries(db_path)[2]["last_error"]
    assert len(server.requests) == 2
    assert child.pid == pid and child.starts == 1  # the same process all along


def test_moving_between_processes_and_the_engine_under_load_loses_and_repeats_nothing(
        applied, engine, receiver, db_path):
    server = receiver([Reply(200, delay=0.02)])
    applied(processes_rules(server.url, 2))
    e = engine()
    placement = placement_of(e)
    stop = threading.Event()
    emitted: list[int] = []

    def flow():
        n = 0
        while not stop.is_set():
            e.emit_many([Event("test.ping", {"n": n + i}) for i in range(5)])
            emitted.extend(range(n, n + 5))
            n += 5
            stop.wait(0.02)

    feeder = threading.Thread(target=flow)
    feeder.start()
    try:
        wait_until(lambda: len(server.requests) >= 20, timeout=20, what="deliveries flowing")
        applied(processes_rules(server.url, 0))
        wait_until(lambda: placement.local is not None and placement.children == [], timeout=30,
                   what="the dispatcher back in the engine's process")
        count = len(server.requests)
        wait_until(lambda: len(server.requests) >= count + 20, timeout=20, what="deliveries from the engine")
        applied(processes_rules(server.url, 2))
        wait_until(lambda: len(placement.children) == 2 and placement.local is None, timeout=30,
                   what="two dispatcher processes again")
        count = len(server.requests)
        wait_until(lambda: len(server.requests) >= count + 20, timeout=20, what="deliveries from the processes")
    finally:
        stop.set()
        feeder.join()
    wait_until(lambda: len(deliveries(db_path)) == len(emitted)
               and {r["status"] for r in deliveries(db_path)} == {"delivered"}, timeout=60,
               what="every delivery delivered")
    rows = deliveries(db_path)
    sent = sorted(body(r)["event"]["data"]["n"] for r in server.requests)
    assert sorted(set(sent)) == sorted(emitted)  # none lost
    tried = query(db_path, "SELECT delivery_id, number FROM webhook_attempts")
    assert len(tried) == len({(a["delivery_id"], a["number"]) for a in tried})  # each recorded once
    by_delivery: dict[str, list[dict]] = {}
    for a in query(db_path, "SELECT delivery_id, number, status_code, error FROM webhook_attempts "
                            "ORDER BY delivery_id, number"):
        by_delivery.setdefault(a["delivery_id"], []).append(a)
    for r in rows:  # each attempt counted once; a second one only after a real failure
        made = by_delivery[r["id"]]
        assert r["attempts"] == len(made) and made[-1]["status_code"] == 200, made
        assert all(a["status_code"] is None and a["error"] for a in made[:-1]), made
    # a move is a clean stop (requests in flight finish within the grace): nothing sent twice,
    # but what a refused or reset connection made the dispatcher try again
    tried_again = {body_n for r in rows if r["attempts"] > 1
                   for body_n in [_event_n(db_path, r["id"])]}
    twice = {n for n in set(sent) if sent.count(n) > 1}
    assert twice <= tried_again, sorted(twice - tried_again)


def _event_n(db_path, delivery_id: str) -> int:
    [row] = query(db_path, "SELECT body FROM webhook_deliveries WHERE id = ?", (delivery_id,))
    return json.loads(row["body"])["event"]["data"]["n"]


def test_cli_enable_and_redeliver_reach_a_running_engine_whose_dispatcher_is_a_child(
        applied, engine, receiver, db_path, run_cli):
    server = receiver([Reply(410, delay=0.3)] + [Reply(200)] * 20)
    applied(processes_rules(server.url, 1).replace("processes: 1", "processes: 1, concurrency: 1"))
    e = engine()
    [child] = placement_of(e).children
    e.emit_many([Event("test.ping", {"n": i}) for i in range(8)])
    [row] = wait_until(lambda: [r for r in deliveries(db_path) if r["status"] == "failed"], 10,
                       "the 410 to disable the webhook")

    def settled():  # the rest wait, pending, while the webhook is disabled
        rows = deliveries(db_path)
        return len(rows) == 8 and "pending" in {r["status"] for r in rows} and \
            {r["status"] for r in rows} <= {"failed", "pending", "delivered"}

    wait_until(settled, what="deliveries waiting while the webhook is disabled")
    assert run_cli("--db", db_path, "webhooks", "enable", "hook").exit_code == 0
    # the child finds them (an enable from another process: at its next poll)
    wait_until(lambda: sorted(r["status"] for r in deliveries(db_path)) == ["delivered"] * 7 + ["failed"],
               timeout=10, what="the waiting deliveries to go out after the enable")
    result = run_cli("--db", db_path, "webhooks", "redeliver", row["id"])
    assert result.exit_code == 0, result.stderr
    wait_until(lambda: {r["status"] for r in deliveries(db_path)} == {"delivered"}, timeout=10,
               what="the redelivered delivery")
    assert [a["number"] for a in attempts(db_path, row["id"])] == [1, 2]
    assert sorted(body(r)["event"]["data"]["n"] for r in server.requests[1:]) == list(range(8))
    assert child.pid is not None and child.starts == 1


def test_an_event_the_child_emits_wakes_the_engine_at_once(applied, receiver, db_path):
    """The engine polls every 60 s here: only the child's wake-up after its commit can make it
    run the rule on webhook.failed within the wait."""
    from taskengine_core.engine import Engine

    gone, audit = receiver([Reply(410)]), receiver()
    applied(failure_told_rules(gone.url, audit.url))
    e = Engine(db_path, poll_interval=60)
    e.start()
    try:
        e.emit("test.ping", {"n": 1})
        [told] = audit.wait_for(1, timeout=20)
        assert body(told)["event"]["type"] == "webhook.failed"
        # the child emitted it once, under its own id: a second emit of that id is a duplicate
        [stored] = query(db_path, "SELECT source, source_id FROM events WHERE type = 'webhook.failed'")
        assert stored["source"] == "webhook" and stored["source_id"].endswith(":failed:1")
    finally:
        e.stop(grace=2)


EMITTER = '''
import json, os


class Emitter:
    """On each wake, emits what the hint (JSON) says and notes the outcome."""

    def __init__(self, info):
        self.info = info
        self.note({"started": True})

    def note(self, data):
        with open(os.environ["TE_EMIT_OUT"], "a") as f:
            f.write(json.dumps(data) + "\\n")

    def wake(self, hint):
        if hint is None:
            return
        call = json.loads(hint)
        try:
            self.note({"id": self.info.emit(call["type"], call["data"], source=call["source"],
                                            id=call["id"])})
        except Exception as exc:
            self.note({"error": type(exc).__name__, "message": str(exc)})

    def stop(self):
        pass


def serve(info):
    return Emitter(info)
'''

CALLS = [
    {"type": "test.child", "data": {"n": 1}, "source": "ext", "id": "same"},
    {"type": "test.child", "data": {"n": 2}, "source": "ext", "id": "same"},  # a duplicate
    {"type": "not a type!", "data": {}, "source": "ext", "id": None},
    {"type": "test.child", "data": {"x": "a\ud800b"}, "source": "ext", "id": None},
    {"type": "test.child", "data": {}, "source": "taskengine", "id": None},
    {"type": "test.child", "data": {}, "source": "ext", "id": "nul\x00here"},
]


def test_emit_in_the_child_behaves_as_the_engines(db_target, tmp_path, monkeypatch):
    """Checks, duplicate ids, PostgreSQL's refusal of a NUL: each call gives the child the
    outcome it gives the engine (which the same calls are made on, on another source)."""
    import json

    from taskengine_core.engine import Engine
    from taskengine_core.plugin_processes import PluginProcess
    from taskengine_core.store import open_store
    from tests.test_plugin_processes import child_module

    out = child_module(tmp_path, monkeypatch, "te_child_emitter", EMITTER, "TE_EMIT_OUT")
    open_store(db_target).close()
    e = Engine(db_target)

    def outcome(call):
        try:
            return {"id": e.emit(call["type"], call["data"], source=call["source"],
                                 id=call["id"] and "e-" + call["id"])}
        except Exception as exc:  # noqa: BLE001 - compared below
            return {"error": type(exc).__name__, "message": str(exc)}

    expected = [outcome(c) for c in CALLS]
    child = PluginProcess("te_child_emitter:serve", name="emitter", database=str(db_target))
    child.start()
    try:
        notes = lambda: [json.loads(line) for line in out.read_text().splitlines()]  # noqa: E731
        wait_until(notes, what="the child to start")
        for call in CALLS:  # one at a time: wake-ups are coalesced and their order not kept
            count = len(notes())
            child.wake(json.dumps(call))
            wait_until(lambda: len(notes()) > count, what=f"the child to emit {call}")
        got = notes()[1:]
    finally:
        child.stop()
        e.store.close()
    for call, engine_says, child_says in zip(CALLS, expected, got):
        if "error" in engine_says:
            assert child_says == engine_says, call
        else:
            assert "id" in child_says, (call, child_says)
    from tests.backends import rows

    stored = rows(db_target, "SELECT source_id, duplicate_of FROM events ORDER BY seq")
    for key in ("e-same", "same"):  # the engine's, then the child's
        first, second = [r for r in stored if r["source_id"] == key]
        assert first["duplicate_of"] is None and second["duplicate_of"] is not None
    assert len(stored) == 2 * len([r for r in expected if "id" in r])
