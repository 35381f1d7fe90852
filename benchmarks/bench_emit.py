"""Emit → committed run rows (issue 15): events through ``Engine.emit_many``, each matching one
rule, then the evaluator's pass that inserts their runs, batch by batch, against a raw SQLite
baseline measured in the same run: the same inbox INSERT of pre-serialised rows, one
transaction per batch, on a database made by the store (WAL, same ``synchronous`` setting).

Also printed: the engine's own SQL with values precomputed (its ceiling) and the floor of the three
records any design must write (event, run, decision) in one transaction.

Usage: python benchmarks/bench_emit.py [--events 20000] [--batch 500] [--runs 5] [--profile]

Both sides run in this one thread (the engine is not started, so no worker claims the runs):
the figure is the CPU path of emitting and evaluating, not thread hand-over. The store's
``synchronous`` setting (FULL unless TASKENGINE_SYNCHRONOUS says otherwise) applies to both.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from taskengine_core.hookspecs import hookimpl


def noop(params, ctx):
    return None


class NoopPlugin:
    __name__ = "bench-noop"

    @hookimpl
    def register_actions(self, register):
        register("bench.noop", noop, schema={"type": "object"}, idempotent=True)


def rules_text(n_rules: int = 1_000, n_types: int = 100) -> str:
    lines = ["tasks:"]
    for i in range(10):
        lines.append(f"  t{i}: {{action: bench.noop, concurrency: parallel}}")
    lines.append("events:")
    for i in range(n_rules):
        lines.append(f"  r{i}: {{on: type-{i % n_types}, when: {{data.user: u{i}}}, tasks: [t{i % 10}]}}")
    return "\n".join(lines) + "\n"


def make_events(n: int, with_ids: bool):
    from taskengine_core.events import Event

    return [Event(f"type-{i % 100}", {"user": f"u{i % 1000}", "n": i, "note": "hello world"},
                  source="bench", source_id=f"ev-{i}" if with_ids else None) for i in range(n)]


def engine_rate(tmp: Path, n_events: int, batch: int, with_ids: bool,
                profile: cProfile.Profile | None = None) -> tuple[float, float]:
    """Events/s from emit_many to their runs committed by the evaluator, and CPU microseconds
    (this process) per event."""
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
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
    engine = Engine(db, manager=manager, workers=1)
    engine._loop_thread = object()  # as if running: emit wakes a loop instead of poking the file
    engine._next_evaluation = float("inf")
    events = make_events(n_events, with_ids)
    if profile:
        profile.enable()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, n_events, batch):
        engine.emit_many(events[i:i + batch])
        engine.evaluator.process_pending(engine.store, engine.runtime, limit=batch)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if profile:
        profile.disable()
    runs = engine.store.conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert runs == n_events, (runs, n_events)
    engine.store.close()
    return n_events / elapsed, cpu / n_events * 1e6


NOW = "2026-01-01T00:00:00.000000Z"
INSERT_EVENTS = ("INSERT INTO events (id, type, source, source_id, data, time, received_at, processed_at, "
                 "duplicate_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_RUNS = ("INSERT INTO runs (id, task, status, trigger, event_id, rule, schedule, slot, params, "
               "not_before, created_at, max_attempts, depth) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_DECISIONS = "INSERT INTO decisions (time, decision, reason, event_id, rule, task, run_id) VALUES (?, ?, ?, ?, ?, ?, ?)"


def precomputed_rows(events: list, processed_at: str | None) -> tuple[list, list, list]:
    """The inbox, run and decision rows of ``events`` (each matching one rule), every value
    ready, for the floors."""
    n = len(events)
    rows = [(f"{i:020x}", e.type, e.source, e.source_id,
             json.dumps(e.data, separators=(",", ":"), ensure_ascii=False), NOW, NOW, processed_at, None)
            for i, e in enumerate(events)]
    runs = [(f"r{i:019x}", f"t{i % 10}", "pending", "event", f"{i:020x}", f"r{i}", None, None, None, NOW, NOW, 1, 0)
            for i in range(n)]
    decisions = [(NOW, "matched", "matched", f"{i:020x}", f"r{i}", f"t{i % 10}", f"r{i:019x}") for i in range(n)]
    return rows, runs, decisions


def fresh_database(tmp: Path, kind: str) -> sqlite3.Connection:
    """A connection of its own to a new database made by the store (its schema and indexes),
    in WAL mode at the store's ``synchronous`` setting."""
    from taskengine_core.store import Store
    from taskengine_core.store.db import _synchronous

    db = tmp / f"{kind}-{time.monotonic_ns()}.db"
    Store(db).close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {_synchronous()}")
    return conn


