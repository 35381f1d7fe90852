"""Engines on PostgreSQL: one engine end to end, and three engines sharing one database: every
event's run executes once, a task limited to one run never runs twice at once, each schedule
slot fires once, and a node that stops renewing its leases has its runs taken over by another."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import FakeClock

RULES = """
tasks:
  hello:
    action: command.run
    with: {argv: ["echo", "hi {{ event.data.n }}"]}
  one-at-a-time:
    action: command.run
    concurrency: queue
    with: {argv: ["sleep", "0.05"]}
events:
  on-go:
    on: go
    tasks: [hello]
  on-serial:
    on: serial
    tasks: [one-at-a-time]
"""


@pytest.fixture
def pg_applied(write_rules, postgres_url):
    from taskengine_core.apply import apply_config
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import open_store

    def apply(text: str = RULES):
        manager = get_plugin_manager()
        store = open_store(postgres_url)
        try:
            apply_config(store, load_config([write_rules(text, "rules.yaml")], manager.registry()))
        finally:
            store.close()
        return postgres_url

    return apply


@pytest.fixture
def engines():
    from taskengine_core.engine import Engine

    made = []

    def make(url, **kwargs):
        engine = Engine(url, wake_listener=False, **kwargs)
        engine.executor.start()
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.executor.stop(0)
        engine.store.close()


def _rows(engine, sql, params=()):
    return engine.store.conn.execute(sql, params).fetchall()


def _drive(nodes, until, timeout=60.0):
    """Step every node on a thread of its own until ``until()`` holds."""
    done = threading.Event()
    errors = []

    def loop(engine):
        try:
            while not done.is_set():
                if not engine.step():
                    time.sleep(0.01)
        except Exception as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
            done.set()

    threads = [threading.Thread(target=loop, args=(engine,)) for engine in nodes]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    try:
        while not until() and not errors and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        done.set()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    assert until(), "the nodes did not finish in time"


def test_one_engine_end_to_end(pg_applied, engines):
    url = pg_applied()
    engine = engines(url)
    engine.emit("go", {"n": 7})
    engine.run_until_idle(timeout=30)
    assert _rows(engine, "SELECT task, status, output FROM runs")[0][:2] == ("hello", "succeeded")
    assert "hi 7" in _rows(engine, "SELECT output FROM runs")[0][0]
    run_id = engine.queue_run("one-at-a-time", actor="test")
    assert engine.execute(run_id, timeout=30) == "succeeded"


def test_three_engines_run_each_event_once_and_a_queue_task_one_at_a_time(pg_applied, engines):
    url = pg_applied()
    nodes = [engines(url, workers=4) for _ in range(3)]
    nodes[0].emit_many(_events("go", 60) + _events("serial", 12))

    def finished():
        return _rows(nodes[0], "SELECT count(*) FROM runs WHERE status IN ('succeeded', 'failed')")[0][0] == 72

    _drive(nodes, finished)
    assert _rows(nodes[0], "SELECT count(*) FROM runs WHERE status != 'succeeded'")[0][0] == 0
    # each event's run once, each run one attempt
    assert _rows(nodes[0], "SELECT count(DISTINCT event_id), count(*) FROM runs") == [(72, 72)]
    assert _rows(nodes[0], "SELECT count(*) FROM attempts")[0][0] == 72
    spans = sorted(_rows(nodes[0], "SELECT a.started_at, a.finished_at FROM attempts a JOIN runs r "
                                   "ON r.id = a.run_id WHERE r.task = 'one-at-a-time'"))
    assert len(spans) == 12
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:])), "two ran at once"
    assert _rows(nodes[0], "SELECT count(*) FROM events WHERE processed_at IS NULL")[0][0] == 0


def _events(event_type, count):
    from taskengine_core.events import Event

    return [Event(event_type, {"n": n}) for n in range(count)]


def test_three_engines_fire_each_schedule_slot_once(pg_applied, engines):
    rules = RULES + """
schedules:
  often: {every: minute, timezone: UTC}
""" + "".join(f"""
  s{n}: {{every: minute, timezone: UTC}}
""" for n in range(20))
    rules = rules.replace("""  hello:
    action: command.run""", """  hello:
    action: command.run
    schedules: [often]""")
    url = pg_applied(rules)
    clock = FakeClock("2026-03-01T12:00:30+00:00")
    nodes = [engines(url, clock=clock) for _ in range(3)]
    for node in nodes:
        node.step()
    for _ in range(5):  # five minutes, every node ticking at each
        clock.advance(60)
        barrier = threading.Barrier(3)

        def tick(node):
            barrier.wait()
            node.scheduler.tick(node.runtime)

        threads = [threading.Thread(target=tick, args=(node,)) for node in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    slots = _rows(nodes[0], "SELECT schedule, due, count(*) FROM schedule_slots GROUP BY schedule, due")
    assert len(slots) == 21 * 5 and {row[2] for row in slots} == {1}
    runs = _rows(nodes[0], "SELECT slot, count(*) FROM runs WHERE schedule = 'often' GROUP BY slot")
    assert len(runs) == 5 and {row[1] for row in runs} == {1}


def test_a_node_that_stops_renewing_its_leases_has_its_runs_taken_over(pg_applied, engines):
    rules = RULES.replace("""  hello:
    action: command.run
    with: {argv: ["echo", "hi {{ event.data.n }}"]}""", """  hello:
    action: command.run
    with: {argv: ["echo", "hi {{ event.data.n }}"]}
  slow:
    action: command.run
    with: {argv: ["sleep", "30"]}""") + """
  on-slow:
    on: slow
    tasks: [slow]
