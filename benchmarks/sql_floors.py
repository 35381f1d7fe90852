"""Floors under issue 15's unmet targets: the engine's own rows with every value precomputed.

Each function writes exactly the rows (same statements, same columns, same transactions and
batching) that the engine writes for the measured path, on a database made by the engine's own
store (``open_store``: same schema, indexes and pragmas, ``synchronous`` as the engine uses it),
calling the store's functions where one exists, but with no engine logic: no planning, no
rendering, no threads, no Python per row beyond building the parameter tuples beforehand. What is
left is SQLite (and the sqlite3 module's binding) under the engine's schema: no Python-side tuning
of the engine can make that path faster than this.

Used by bench_due_at_once.py, bench_manual_runs.py and bench_webhooks.py (baseline lines printed
in the same run as the engine's figure).
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from pathlib import Path

NOW = "2026-01-01T00:00:00.000000Z"
LATER = "2026-01-01T00:00:00.010000Z"
EXPIRES = "2026-01-01T00:05:00.000000Z"
OWNER = "bench-host:1:1:1"


class Parts(dict):
    """Seconds spent per part of a sequence: ``with parts("name"): ...``."""

    def __call__(self, name: str):
        parts = self

        class _Timer:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                parts[name] = parts.get(name, 0.0) + time.perf_counter() - self.t

        return _Timer()

    def ms(self) -> dict:
        return {k: v * 1000 for k, v in self.items()}


_NO_PARTS = Parts()


def _apply(db: Path, text: str, manager=None):
    from taskengine_core.apply import apply_config
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import open_store

    rules = db.with_suffix(".yaml")
    rules.write_text(text)
    manager = manager or get_plugin_manager()
    store = open_store(db)
    apply_config(store, load_config([rules], manager.registry()))
    return store


def _attempt(run_id: str, output: str | None, plugin: str) -> tuple:
    # attempts.ATTEMPT_COLUMNS, as runs.record_outcomes writes them for a succeeded attempt
    return (run_id, 1, NOW, LATER, "succeeded", None, None, output, 0.0001, plugin, None)


def _finish(run_id: str, output: str | None, plugin: str) -> tuple:
    # store.runs.FINISH_FIELDS, as runs.record_outcomes passes them to store.runs.finish
    return (run_id, 1, "succeeded", None, output, 0.0001, plugin, None, False)


def _output(output, run_id: str) -> str | None:
    return output.get(run_id) if isinstance(output, dict) else output


def claim_rows(conn, limit: int, parts: Parts = _NO_PARTS) -> list[str]:
    """The executor's claim (runs.claim_due, no concurrency limits hit): running counts, the due
    rows (``limit`` of them, with their event: what claim_due reads when every task is
    ``parallel`` and enabled, as in these benchmarks; else ``limit * 4``), then the claim UPDATE
    of ``limit``."""
    from taskengine_core.store import runs as run_store

    with parts("claim: running counts + due rows read"):
        run_store.running_counts(conn)
        rows = run_store.due(conn, NOW, limit)
    with parts("claim: UPDATE running"):
        started = run_store.start(conn, [r[0] for r in rows[:limit]], NOW, OWNER, EXPIRES)
    return [r[0] for r in rows[:limit] if r[0] in started]


def outcome_rows(conn, run_ids: list[str], output, plugin: str, parts: Parts = _NO_PARTS) -> None:
    """The outcome writes of runs.record_outcomes for succeeded attempts: attempt rows, then the
    runs' UPDATE (store.runs.finish, one executemany on SQLite). ``output``: the stored output
    text of every run, or a dict of it by run id."""
    from taskengine_core.store import attempts as attempt_store, runs as run_store

    if run_ids:
        attempts = [_attempt(r, _output(output, r), plugin) for r in run_ids]
        finishes = [_finish(r, _output(output, r), plugin) for r in run_ids]
        with parts("outcomes: attempt rows + run UPDATE"):
            attempt_store.insert(conn, attempts)
            run_store.finish(conn, finishes, NOW)


def executor_sequence(store, n: int, first: int, then: int, output=None, plugin="bench-noop",
                      parts: Parts = _NO_PARTS) -> tuple[int, float]:
    """Claim ``n`` due runs as the executor's steps do: each step one write transaction holding
    the previous step's outcomes and the next claim (``first`` runs while no attempt has finished,
    then ``then`` each: workers + claim-ahead). Returns (transactions, seconds until the last
    claim committed)."""
    from taskengine_core.store import runs as run_store

    done, previous, commits, last_claim = 0, [], 0, 0.0
    start = time.perf_counter()
    while done < n or previous:
        run_store.anything_due(store.conn, NOW)  # the read before each step's write
        with parts("executor steps, whole"):
            with store.write() as db:
                outcome_rows(db.conn, previous, output, plugin, parts)
                claimed = claim_rows(db.conn, first if commits == 0 else then, parts) if done < n else []
                t_commit = time.perf_counter()
            parts["executor: BEGIN..COMMIT overhead + COMMIT"] = (
                parts.get("executor: BEGIN..COMMIT overhead + COMMIT", 0.0) + time.perf_counter() - t_commit)
        commits += 1
        if claimed:
            last_claim = time.perf_counter() - start
        done += len(claimed)
        previous = claimed
    return commits, last_claim


# -- 1. many schedules due at one instant --------------------------------------------------------


def due_floor(n: int, tmp: Path, manager) -> dict:
    """The rows of ``n`` once-schedules due at one instant, one task each (bench_due_at_once):
    Scheduler._fire's transactions (``scheduler.BATCH`` schedules each: slot claims, run rows,
    decision rows, schedule state), then the executor's claim steps (16, then 16 + 512 ahead,
    as claim_pace allows for quick attempts) with the outcome writes (attempt rows + run
    UPDATE) in the next step's transaction, as Executor.step does."""
    from taskengine_core.claim_pace import PREFETCH_MAX
    from taskengine_core.ids import new_ids
    from taskengine_core.scheduler import BATCH
    from taskengine_core.store import runs as run_store, slots as slot_store
    from taskengine_core.store.decisions import insert_decisions

    db = tmp / f"floor-due-{time.monotonic_ns()}.db"
    lines = ["settings: {timezone: UTC}", "schedules:"]
    lines += [f'  s{i}: {{once: "2026-01-01T00:00:00"}}' for i in range(n)]
    lines.append("tasks:")
    lines += [f"  t{i}: {{action: bench.noop, concurrency: parallel, schedules: [s{i}]}}" for i in range(n)]
    store = _apply(db, "\n".join(lines) + "\n", manager)
    with store.write() as w:  # what Scheduler.load writes at start (not timed)
        slot_store.save_states(w.conn, [(f"s{i}", "0" * 40, NOW, NOW) for i in range(n)])
    ids = new_ids(n)
    claims = [(f"s{i}", NOW, "fired", NOW, "") for i in range(n)]
    runs = [(ids[i], f"t{i}", "pending", "schedule", None, None, f"s{i}", NOW, None, NOW, NOW, 1, 0)
            for i in range(n)]
    decisions = [(NOW, "matched", "slot due", f"s{i}", NOW, f"t{i}", ids[i]) for i in range(n)]
    states = [(None, NOW, NOW, f"s{i}") for i in range(n)]
    columns = ("time", "decision", "reason", "schedule", "slot", "task", "run_id")
    parts = Parts()
    start = time.perf_counter()
    for i in range(0, n, BATCH):
        with store.write() as w:
            with parts("fire: slot claims"):
                won = slot_store.claim(w.conn, claims[i:i + BATCH])
            assert len(won) == len(claims[i:i + BATCH])
            with parts("fire: run rows"):
                run_store.insert(w.conn, runs[i:i + BATCH])
            with parts("fire: decision rows"):
                insert_decisions(w.conn, columns, decisions[i:i + BATCH])
            with parts("fire: schedule state"):
                slot_store.advance(w.conn, states[i:i + BATCH])
            t_commit = time.perf_counter()
        parts["fire: COMMIT"] = parts.get("fire: COMMIT", 0.0) + time.perf_counter() - t_commit
    fired = time.perf_counter() - start
    commits, last_claim = executor_sequence(store, n, 16, 16 + PREFETCH_MAX, parts=parts)
    total = time.perf_counter() - start
    succeeded = run_store.count_by_status(store.conn).get("succeeded", 0)
    store.close()
    assert succeeded == n, succeeded
    return {"fire_ms": fired * 1000, "fire_commits": -(-n // BATCH), "claimed_ms": (fired + last_claim) * 1000,
            "total_ms": total * 1000, "executor_commits": commits, "parts_ms": parts.ms()}


def interpreter_floor(n: int, workers: int = 16) -> dict:
    """What starting ``n`` actions costs CPython at a minimum: ``n`` ``threading.Event`` objects
    (the executor makes one per claimed run), and ``n`` no-op calls handed to ``workers`` threads
    through a ``queue.Queue`` (the executor's worker pool); start latency of each call from the
    moment the hand-off began. Also a ``ThreadPoolExecutor(workers)`` doing the same."""
    from concurrent.futures import ThreadPoolExecutor, wait

    t0 = time.perf_counter()
    events = [threading.Event() for _ in range(n)]
    events_ms = (time.perf_counter() - t0) * 1000
    del events
    work: queue.Queue = queue.Queue()
    starts: list[float] = []

    def worker():
        while True:
            item = work.get()
            if item is None:
                return
            starts.append(time.perf_counter())  # list.append is atomic under the GIL

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    for i in range(n):
        work.put(i)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    pool_ms = (time.perf_counter() - t0) * 1000
    latencies = sorted((s - t0) * 1000 for s in starts)
    with ThreadPoolExecutor(workers) as pool:
        t1 = time.perf_counter()
        wait([pool.submit(int) for _ in range(n)])
        tpe_ms = (time.perf_counter() - t1) * 1000
    return {"events_ms": events_ms, "pool_ms": pool_ms, "start_p50_ms": latencies[len(latencies) // 2],
            "start_p99_ms": latencies[int(len(latencies) * .99) - 1], "tpe_ms": tpe_ms}


# -- 2. queued manual runs ----------------------------------------------------------------------


def raw_commit_rate(n: int, tmp: Path, synchronous: str = "FULL") -> float:
    """``n`` times ``BEGIN IMMEDIATE; INSERT one small row; COMMIT`` on a WAL database, plain
    sqlite3: the floor of one durable commit per call."""
    db = tmp / f"floor-raw-{time.monotonic_ns()}.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, v TEXT)")
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO q (v) VALUES (?)", (f"run {i}",))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def enqueue_floor_rate(n: int, tmp: Path, rules_text: str, manager=None) -> tuple[float, float]:
    """``n`` times what Engine.queue_run commits, values precomputed: in one write transaction
    (``BEGIN IMMEDIATE`` .. ``COMMIT`` on the store's connection) the run row
    (store.runs.insert) and the manual decision row (store.decisions.record_decision).
    Then the executor's rows for completing them (:func:`executor_sequence`: claims of 16, then
    16 + 512 ahead, with the outcomes). Returns (enqueue/s, completion/s)."""
    from taskengine_core.claim_pace import PREFETCH_MAX
    from taskengine_core.ids import new_ids
    from taskengine_core.store import runs as run_store
    from taskengine_core.store.decisions import record_decision

    db = tmp / f"floor-enqueue-{time.monotonic_ns()}.db"
    store = _apply(db, rules_text, manager)
    conn = store.conn
    rows = [(run_id, "t", "pending", "manual", None, None, None, None, None, NOW, NOW, 1, 0) for run_id in new_ids(n)]
    start = time.perf_counter()
    for row in rows:
        conn.execute("BEGIN IMMEDIATE")
        run_store.insert(conn, [row])
        record_decision(conn, NOW, "manual", "run by hand by cli", task="t", run_id=row[0], event_id=None)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == n
    start = time.perf_counter()
    executor_sequence(store, n, 16, 16 + PREFETCH_MAX)
    completed = time.perf_counter() - start
    assert run_store.count_by_status(conn).get("succeeded", 0) == n
    store.close()
    return n / elapsed, n / completed


# -- 3. webhook.send through the engine -----------------------------------------------------------


def webhook_floor_rate(n: int, tmp: Path, rules_text: str, cohort: int, body: str,
                       ready=lambda: None) -> dict:
    """The durable rows of ``n`` deliveries on the action path (bench_webhooks --path action),
    no HTTP, values precomputed, batched as the engine batches them:
    1. emit: the ``n`` inbox rows in one transaction (Engine.emit_many);
    2. evaluation, 1,000 events a transaction: claim the waiting events, read them, insert the
       run and decision rows, mark them processed (Evaluator.process_pending);
    3. per ``cohort`` runs claimed a step, one transaction each (the executor's step: the
       delivery rows go in with the outcomes, taskengine_core.outcome_writes): the previous
       cohort's outcomes (attempt rows + run UPDATE), the destination read and its delivery rows,
       the dispatcher's ride (the HTTP attempts of the cohort before recorded: delivery UPDATE +
       webhook_attempts row each; then the claim of the new deliveries), and the next claim.
    ``ready()`` is called once the database is set up, just before the clock starts.
    Returns deliveries/s, the process CPU per delivery (ms) and the commits made."""
    from taskengine_core.ids import new_ids
    from taskengine_core.store import deliveries as queue_store, inbox, runs as run_store
    from taskengine_core.store.decisions import insert_decisions

    db = tmp / f"floor-webhook-{time.monotonic_ns()}.db"
    store = _apply(db, rules_text)
    conn = store.conn
    event_ids, run_ids = new_ids(n), new_ids(n)
    events = [(event_ids[i], "bench.event", "cli", None,
               json.dumps({"type": "bench.event", "index": i, "text": "x" * 960}), NOW, NOW, None, None)
              for i in range(n)]
    runs = [(run_ids[i], "forward", "pending", "event", event_ids[i], "all", None, None, None, NOW, NOW, 1, 0)
            for i in range(n)]
    decisions = [(NOW, "matched", "matched", event_ids[i], "all", "forward", run_ids[i]) for i in range(n)]
    delivery_of = {r: {"id": f"msg_{r}", "webhook": "sink", "type": "bench.event", "body": body,
                       "content_type": "application/json", "headers": {}, "task": "forward", "run_id": r,
                       "event_id": e, "max_attempts": 1} for r, e in zip(run_ids, event_ids)}
    output = {r: json.dumps({"delivery_id": f"msg_{r}", "webhook": "sink"}) for r in run_ids}
    headers = {"webhook-id": "msg_x", "webhook-timestamp": "1767225600",
               "webhook-signature": "v1,<hidden>", "content-type": "application/json"}

    def http_outcome(run_id: str) -> dict:
        attempt = {"number": 1, "request_id": f"req_{run_id}", "started_at": NOW, "duration": 0.001,
                   "address": "127.0.0.1", "status_code": 200, "outcome": "succeeded", "error": None,
                   "response_excerpt": "ok", "request_headers": headers, "next_attempt_at": None}
        return {"id": f"msg_{run_id}", "status": "delivered", "attempts": 1, "next_attempt_at": NOW,
                "finished_at": LATER, "attempt": attempt}

    outcomes = {r: http_outcome(r) for r in run_ids}
    commits = {"emit": 0, "evaluate": 0, "executor": 0}
    ready()
    start, cpu = time.perf_counter(), time.process_time()
    with store.write() as w:  # 1. emit
        inbox.insert(w.conn, events)
    commits["emit"] += 1
    for i in range(0, n, 1000):  # 2. evaluation
        with store.write() as w:
            waiting = inbox.claim_waiting(w.conn, 1000)
            inbox.read_events(w.conn, [seq for seq, _, _ in waiting])
            run_store.insert(w.conn, runs[i:i + 1000])
            insert_decisions(w.conn, ("time", "decision", "reason", "event_id", "rule", "task", "run_id"),
                             decisions[i:i + 1000])
            inbox.mark_processed(w.conn, [seq for seq, _, _ in waiting], NOW)
        commits["evaluate"] += 1
    sent: list[str] = []  # deliveries the dispatcher claimed: their attempts are recorded next step
    previous: list[str] = []  # runs whose action returned: outcomes and deliveries go in the next step
    delivered = done = 0
    while previous or sent or done < n:
        run_store.anything_due(conn, NOW)
        with store.write() as w:  # 3. the executor's step, the dispatcher riding in it
            got = []
            if previous:
                queue_store.destinations(w.conn, ["sink"])
                queue_store.enqueue(w.conn, [delivery_of[r] for r in previous], NOW)
                outcome_rows(w.conn, previous, output, "webhook")
            with queue_store.savepoint(w.conn, "webhook_ride"):
                delivered += len(queue_store.record(w.conn, [outcomes[r] for r in sent], OWNER))
                if previous:
                    got = queue_store.claim_due(w.conn, "sink", max(128, cohort), NOW, OWNER, EXPIRES)
            claimed = claim_rows(w.conn, cohort) if done < n else []
        commits["executor"] += 1
        done += len(claimed)
        sent = [m["run_id"] for m in got]
        previous = claimed  # the actions return at once: their rows go with the next step's outcomes
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finished = run_store.count_by_status(conn).get("succeeded", 0)
    store.close()
    assert delivered == n and finished == n, (delivered, finished)
    return {"rate": n / elapsed, "cpu_ms": cpu / n * 1000, **commits}
