"""How soon a write transaction gets SQLite's write lock from another process: the store's
``Store.write`` (tries every 0.1 to 1 ms) against plain connections left to SQLite's busy
handler (sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries), in the same run.

Usage: python benchmarks/bench_lock_handoff.py [--seconds 3] [--hold 0.004] [--gap 0.001]
       [--pause 0.002] [--rounds 3]

Another process (the "holder", standing in for an engine writing its steps) keeps taking the
write lock for ``--hold`` seconds, with ``--gap`` seconds between its transactions. This
process (standing in for a dispatcher process) writes a small transaction every ``--pause``
seconds for ``--seconds``. Both sides take the lock the same way: both with ``Store.write``,
or both with plain connections. The figures are how many transactions each side committed and
how long this side's waited for the lock (median and p99). The two ways alternate round by
round; medians of the rounds.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HOLDER = r'''
import contextlib, sqlite3, sys, time
path, hold, gap, way = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
if way == "store":
    from taskengine_core.store.db import Store
    store = Store(path, migrate=False)
    conn, transaction = store.conn, store.write
else:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)

    @contextlib.contextmanager
    def transaction():
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("COMMIT")
print("ready", flush=True)
while True:
    with transaction():
        end = time.monotonic() + hold
        conn.execute("INSERT INTO held(x) VALUES (1)")
        while time.monotonic() < end:
            conn.execute("INSERT INTO filler(x) VALUES (1)")
    time.sleep(gap)
'''


def plain_writer(path: str):
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")

    def write() -> float:
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        waited = time.perf_counter() - started
        conn.execute("INSERT INTO small(x) VALUES (1)")
        conn.execute("COMMIT")
        return waited

    return write


def store_writer(path: str):
    from taskengine_core.store.db import Store

    store = Store(path, migrate=False)
    begin = store._begin_immediate

    def timed_begin():
        nonlocal waited
        started = time.perf_counter()
        begin()
        waited = time.perf_counter() - started

    waited = 0.0
    store._begin_immediate = timed_begin

    def write() -> float:
        with store.write() as db:
            db.conn.execute("INSERT INTO small(x) VALUES (1)")
        return waited

    return write


def measure(way: str, path: str, args) -> tuple[int, int, float, float]:
    """(this side's transactions, the holder's, this side's median and p99 wait in ms)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path, str(args.hold), str(args.gap), way],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        write = (store_writer if way == "store" else plain_writer)(path)
        held = count(path, "held")
        waits = []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            waits.append(write())
            time.sleep(args.pause)
        held = count(path, "held") - held
    finally:
        holder.kill()
        holder.wait()
    waits.sort()
    return len(waits), held, statistics.median(waits) * 1000, waits[int(len(waits) * 0.99)] * 1000


def count(path: str, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--hold", type=float, default=0.004)
    parser.add_argument("--gap", type=float, default=0.001)
    parser.add_argument("--pause", type=float, default=0.002)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-lock-")
    path = os.path.join(folder, "lock.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE filler(x)")
    conn.execute("CREATE TABLE small(x)")
    conn.execute("CREATE TABLE held(x)")
    conn.close()
    ways = {"SQLite's busy handler": "plain", "Store.write": "store"}
    figures: dict[str, list[tuple[int, int, float, float]]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            figures[name].append(measure(way, path, args))
    print(f"bench_lock_handoff: another process holds the lock {args.hold * 1000:g} ms, then "
          f"{args.gap * 1000:g} ms free; this one writes every {args.pause * 1000:g} ms; "
          f"{args.seconds:g} s per round, median of {args.rounds}, os.cpu_count()={os.cpu_count()}")
    base = statistics.median(f[0] for f in figures["SQLite's busy handler"])
    for name, runs in figures.items():
        mine = statistics.median(f[0] for f in runs)
        print(f"  {name:<24} this side {mine / args.seconds:>6,.0f} transactions/s ({mine / base:.2f}x), "
              f"the holder {statistics.median(f[1] for f in runs) / args.seconds:>4,.0f}/s   "
              f"wait for the lock: median {statistics.median(f[2] for f in runs):.2f} ms, "
              f"p99 {statistics.median(f[3] for f in runs):.2f} ms")


if __name__ == "__main__":
    main()