def batches_rate(conn, n_events: int, batch: int, statements: list[tuple[str, list]]) -> float:
    """Rows per second of ``statements`` (``(INSERT, rows)``), ``batch`` rows of each per
    transaction; closes ``conn``."""
    start = time.perf_counter()
    for i in range(0, n_events, batch):
        conn.execute("BEGIN IMMEDIATE")
        for statement, rows in statements:
            conn.executemany(statement, rows[i:i + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n_events / elapsed


def raw_rate(tmp: Path, n_events: int, batch: int, with_ids: bool) -> float:
    """The same inbox INSERT of pre-serialised rows, one transaction per batch."""
    conn = fresh_database(tmp, "raw")
    rows, _, _ = precomputed_rows(make_events(n_events, with_ids), None)
    return batches_rate(conn, n_events, batch, [(INSERT_EVENTS, rows)])


def sql_floor_rate(tmp: Path, n_events: int, batch: int, with_ids: bool) -> float:
    """The engine's own statements with every value precomputed (no Python logic): per batch the
    inbox insert (and duplicate check) in one transaction, then the read, the run and decision
    inserts and the processed mark in a second. The ceiling of the engine path's rate."""
    conn = fresh_database(tmp, "floor")
    events = make_events(n_events, with_ids)
    rows, runs, decisions = precomputed_rows(events, None)
    start = time.perf_counter()
    for i in range(0, n_events, batch):
        conn.execute("BEGIN IMMEDIATE")
        if with_ids:
            keys = [(e.source, e.source_id) for e in events[i:i + batch]]
            for j in range(0, len(keys), 400):
                chunk = keys[j:j + 400]
                conn.execute(f"WITH k(s, i) AS (VALUES {', '.join(['(?, ?)'] * len(chunk))}) SELECT e.id FROM k "
                             "CROSS JOIN events e WHERE e.source = k.s AND e.source_id = k.i AND e.received_at >= ? "
                             "AND e.duplicate_of IS NULL", [*(x for key in chunk for x in key), NOW]).fetchall()
        conn.executemany(INSERT_EVENTS, rows[i:i + batch])
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        last = conn.execute("SELECT max(seq) FROM events WHERE processed_at IS NULL").fetchone()[0]
        conn.execute("SELECT group_concat(data) FROM events WHERE processed_at IS NULL").fetchone()
        conn.executemany(INSERT_RUNS, runs[i:i + batch])
        conn.executemany(INSERT_DECISIONS, decisions[i:i + batch])
        conn.execute("UPDATE events SET processed_at = ? WHERE processed_at IS NULL AND seq <= ?", (NOW, last))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n_events / elapsed


def rows_floor_rate(tmp: Path, n_events: int, batch: int, with_ids: bool) -> float:
    """The floor of any design that keeps the engine's records: per batch ONE transaction that
    inserts the inbox rows already marked processed, their run rows and their decision rows
    (the three records the engine promises for an event that matched), values precomputed, no
    duplicate check, no read back, no processed-mark UPDATE. What SQLite itself allows."""
    conn = fresh_database(tmp, "rows")
    rows, runs, decisions = precomputed_rows(make_events(n_events, with_ids), NOW)
    return batches_rate(conn, n_events, batch,
                        [(INSERT_EVENTS, rows), (INSERT_RUNS, runs), (INSERT_DECISIONS, decisions)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top entries of the engine side")
    args = parser.parse_args()
    from taskengine_core.store.db import _synchronous

    print(f"nproc={os.cpu_count()} events={args.events} batch={args.batch} runs={args.runs} "
          f"synchronous={_synchronous()} (WAL)")
    with tempfile.TemporaryDirectory() as tmp:
        for with_ids in (False, True):
            engine, raw, cpu, floor, rows_floor = [], [], [], [], []
            for _ in range(args.runs):  # interleaved: both sides see the same machine load
                rate, per_event = engine_rate(Path(tmp), args.events, args.batch, with_ids)
                engine.append(rate)
                cpu.append(per_event)
                raw.append(raw_rate(Path(tmp), args.events, args.batch, with_ids))
                floor.append(sql_floor_rate(Path(tmp), args.events, args.batch, with_ids))
                rows_floor.append(rows_floor_rate(Path(tmp), args.events, args.batch, with_ids))
            e, r = statistics.median(engine), statistics.median(raw)
            label = "with source ids (duplicate check)" if with_ids else "without source ids"
            print(f"  {label}:")
            print(f"    emit_many -> committed run rows: {e:,.0f} events/s "
                  f"({statistics.median(cpu):.0f} us of CPU per event)")
            print(f"    raw inbox insert (baseline):     {r:,.0f} rows/s")
            f = statistics.median(floor)
            print(f"    the engine's SQL alone, values precomputed (its ceiling): {f:,.0f} events/s "
                  f"({f / r:.1%} of the raw insert)")
            g = statistics.median(rows_floor)
            print(f"    the three records alone (event, run, decision), one transaction, values precomputed "
                  f"(SQLite's floor for them): {g:,.0f} events/s ({g / r:.1%} of the raw insert)")
            print(f"    ratio: {e / r:.1%} of the raw insert (target >= 40%), {e / f:.1%} of its SQL ceiling, "
                  f"{e / g:.1%} of SQLite's floor for its records")
        if args.profile:
            prof = cProfile.Profile()
            engine_rate(Path(tmp), args.events, args.batch, True, prof)
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
