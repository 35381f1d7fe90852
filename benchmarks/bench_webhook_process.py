"""Webhook deliveries with the engine's dispatcher in the engine's process
(``settings.webhook.processes: 0``, the default) and in processes of its own, against the
aiohttp client with 32 connections, in the same run, instant receiver.

Usage: python benchmarks/bench_webhook_process.py [--deliveries 3000] [--runs 3]
       [--processes 0,1,2] [--path action|enqueue]

Each figure is one engine started on a fresh database. ``--path action`` (the default):
``--deliveries`` events emitted in one transaction, one ``webhook.send`` run each. ``--path
enqueue``: the deliveries queued in one transaction (``taskengine_webhook.enqueue``), so the
dispatchers alone are measured. The clock stops at the last delivery's ``finished_at`` (the runs'
at the last run's), read from the rows once every delivery is ``delivered``: the script's polling,
every 50 ms, neither rounds the figure nor takes much of the machine.

CPU per delivery is given for the engine's process (not this script's polling) and for its
dispatcher processes, so that the most a layout could send on this machine's cores, if every
part kept its own core busy, reads off the figures: cores / (engine + dispatchers). "Machine
busy" is every process's CPU on the machine during the run (``/proc/stat``), in cores: near the
core count, the layout is held by the CPU, whatever takes it. Layouts alternate run by run: the
machine's load drifts.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_webhooks as bench  # noqa: E402


@dataclass
class Figure:
    rate: float  # deliveries per second
    engine_ms: float  # CPU of the engine's process per delivery
    children_ms: float  # CPU of its dispatcher processes per delivery
    runs_rate: float  # action path: runs finished per second (every delivery queued)
    busy: float  # cores the whole machine kept busy during the run


def machine_jiffies() -> tuple[int, int]:
    """(busy, all) CPU time of the whole machine so far, in clock ticks (Linux /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_cores(busy: int, ticks: int) -> float:
    return (os.cpu_count() or 1) * busy / ticks


def last_finished(conn, table: str) -> float:
    """The latest ``finished_at`` in ``table``, as a time.time() value."""
    from taskengine_core.clock import from_iso

    return from_iso(conn.execute(f"SELECT max(finished_at) FROM {table}").fetchone()[0]).timestamp()


def engine_run(url: str, n: int, processes: int, path: str) -> Figure:
    import taskengine_webhook
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
        busy, ticks = machine_jiffies()
        started = time.time()
        if path == "action":
            engine.emit_many([Event("bench.event", bench.payload(i)) for i in range(n)])
        else:
            taskengine_webhook.enqueue(engine.deliveries, "sink", [bench.payload(i) for i in range(n)])
        polling = time.thread_time()  # this thread's polling is the script's, not the engine's
        while conn.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
                           ).fetchone()[0] < n:
            time.sleep(0.05)
        polling = time.thread_time() - polling
        children = sum(bench.process_cpu_ms(p) for p in pids) - children
        engine_ms = (time.process_time() - cpu - polling) * 1000
        busy, ticks = (b - a for b, a in zip(machine_jiffies(), (busy, ticks)))
        elapsed = last_finished(conn, "webhook_deliveries") - started
        ran = last_finished(conn, "runs") - started if path == "action" else elapsed
        logged = conn.execute("SELECT count(*) FROM webhook_attempts").fetchone()[0]
        assert logged == n, f"{logged} attempts logged for {n} deliveries"
    finally:
        conn.close()
        engine.stop(grace=5)
    return Figure(n / elapsed, engine_ms / n, children / n, n / ran, busy_cores(busy, ticks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", default="0,1,2",
                        help="settings.webhook.processes values to compare (comma-separated)")
    parser.add_argument("--path", choices=("action", "enqueue"), default="action")
    args = parser.parse_args()
    n, layouts, cores = args.deliveries, [int(p) for p in args.processes.split(",")], os.cpu_count()
    print(f"bench_webhook_process: {n} deliveries, --path {args.path}, instant receiver, "
          f"median of {args.runs}, os.cpu_count()={cores}")
    proc, url = bench.start_server(0.0)
    client_rates: list[float] = []
    client_busy: list[float] = []  # cores the machine kept busy while the client ran
    figures: dict[int, list[Figure]] = {p: [] for p in layouts}
    try:
        for _ in range(args.runs):  # alternated: the machine's load drifts
            busy, ticks = machine_jiffies()
            client_rates.append(bench.aiohttp_client(url, n))
            client_busy.append(busy_cores(*(b - a for b, a in zip(machine_jiffies(), (busy, ticks)))))
            for processes in layouts:
                figures[processes].append(engine_run(url, n, processes, args.path))
    finally:
        proc.kill()
        proc.wait()
    client = statistics.median(client_rates)
    print(f"  {'aiohttp, 32 connections':<38} {client:>8,.0f}/s   1.00x aiohttp-32   "
          f"machine busy {statistics.median(client_busy):.2f} of {cores} cores")
    base = statistics.median(f.rate for f in figures[layouts[0]])
    for processes, runs in figures.items():
        rate = statistics.median(f.rate for f in runs)
        engine_ms = statistics.median(f.engine_ms for f in runs)
        children_ms = statistics.median(f.children_ms for f in runs)
        busy = statistics.median(f.busy for f in runs)
        name = ("dispatcher in the engine's process" if processes == 0 else
                f"dispatcher in {processes} process(es)")
        line = (f"  {name:<38} {rate:>8,.0f}/s   {rate / client:4.2f}x aiohttp-32   "
                f"{rate / base:4.2f}x processes={layouts[0]}   CPU ms/delivery: engine "
                f"{engine_ms:.3f} + dispatchers {children_ms:.3f}   at most "
                f"{cores * 1000 / (engine_ms + children_ms):,.0f}/s on {cores} cores   "
                f"machine busy {busy:.2f} of {cores} cores")
        if args.path == "action":
            line += f"   runs done {statistics.median(f.runs_rate for f in runs):,.0f}/s"
        print(line + f"   (runs: {', '.join(f'{f.rate:,.0f}' for f in runs)})")


if __name__ == "__main__":
    main()
