"""Three engines on one PostgreSQL database (issue 16): each schedule slot fires once, the nodes
share the runs, and a node killed with SIGKILL mid-run loses nothing: its runs are taken over by
the others after its lease, no run executes twice, no accepted event is lost."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from taskengine_core.store import open_store
from tests.test_crash import free_port, start_engine
from tests.test_scheduler import TWO_ENGINES

ROOT = Path(__file__).resolve().parent.parent

def _rows(url: str, sql: str, params=()) -> list[tuple]:
    store = open_store(url)
    try:
        return store.conn.execute(sql, params).fetchall()
    finally:
        store.close()


def test_three_schedulers_fire_each_slot_exactly_once(postgres_url, write_rules, run_cli):
    schedules = "\n".join(f"  s{i}: {{every: minute, timezone: UTC, catch_up: all}}" for i in range(50))
    links = ", ".join(f"s{i}" for i in range(50))
    rules = write_rules(f"schedules:\n{schedules}\ntasks:\n  t: {{action: command.run, with: {{argv: [echo, ok]}}, "
                        f"schedules: [{links}], concurrency: parallel}}\n")
    assert run_cli("--db", postgres_url, "apply", rules).exit_code == 0
    from taskengine_core.model import load_runtime
    from taskengine_core.scheduler import Scheduler
    from tests.conftest import FakeClock

    store = open_store(postgres_url)  # all three start from the same persisted state
    Scheduler(store, FakeClock("2026-03-01T12:00:00+00:00")).load(load_runtime(store))
    script = TWO_ENGINES.format(root=str(ROOT), db=postgres_url)  # one scheduler process each
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [p.wait(timeout=180) for p in procs] == [0, 0, 0]
    per_slot = _rows(postgres_url, "SELECT schedule, slot, count(*) FROM runs GROUP BY schedule, slot")
    assert len(per_slot) == 50 * 30 and {n for _, _, n in per_slot} == {1}
    assert _rows(postgres_url, "SELECT count(*) FROM schedule_slots")[0][0] == 50 * 30


RULES = """
schedules:
  each-minute: {every: minute, timezone: UTC, catch_up: all, max_lateness: 1h}
tasks:
  record:
    action: command.run
    with: {argv: [sh, -c, "echo $PPID; sleep 0.2"]}
    concurrency: parallel
  tick-tock: {action: command.run, with: {argv: [echo, tock]}, schedules: [each-minute], concurrency: parallel}
events:
  every-tick: {on: tick, tasks: [record]}
"""


def _post(ports, acknowledged, stop, counter):
    session = requests.Session()
    for port in itertools.cycle(ports):
        if stop.is_set():
            return
        n = next(counter)
        try:
            response = session.post(f"http://127.0.0.1:{port}/events", json={"type": "tick", "data": {"n": n}},
                                    timeout=5)
        except requests.RequestException:
            ports = [p for p in ports if p != port] or ports  # that node died: never acknowledged
            continue
        if response.status_code == 202:
            acknowledged.append(response.json()["id"])


def test_three_nodes_share_the_work_and_a_killed_node_loses_nothing(postgres_url, write_rules, run_cli):
    assert run_cli("--db", postgres_url, "apply", write_rules(RULES)).exit_code == 0
    ports = [free_port() for _ in range(3)]
    nodes = [start_engine(postgres_url, port) for port in ports]  # lease 3 s on PostgreSQL
    acknowledged: list[str] = []
    stop = threading.Event()
    counter = itertools.count()
    clients = [threading.Thread(target=_post, args=(ports, acknowledged, stop, counter)) for _ in range(3)]
    for client in clients:
        client.start()
    try:
        victim = nodes[0]
        # kill node 0 while it has runs in flight (it runs each for 0.2 s)
        deadline = time.monotonic() + 60
        in_flight: set[str] = set()
        while time.monotonic() < deadline and not in_flight:
            time.sleep(0.05)
            in_flight = {r[0] for r in _rows(postgres_url, "SELECT id FROM runs WHERE status = 'running' "
                                                           "AND lease_owner LIKE ?", (f"%:{victim.pid}:%",))}
        assert in_flight, "node 0 never ran anything: the nodes do not share the work"
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        time.sleep(2)  # the survivors go on taking events
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=30)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            waiting = _rows(postgres_url, "SELECT count(*) FROM events WHERE processed_at IS NULL")[0][0]
            open_runs = _rows(postgres_url, "SELECT count(*) FROM runs WHERE status IN ('pending', 'running')")[0][0]
            if not waiting and not open_runs:
                break
            time.sleep(0.2)
    finally:
        for node in nodes[1:]:
            node.send_signal(signal.SIGTERM)
        for node in nodes[1:]:
            node.wait(timeout=60)

    assert len(acknowledged) > 30
    stored = {r[0] for r in _rows(postgres_url, "SELECT id FROM events WHERE type = 'tick'")}
    assert set(acknowledged) <= stored, "an acknowledged event was lost"
    per_event = dict(_rows(postgres_url, "SELECT event_id, count(*) FROM runs WHERE event_id IS NOT NULL "
                                         "GROUP BY event_id"))
    assert all(per_event.get(event_id) == 1 for event_id in stored), "an event was evaluated twice or never"
    doubled = _rows(postgres_url, "SELECT run_id FROM attempts GROUP BY run_id HAVING count(*) > 1")
    assert doubled == [], "a run executed twice"
    final = dict(_rows(postgres_url, "SELECT id, status FROM runs"))
    assert set(final.values()) <= {"succeeded", "interrupted"}
    assert {final[run_id] for run_id in in_flight} == {"interrupted"}  # not idempotent: flagged, not re-run
    per_slot = _rows(postgres_url, "SELECT slot, count(*) FROM runs WHERE schedule IS NOT NULL GROUP BY slot")
    assert all(n == 1 for _, n in per_slot), "a schedule slot fired twice"
    ran_on = {json.loads(r[0])["stdout"].strip() for r in _rows(  # the parent of sh: the node's pid
        postgres_url, "SELECT output FROM runs WHERE task = 'record' AND status = 'succeeded'")}
    assert ran_on <= {str(node.pid) for node in nodes}
    assert len(ran_on) >= 2, f"one node did all the work: {ran_on}"
