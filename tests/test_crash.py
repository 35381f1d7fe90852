"""SIGKILL at random moments: no acknowledged event is lost, none is evaluated twice, nothing is
left running, and the database stays intact (RELIABILITY 1, 3, 20).

Each kill is proven to land mid-work: the harness freezes the engine (SIGSTOP) at a random
moment and reads the database; only if runs are in flight and accepted events wait to be
evaluated does it kill there, otherwise it lets the engine go on and tries another moment. The
runs seen in flight must come back ``interrupted``; the events seen waiting, evaluated once.

CI kills the engine 4 times. For a longer run:

    TASKENGINE_CRASH_KILLS=50 TASKENGINE_CRASH_SEED=7 python -m pytest tests/test_crash.py
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import requests

from tests.backends import connection, is_postgres
from tests.backends import db_path  # noqa: F401  (on SQLite and on PostgreSQL)

RULES = """
schedules:
  each-minute: {every: minute, timezone: UTC, catch_up: all, max_lateness: 1h}
tasks:
  record: {action: command.run, with: {argv: [echo, "{{ event.data.n }}"]}, concurrency: parallel}
  tick-tock: {action: command.run, with: {argv: [echo, tock]}, schedules: [each-minute], concurrency: parallel}
events:
  every-tick: {on: tick, tasks: [record]}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_engine(db_path, port):
    env = {**os.environ, "TASKENGINE_DB": str(db_path)}
    if is_postgres(db_path):  # a killed node's runs wait for its lease (30 s by default) to expire
        env["TASKENGINE_LEASE_SECONDS"] = "3"
    proc = subprocess.Popen([sys.executable, "-m", "taskengine_core", "run", "--listen", f"127.0.0.1:{port}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("engine did not start: " + proc.stderr.read().decode())


def post_until_stopped(port, acknowledged, stop, counter):
    session = requests.Session()
    while not stop.is_set():
        n = next(counter)
        try:
            response = session.post(f"http://127.0.0.1:{port}/events", json={"type": "tick", "data": {"n": n}},
                                    timeout=5)
        except requests.RequestException:
            return  # the engine died under us: this event was never acknowledged
        if response.status_code == 202:
            acknowledged.append((n, response.json()["id"]))


KILLS = int(os.environ.get("TASKENGINE_CRASH_KILLS", "4"))
SEED = int(os.environ.get("TASKENGINE_CRASH_SEED", "20"))
MAX_TRIES = 100  # moments tried per kill before the harness gives up


def work_in_flight(db_path) -> tuple[set[str], set[str]]:
    """Runs claimed and not finished, and events accepted but not yet evaluated, as the
    database holds them now (the engine is frozen, so this is what a kill now interrupts)."""
    with connection(db_path) as conn:
        running = {r[0] for r in conn.execute("SELECT id FROM runs WHERE status = 'running'").fetchall()}
        waiting = {r[0] for r in conn.execute(
            "SELECT id FROM events WHERE processed_at IS NULL AND type = 'tick'").fetchall()}
        return running, waiting


def kill_mid_work(proc, db_path, rng) -> tuple[set[str], set[str], int]:
    """SIGKILL ``proc`` at a random moment when it has runs in flight and events waiting;
    returns them and how many moments were tried."""
    for tries in range(1, MAX_TRIES + 1):
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGSTOP)
        running, waiting = work_in_flight(db_path)
        if running and waiting:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            return running, waiting, tries
        proc.send_signal(signal.SIGCONT)
    proc.kill()
    raise AssertionError(f"no moment with work in flight in {MAX_TRIES} tries")


def test_sigkill_at_random_moments_loses_and_doubles_nothing(run_cli, write_rules, db_path):
    print(f"{KILLS} kills, seed {SEED} (TASKENGINE_CRASH_KILLS, TASKENGINE_CRASH_SEED)")
    run_cli("apply", write_rules(RULES))
    rng = random.Random(SEED)
    acknowledged: list[tuple[int, str]] = []
    counter = iter(range(10**9))
    kills: list[tuple[set[str], set[str], int]] = []  # per kill: runs in flight, events waiting, tries
    for _ in range(KILLS):
        port = free_port()
        proc = start_engine(db_path, port)
        stop = threading.Event()
        clients = [threading.Thread(target=post_until_stopped, args=(port, acknowledged, stop, counter))
                   for _ in range(4)]
        for client in clients:
            client.start()
        time.sleep(rng.uniform(0.2, 1.0))
        kills.append(kill_mid_work(proc, db_path, rng))
        stop.set()
        for client in clients:
            client.join(timeout=10)
    # a last, clean run processes whatever the killed engines left behind
    port = free_port()
    proc = start_engine(db_path, port)
    with connection(db_path) as conn:
        check_afterwards(conn, db_path, proc, acknowledged, kills)


def check_afterwards(conn, db_path, proc, acknowledged, kills):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        waiting = conn.execute("SELECT count(*) FROM events WHERE processed_at IS NULL").fetchone()[0]
        open_runs = conn.execute("SELECT count(*) FROM runs WHERE status IN ('pending', 'running')").fetchone()[0]
        if not waiting and not open_runs:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)

    assert len(acknowledged) > 12 * KILLS
    print("per kill (runs in flight, events waiting, moments tried):",
          [(len(r), len(w), t) for r, w, t in kills])
    assert len(kills) == KILLS and all(running and waiting for running, waiting, _ in kills)
    ids = {event_id for _, event_id in acknowledged}
    stored = {row[0] for row in conn.execute("SELECT id FROM events WHERE type = 'tick'").fetchall()}
    assert ids <= stored, "an acknowledged event was lost"
    per_event = dict(conn.execute(
        "SELECT event_id, count(*) FROM runs WHERE event_id IS NOT NULL GROUP BY event_id").fetchall())
    assert all(per_event.get(event_id) == 1 for event_id in stored), "an event was evaluated twice or never"
    # a kill across a minute boundary must not fire its slot twice (or lose it: catch_up all)
    fired = {row[0] for row in conn.execute("SELECT due FROM schedule_slots WHERE status = 'fired'").fetchall()}
    per_slot = dict(conn.execute("SELECT slot, count(*) FROM runs WHERE schedule IS NOT NULL GROUP BY slot").fetchall())
    assert set(per_slot) == fired and set(per_slot.values()) <= {1}, "a schedule slot fired twice or not at all"
    print(f"{len(acknowledged)} events acknowledged, {len(fired)} schedule slots fired")
    statuses = {row[0] for row in conn.execute("SELECT DISTINCT status FROM runs").fetchall()}
    assert statuses <= {"succeeded", "interrupted"}
    assert conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0] == 0
    interrupted = conn.execute("SELECT attention FROM runs WHERE status = 'interrupted'").fetchall()
    assert all(a == 1 for (a,) in interrupted)  # command.run is not idempotent: flagged, not re-run
    final = dict(conn.execute("SELECT id, status FROM runs").fetchall())
    for running, waiting, _ in kills:  # what each kill cut off was recovered, not lost or doubled
        assert {final[run_id] for run_id in running} <= {"interrupted", "succeeded"}
        assert "interrupted" in {final[run_id] for run_id in running}, "a kill interrupted no run"
        assert all(per_event.get(event_id) == 1 for event_id in waiting)
    if not is_postgres(db_path):
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
