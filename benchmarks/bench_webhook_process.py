"""``webhook.send`` through the engine with its delivery dispatcher in the engine's process
(``settings.webhook.processes: 0``, the default) and in processes of its own (1 and 2), against
the aiohttp client with 32 connections, in the same run, instant receiver.

Usage: python benchmarks/bench_webhook_process.py [--deliveries 3000] [--runs 3] [--processes 0,1,2]

Each figure is one engine started on a fresh database, ``--deliveries`` events emitted in one
transaction, one ``webhook.send`` run each; the clock stops when every delivery is
``delivered``. CPU per delivery counts the engine's process and its dispatcher processes (not
this script's polling, not the receiver). Layouts alternate run by run: the machine's load
drifts. Look at the ratios: on a machine with more cores than the engine keeps busy, processes
of their own add a core each to sending; on two cores they compete with the engine for them.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_webhooks as bench  # noqa: E402


def engine_run(url: str, n: int, processes: int) -> tuple[float, float, float]:
    """Deliveries per second, CPU ms per delivery (the engine and its children), and runs
    finished per second (every delivery queued: the engine's side of the path alone)."""
    from taskengine_core.engine import Engine
    from taskengine_core.events import Event
    from taskengine_webhook.running import _running

    db, manager = bench.applied_database(url, "bench-webhook-process-", processes)
    engine = Engine(db, manager=manager, poll_interval=0.01)
    engine.start()
    placement = _running[id(engine.info)]
    if len(placement.children) != processes:
        raise SystemExit(f"expected {processes} dispatcher process(es), found {len(placement.children)}")
    pids = [c.pid for c in placement.children]
    conn = sqlite3.connect(db)
    try:
        cpu = time.process_time()
        children = sum(bench.process_cpu_ms(p) for p in pids)
        started = time.perf_counter()
        engine.emit_many([Event("bench.event", bench.payload(i)) for i in range(n)])
        polling = time.thread_time()  # this thread's polling is the script's, not the engine's
        ran = None  # when every run had succeeded (every delivery queued)
        while conn.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
                           ).fetchone()[0] < n:
            if ran is None and conn.execute("SELECT count(*) FROM runs WHERE status = 'succeeded'"
                                            ).fetchone()[0] >= n:
                ran = time.perf_counter() - started
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        polling = time.thread_time() - polling
        children = sum(bench.process_cpu_ms(p) for p in pids) - children
        cpu_ms = (time.process_time() - cpu - polling) * 1000 + children
        logged = conn.execute("SELECT count(*) FROM webhook_attempts").fetchone()[0]
        assert logged == n, f"{logged} attempts logged for {n} deliveries"
    finally:
        conn.close()
        engine.stop(grace=5)
    return n / elapsed, cpu_ms / n, n / (ran or elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", default="0,1,2",
                        help="settings.webhook.processes values to compare (comma-separated)")
    args = parser.parse_args()
    n, layouts = args.deliveries, [int(p) for p in args.processes.split(",")]
    print(f"bench_webhook_process: {n} deliveries, instant receiver, median of {args.runs}, "
          f"os.cpu_count()={os.cpu_count()}")
    proc, url = bench.start_server(0.0)
    client_rates: list[float] = []
    figures: dict[int, list[tuple[float, float, float]]] = {p: [] for p in layouts}
    try:
        for _ in range(args.runs):  # alternated: the machine's load drifts
            client_rates.append(bench.aiohttp_client(url, n))
            for processes in layouts:
                figures[processes].append(engine_run(url, n, processes))
    finally:
        proc.kill()
        proc.wait()
    client = statistics.median(client_rates)
    print(f"  {'aiohttp, 32 connections':<44} {client:>8,.0f}/s   1.00x aiohttp-32")
    base = statistics.median(r for r, _, _ in figures[layouts[0]])
    for processes, runs in figures.items():
        rate = statistics.median(r for r, _, _ in runs)
        cpu = statistics.median(c for _, c, _ in runs)
        queued = statistics.median(q for _, _, q in runs)
        name = ("engine, dispatcher in its process" if processes == 0 else
                f"engine, dispatcher in {processes} process(es)")
        print(f"  {name:<44} {rate:>8,.0f}/s   {rate / client:5.2f}x aiohttp-32   "
              f"{rate / base:5.2f}x processes={layouts[0]}   CPU {cpu:.3f} ms/delivery   "
              f"runs done {queued:,.0f}/s   (runs: {', '.join(f'{r:,.0f}' for r, _, _ in runs)})")


if __name__ == "__main__":
    main()
