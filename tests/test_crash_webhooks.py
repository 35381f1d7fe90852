"""SIGKILL while ``webhook.send`` runs are in flight: a delivery is queued exactly when its run
succeeds, never before and never twice, and after a restart every run has succeeded (the action
is idempotent, so an interrupted run is retried) and every delivery has reached the receiver.

At every moment the harness freezes the engine (SIGSTOP) it also checks the promise of
taskengine_core.outcome_writes from outside: no delivery row belongs to a run that has not
succeeded (the delivery and the run's success are one commit).
"""

from __future__ import annotations

import random
import signal
import threading
import time

from tests import test_crash as crash
from tests.backends import connection
from tests.backends import db_path  # noqa: F401  (on SQLite and on PostgreSQL)
from tests.test_webhook_support import receiver  # noqa: F401 (fixture)

KILLS = 3


def rules(url: str) -> str:
    return f"""
webhooks:
  hook: {{url: "{url}", retries: 10}}
tasks:
  forward: {{action: webhook.send, concurrency: parallel, with: {{webhook: hook, payload: {{n: "{{{{ event.data.n }}}}"}}}}}}
events:
  every-tick: {{on: tick, tasks: [forward]}}
"""


def deliveries_of_unfinished_runs(db_path) -> list[tuple]:  # noqa: F811
    with connection(db_path) as conn:
        return conn.execute("SELECT d.id, r.status FROM webhook_deliveries d JOIN runs r ON r.id = d.run_id "
                            "WHERE r.status <> 'succeeded'").fetchall()


def test_sigkill_mid_send_queues_each_delivery_once_with_its_runs_success(run_cli, write_rules, db_path,  # noqa: F811
                                                                           receiver):  # noqa: F811
    server = receiver()
    run_cli("apply", write_rules(rules(server.url)))
    rng = random.Random(15)
    acknowledged: list[tuple[int, str]] = []
    counter = iter(range(10**9))
    frozen_checks: list[list] = []
    real_freeze = crash.work_in_flight

    def checking(path):  # every frozen moment: no delivery of a run that has not succeeded
        frozen_checks.append(deliveries_of_unfinished_runs(path))
        return real_freeze(path)

    crash.work_in_flight = checking
    try:
        kills = []
        for _ in range(KILLS):
            port = crash.free_port()
            proc = crash.start_engine(db_path, port)
            stop = threading.Event()
            clients = [threading.Thread(target=crash.post_until_stopped, args=(port, acknowledged, stop, counter))
                       for _ in range(4)]
            for client in clients:
                client.start()
            time.sleep(rng.uniform(0.2, 0.8))
            kills.append(crash.kill_mid_work(proc, db_path, rng))
            stop.set()
            for client in clients:
                client.join(timeout=10)
    finally:
        crash.work_in_flight = real_freeze
    proc = crash.start_engine(db_path, crash.free_port())  # a clean run finishes what was left
    try:
        deadline = time.monotonic() + 90
        with connection(db_path) as conn:
            while time.monotonic() < deadline:
                open_runs = conn.execute("SELECT count(*) FROM runs WHERE status IN ('pending', 'running')").fetchone()[0]
                unsent = conn.execute("SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'").fetchone()[0]
                waiting = conn.execute("SELECT count(*) FROM events WHERE processed_at IS NULL").fetchone()[0]
                if not open_runs and not unsent and not waiting:
                    break
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    assert frozen_checks and all(found == [] for found in frozen_checks), \
        "a delivery was committed before its run succeeded"
    assert all(running for running, _, _ in kills)  # each kill cut off runs in flight
    with connection(db_path) as conn:
        runs = dict(conn.execute("SELECT id, status FROM runs").fetchall())
        deliveries = conn.execute("SELECT id, run_id, status FROM webhook_deliveries").fetchall()
        per_event = dict(conn.execute("SELECT event_id, count(*) FROM runs GROUP BY event_id").fetchall())
    assert len(acknowledged) > 12 * KILLS
    assert all(per_event.get(event_id) == 1 for _, event_id in acknowledged)  # one run per event
    assert set(runs.values()) == {"succeeded"}  # the interrupted ones were retried (idempotent action)
    assert sorted(run_id for _, run_id, _ in deliveries) == sorted(runs)  # one delivery per run, no more
    assert {status for _, _, status in deliveries} == {"delivered"}
    received = {r.headers.get("webhook-id") for r in server.requests}
    assert {delivery_id for delivery_id, _, _ in deliveries} <= received
    for running, _, _ in kills:  # what each kill cut off ended succeeded, with its one delivery
        assert {runs[run_id] for run_id in running} == {"succeeded"}
