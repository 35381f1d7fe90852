"""``GET /healthz`` latency as the runs table grows, against the queries it used to run (a scan
of every run), measured in the same run on the same database.

A real engine with its ingress on 127.0.0.1 answers the requests; the baseline runs the old
queries (``SELECT sum(status = 'pending'), sum(status = 'running') FROM runs`` and a
``count(*)`` of the inbox) on a connection of its own.

    python benchmarks/bench_healthz.py [--runs 250000] [--requests 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import requests

OLD_QUERIES = ("SELECT count(*) FROM events WHERE processed_at IS NULL",
               "SELECT sum(status = 'pending'), sum(status = 'running') FROM runs")


def fill(db_path: Path, runs: int) -> None:
    """``runs`` finished runs and 1% pending (due in the future), as a long-lived engine has."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO runs (id, task, status, trigger, not_before, created_at, finished_at) "
        "VALUES (?, 'task', ?, 'schedule', ?, ?, ?)",
        ((f"run{i:09d}", "pending" if i % 100 == 0 else "succeeded", "2999-01-01T00:00:00.000000Z",
          "2026-01-01T00:00:00.000000Z", None if i % 100 == 0 else "2026-01-01T00:00:01.000000Z")
         for i in range(runs)))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=250_000, help="rows in the runs table")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()

    from taskengine_core.engine import Engine
    from taskengine_core.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "bench.db"
        Store(db_path).close()
        fill(db_path, args.runs)
        engine = Engine(db_path)
        engine.start(listen="127.0.0.1:0")
        try:
            url = f"http://{engine.ingress.address}/healthz"
            session = requests.Session()
            body = session.get(url, timeout=60).json()
            assert body["status"] == "ok", body
            healthz = []
            for _ in range(args.requests):
                start = time.perf_counter()
                session.get(url, timeout=60).raise_for_status()
                healthz.append(time.perf_counter() - start)
            conn = sqlite3.connect(db_path)
            old = []
            for _ in range(max(5, args.requests // 5)):
                start = time.perf_counter()
                for sql in OLD_QUERIES:
                    conn.execute(sql).fetchall()
                old.append(time.perf_counter() - start)
            conn.close()
        finally:
            engine.stop(1)

    new_ms, old_ms = statistics.median(healthz) * 1000, statistics.median(old) * 1000
    print(f"python {platform.python_version()}, os.cpu_count() = {os.cpu_count()}, {args.runs} runs, "
          f"{args.requests} requests")
    print(f"GET /healthz over HTTP (median):          {new_ms:8.2f} ms  (runs_pending reported: {body['runs_pending']})")
    print(f"old queries alone, no HTTP (median, baseline): {old_ms:8.2f} ms")
    print(f"ratio: healthz takes {new_ms / old_ms:.1%} of the old queries' time")


if __name__ == "__main__":
    main()
