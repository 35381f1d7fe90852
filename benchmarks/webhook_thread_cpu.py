"""CPU per webhook delivery, thread by thread: where the engine's process spends it.

Usage: python benchmarks/webhook_thread_cpu.py [--deliveries 3000] [--runs 3] [--path enqueue|action]

Runs the engine as ``bench_webhooks.py`` does (same rules, same ~1 KB bodies, the same instant
receiver in another process) and reads each thread's own CPU clock (``pthread_getcpuclockid``)
before and after the deliveries: the dispatcher's asyncio thread (``taskengine-webhooks``: the
HTTP attempts), its database thread (``taskengine-webhooks-db``: claims and attempt records), the
engine's loop (``taskengine-loop``: events, rules, the executor's steps, rides of the
dispatcher) and its workers. The baseline, measured in the same run: the CPU per request of the
bare aiohttp client with 32 connections (``bench_webhooks.aiohttp_client``), i.e. what the
HTTP part of the dispatcher's thread cannot go below. Medians of ``--runs``. An A/B of two trees:
run it twice, once with ``PYTHONPATH`` at the other tree.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sqlite3
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_webhooks as bench  # noqa: E402


def cpu_by_thread() -> collections.Counter:
    out: collections.Counter = collections.Counter()
    for thread in threading.enumerate():
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            out[re.sub(r"[-_]?\d+(_\d+)?$", "", thread.name)] += time.clock_gettime(clock)
        except (OSError, TypeError):  # the thread ended meanwhile
            continue
    return out


def engine_threads(url: str, n: int, path: str) -> dict[str, float]:
    """µs of CPU per delivery per thread (by name, numbers stripped), and the rate."""
    from taskengine_core.engine import Engine
    from taskengine_core.events import Event
    import taskengine_webhook

    db, manager = bench.applied_database(url, "bench-webhook-threads-")
    engine = Engine(db, manager=manager, poll_interval=0.01)
    engine.start()
    conn = sqlite3.connect(db)
    try:
        time.sleep(0.2)  # the engine's start-up is not the deliveries'
        before, own, started = cpu_by_thread(), time.thread_time(), time.perf_counter()
        if path == "action":
            engine.emit_many([Event("bench.event", bench.payload(i)) for i in range(n)])
        else:
            taskengine_webhook.enqueue(str(db), "sink", [bench.payload(i) for i in range(n)])
        queueing = time.thread_time() - own  # this thread's part: emitting or enqueueing
        while conn.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
                           ).fetchone()[0] < n:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        after = cpu_by_thread()
    finally:
        conn.close()
        engine.stop(grace=5)
    out = {name: (after[name] - before.get(name, 0.0)) / n * 1e6 for name in after
           if name != "MainThread"}
    out["(main thread: emit or enqueue)"] = queueing / n * 1e6
    out["total"] = sum(out.values())
    out["deliveries/s"] = n / elapsed
    return out


def client_cpu(url: str, n: int) -> float:
    cpu = time.process_time()
    bench.aiohttp_client(url, n)
    return (time.process_time() - cpu) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--path", choices=["enqueue", "action"], default="enqueue")
    args = parser.parse_args()
    proc, url = bench.start_server(0.0)
    try:
        bench.aiohttp_client(url, 200)  # imports and first connections: not a request's cost
        runs, clients = [], []
        for _ in range(args.runs):  # alternated
            clients.append(client_cpu(url, args.deliveries))
            runs.append(engine_threads(url, args.deliveries, args.path))
    finally:
        proc.kill()
        proc.wait()
    print(f"webhook_thread_cpu: {args.path} path, {args.deliveries} deliveries, median of {args.runs}, "
          f"nproc {os.cpu_count()}, Python {sys.version.split()[0]}")
    client = statistics.median(clients)
    print(f"  {'baseline: aiohttp-32 client, CPU per request':<48} {client:7.1f} µs")
    names = sorted(set().union(*runs) - {"total", "deliveries/s"})
    for name in names + ["total"]:
        value = statistics.median(r.get(name, 0.0) for r in runs)
        if value >= 0.05 or name == "total":
            print(f"  {name:<48} {value:7.1f} µs/delivery   {value / client:5.2f} x the client")
    print(f"  {'deliveries/s':<48} {statistics.median(r['deliveries/s'] for r in runs):7,.0f}")


if __name__ == "__main__":
    main()
