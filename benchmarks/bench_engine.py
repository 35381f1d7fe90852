"""End to end, durable: events in through the Python API, runs of a no-op action claimed,
executed and logged. Every event matches exactly one of 10,000 rules (1,000 event types).

Usage: python benchmarks/bench_engine.py [--events 20000] [--runs 3] [--workers 16]
Baseline in the same run: raw batched sqlite-utils inserts of the same number of rows.

Then unique event types: ``--unique`` events typed ``job.<n>.done`` (each type new, none
matched by the 10,000 rules) go through the inbox and the evaluator; the same number with one
repeated type is the baseline in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sqlite3
import tempfile
import time
from pathlib import Path

import sqlite_utils

from taskengine_core.hookspecs import hookimpl


def noop(params, ctx):
    return None


class NoopPlugin:
    __name__ = "bench-noop"

    @hookimpl
    def register_actions(self, register):
        register("bench.noop", noop, schema={"type": "object"}, idempotent=True)


def rules_text(n_rules: int = 10_000, n_types: int = 1_000) -> str:
    lines = ["tasks:"]
    for i in range(100):
        lines.append(f"  t{i}: {{action: bench.noop, concurrency: parallel}}")
    lines.append("events:")
    for i in range(n_rules):
        lines.append(f"  r{i}: {{on: type-{i % n_types}, when: {{data.user: u{i}}}, tasks: [t{i % 100}]}}")
    return "\n".join(lines) + "\n"


def one_run(tmp: Path, n_events: int, workers: int) -> dict:
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.events import Event
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store

    manager = get_plugin_manager(extra_plugins=[NoopPlugin()])
    db = tmp / f"engine-{time.monotonic_ns()}.db"
    rules = tmp / "rules.yaml"
    rules.write_text(rules_text())
    store = Store(db)
    apply_config(store, load_config([rules], manager.registry()))
    store.close()
    engine = Engine(db, manager=manager, workers=workers, poll_interval=0.01)
    commits = {"n": 0}
    engine.store.conn.set_trace_callback(lambda sql: sql.startswith("COMMIT") and commits.__setitem__("n", commits["n"] + 1))
    engine.start()
    events = [Event(f"type-{i % 1000}", {"user": f"u{i % 10_000}"}) for i in range(n_events)]
    start = time.perf_counter()
    for i in range(0, n_events, 500):
        engine.emit_many(events[i:i + 500])
    conn = sqlite3.connect(db)
    while True:
        done = conn.execute("SELECT count(*) FROM runs WHERE status = 'succeeded'").fetchone()[0]
        if done >= n_events:
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    engine.stop(5)
    attempts = conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    return {"runs_per_s": n_events / elapsed, "commits_per_run": commits["n"] / n_events, "attempts": attempts}


def evaluation_rate(tmp: Path, n_events: int, unique: bool) -> float:
    """Events/s from the first emit until the evaluator has processed every one."""
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.events import Event
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store

    manager = get_plugin_manager(extra_plugins=[NoopPlugin()])
    db = tmp / f"unique-{time.monotonic_ns()}.db"
    rules = tmp / "rules.yaml"
    rules.write_text(rules_text())
    store = Store(db)
    apply_config(store, load_config([rules], manager.registry()))
    store.close()
    engine = Engine(db, manager=manager, workers=2, poll_interval=0.01)
    engine.start()
    events = [Event(f"job.{i}.done" if unique else "job.done", {"n": i}) for i in range(n_events)]
    start = time.perf_counter()
    for i in range(0, n_events, 100):
        engine.emit_many(events[i:i + 100])
    conn = sqlite3.connect(db)
    while conn.execute("SELECT count(*) FROM events WHERE processed_at IS NULL").fetchone()[0]:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    engine.stop(5)
    return n_events / elapsed


def baseline(tmp: Path, n_rows: int) -> float:
    db = sqlite_utils.Database(tmp / f"raw-{time.monotonic_ns()}.db")
    db.execute("PRAGMA journal_mode = WAL")
    rows = ({"id": i, "task": f"t{i % 100}", "status": "succeeded", "payload": "x" * 50} for i in range(n_rows))
    start = time.perf_counter()
    db["runs"].insert_all(rows, batch_size=500, pk="id")
    return n_rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--unique", type=int, default=5_000, help="events with unique types")
    args = parser.parse_args()
    results, raw = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            results.append(one_run(Path(tmp), args.events, args.workers))
            raw.append(baseline(Path(tmp), args.events))
        unique = [evaluation_rate(Path(tmp), args.unique, True) for _ in range(args.runs)]
        repeated = [evaluation_rate(Path(tmp), args.unique, False) for _ in range(args.runs)]
    rate = statistics.median(r["runs_per_s"] for r in results)
    print(f"cpu_count={os.cpu_count()} events={args.events} runs={args.runs} workers={args.workers}")
    print(f"  end to end, durable: {rate:,.0f} completed runs/s (target >= 5,000); "
          f"{statistics.median(r['commits_per_run'] for r in results):.3f} commits per run")
    print(f"  raw batched sqlite-utils inserts (baseline): {statistics.median(raw):,.0f} rows/s "
          f"(the engine writes ~6 rows per run)")
    print(f"  {args.unique} events of unique types (job.<n>.done), evaluated: "
          f"{statistics.median(unique):,.0f} events/s")
    print(f"  {args.unique} events of one repeated type (baseline): "
          f"{statistics.median(repeated):,.0f} events/s "
          f"(unique reach {statistics.median(unique) / statistics.median(repeated):.0%} of it)")


if __name__ == "__main__":
    main()