"""
    url = pg_applied(rules)
    clock = FakeClock()
    dying, taking_over = engines(url, clock=clock), engines(url, clock=clock)
    dying.emit("slow", {})
    dying.step()
    dying.step()
    [(run_id, owner)] = _rows(dying, "SELECT id, lease_owner FROM runs WHERE status = 'running'")
    assert owner == dying.executor.owner
    # the dying node is alive as far as its pid goes, but it steps no more: no lease renewal
    assert taking_over.executor.recover(taking_over.runtime) == []  # lease still valid
    clock.advance(taking_over.executor.lease + 1)
    assert taking_over.executor.recover(taking_over.runtime) == [run_id]
    status, error = _rows(taking_over, "SELECT status, error FROM runs WHERE id = ?", (run_id,))[0]
    assert status in ("interrupted", "pending") and "interrupted" in error
    # the dying node's late report changes nothing
    dying.executor.stop(0)
    assert _rows(taking_over, "SELECT status FROM runs WHERE id = ?", (run_id,))[0][0] == status


CLUSTER_RULES = """
tasks:
  slow: {action: command.run, with: {argv: [sleep, "0.5"]}, concurrency: parallel}
events:
  every-tick: {on: tick, tasks: [slow]}
"""


def test_three_nodes_one_killed_mid_run_lose_and_double_nothing(pg_applied):
    """Three `taskengine run` nodes on one database take events through their ingress; one is
    killed (SIGKILL) with runs in flight. Every acknowledged event is evaluated once, every run
    ends (the dead node's runs are taken over after their lease, as interrupted: the action is
    not idempotent), and no run has a second attempt."""
    import os
    import signal

    import requests

    from taskengine_core.store import open_store
    from tests.test_crash import free_port, post_until_stopped, start_engine

    url = pg_applied(CLUSTER_RULES)
    os.environ["TASKENGINE_LEASE_SECONDS"] = "2"
    try:
        ports = [free_port() for _ in range(3)]
        nodes = [start_engine(url, port) for port in ports]
    finally:
        del os.environ["TASKENGINE_LEASE_SECONDS"]
    store = open_store(url, migrate=False)
    acknowledged: list = []
    stop = threading.Event()
    counter = iter(range(10**9))
    clients = [threading.Thread(target=post_until_stopped, args=(port, acknowledged, stop, counter))
               for port in ports for _ in range(2)]
    try:
        for client in clients:
            client.start()
        victim = nodes[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            owners = [r[0] for r in store.conn.execute(
                "SELECT lease_owner FROM runs WHERE status = 'running'").fetchall()]
            in_flight = [o for o in owners if o and f":{victim.pid}:" in o]
            if len(in_flight) >= 2:
                break
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_runs = {r[0] for r in store.conn.execute(
            "SELECT id FROM runs WHERE status = 'running' AND lease_owner LIKE ?", (f"%:{victim.pid}:%",))}
        assert killed_runs, "the node was killed with no run in flight"
        time.sleep(1.0)  # the others go on taking events meanwhile
        stop.set()
        for client in clients:
            client.join(timeout=10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = store.conn.execute(
                "SELECT (SELECT count(*) FROM events WHERE processed_at IS NULL), "
                "(SELECT count(*) FROM runs WHERE status IN ('pending', 'running'))").fetchone()
            if left == (0, 0):
                break
            time.sleep(0.1)
        assert left == (0, 0), f"events waiting, runs open: {left}"
        for node in nodes[1:]:
            assert requests.get(f"http://127.0.0.1:{ports[nodes.index(node)]}/healthz", timeout=5).ok
    finally:
        stop.set()
        for node in nodes:
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
        for node in nodes:
            node.wait(timeout=30)
    acked = {event_id for _, event_id in acknowledged}
    assert len(acked) > 10
    per_event = dict(store.conn.execute("SELECT event_id, count(*) FROM runs GROUP BY event_id").fetchall())
    assert {event_id: per_event.get(event_id) for event_id in acked} == {event_id: 1 for event_id in acked}
    assert store.conn.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM attempts GROUP BY run_id) AS a"
                              ).fetchone()[0] == 1  # no run started twice
    statuses = dict(store.conn.execute(
        "SELECT id, status FROM runs WHERE id = ANY(?::text[])", (sorted(killed_runs),)).fetchall())
    assert set(statuses.values()) <= {"interrupted", "succeeded"} and "interrupted" in statuses.values()
    store.close()
