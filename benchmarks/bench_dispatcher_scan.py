"""What one look of the webhook dispatcher at every destination (its scan: which have deliveries
due now) costs with many webhooks configured and few holding deliveries: the store's way (the
destinations with pending deliveries, found by skipping through the index, then an indexed
lookup each, each part one statement) against one statement per configured webhook (the way
before), in the same run.

Usage: python benchmarks/bench_dispatcher_scan.py [--webhooks 1000] [--holding 5]
       [--deliveries 2000] [--repeat 50] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from taskengine_core.clock import to_iso
    from taskengine_core.store import deliveries as queue, open_store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=1000)
    parser.add_argument("--holding", type=int, default=5, help="webhooks with deliveries waiting")
    parser.add_argument("--deliveries", type=int, default=2000, help="deliveries each of those holds")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--db", help="a database to use (default: a new SQLite file)")
    args = parser.parse_args()
    target = args.db or os.path.join(tempfile.mkdtemp(prefix="bench-scan-"), "scan.db")
    store = open_store(target)
    now = to_iso(datetime.now(timezone.utc))
    names = [f"hook{i:05d}" for i in range(args.webhooks)]
    rows = [{"id": f"msg_{w}_{i}", "webhook": names[w], "type": "t", "body": "{}",
             "content_type": "application/json", "max_attempts": 3, "headers": {}}
            for w in range(args.holding) for i in range(args.deliveries)]
    with store.write() as db:
        queue.enqueue(db.conn, rows, now)
    conn, configured = store.conn, set(names)

    def every_webhook() -> set[str]:  # the statement the store ran before, once per webhook
        return {name for name in names if conn.execute(
            "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND webhook = ? "
            "AND next_attempt_at <= ? LIMIT 1", (name, now)).fetchone()}

    def those_holding() -> set[str]:
        return queue.due_webhooks(conn, now, [n for n in queue.pending_webhooks(conn) if n in configured])

    times: dict[str, list[float]] = {"one lookup per webhook (before)": [], "those holding deliveries (now)": []}
    for _ in range(3):  # alternated
        for (name, runs), way in zip(times.items(), (every_webhook, those_holding)):
            assert len(way()) == args.holding
            started = time.perf_counter()
            for _ in range(args.repeat):
                way()
            runs.append((time.perf_counter() - started) / args.repeat * 1000)
    store.close()
    print(f"bench_dispatcher_scan: {args.webhooks} webhooks, {args.holding} holding {args.deliveries} "
          f"deliveries each, {'PostgreSQL' if args.db else 'SQLite'}, median of 3, "
          f"os.cpu_count()={os.cpu_count()}")
    base = statistics.median(next(iter(times.values())))
    for name, runs in times.items():
        ms = statistics.median(runs)
        print(f"  {name:<34} {ms:7.3f} ms a scan   {base / ms:6.1f}x")


if __name__ == "__main__":
    main()
