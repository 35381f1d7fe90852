"""What-if: ``webhook.send`` through the engine with the delivery dispatcher in a process of its
own (the structural fix issue 15 suggests where the GIL is the limit), against the engine as it
is and the aiohttp client with 32 connections, in the same run, instant receiver.

Usage: python benchmarks/bench_webhook_process.py [--deliveries 3000] [--runs 3]

This is a measurement of a structure, not a mode of the engine: the engine runs in this process
with its own dispatcher switched off, and a child process runs the plugin's ``Dispatcher`` on the
same SQLite database, looking for work every 5 ms (there is no wake-up across processes, and no
ride: the dispatcher makes its own commits). The clock stops when every delivery is
``delivered``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_webhooks as bench  # noqa: E402


def dispatcher_child(db: str) -> None:
    """Run the webhook plugin's dispatcher on ``db`` until standard input closes."""
    from taskengine_core.context import EngineInfo
    from taskengine_core.deliveries import open_deliveries
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.secrets import SecretResolver
    from taskengine_webhook.dispatcher import Dispatcher

    bench.rules_text("http://unused")  # sets the signing secret's environment variable
    secrets = SecretResolver(get_plugin_manager().hook)
    info = EngineInfo(deliveries=open_deliveries(db), resolve=secrets.resolve, redact=secrets.redactor.scrub)
    dispatcher = Dispatcher(info, poll=0.005)
    dispatcher.start()
    print("ready", flush=True)
    sys.stdin.read()
    dispatcher.stop()


def engine_with_dispatcher_apart(url: str, n: int) -> float:
    import sqlite3

    import taskengine_webhook.running as running
    from taskengine_core.engine import Engine
    from taskengine_core.events import Event

    db, manager = bench.applied_database(url, "bench-webhook-process-")
    start_for, stop_for = running.start_for, running.stop_for
    running.start_for = running.stop_for = lambda info: None  # this engine sends nothing itself
    child = subprocess.Popen([sys.executable, __file__, "--dispatcher-child", str(db)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    engine = Engine(db, manager=manager, poll_interval=0.01)
    try:
        assert child.stdout.readline().strip() == "ready"
        engine.start()
        conn = sqlite3.connect(db)
        started = time.perf_counter()
        engine.emit_many([Event("bench.event", bench.payload(i)) for i in range(n)])
        while conn.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
                           ).fetchone()[0] < n:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        conn.close()
    finally:
        engine.stop(grace=5)
        child.stdin.close()
        child.wait(timeout=30)
        running.start_for, running.stop_for = start_for, stop_for
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dispatcher-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dispatcher_child:
        dispatcher_child(args.dispatcher_child)
        return
    n = args.deliveries
    print(f"bench_webhook_process: {n} deliveries, instant receiver, median of {args.runs}, "
          f"os.cpu_count()={os.cpu_count()}")
    proc, url = bench.start_server(0.0)
    figures: dict[str, list[float]] = {"aiohttp, 32 connections": [], "engine as it is": [],
                                       "engine, dispatcher in its own process": []}
    try:
        for _ in range(args.runs):  # alternated: the machine's load drifts
            figures["aiohttp, 32 connections"].append(bench.aiohttp_client(url, n))
            figures["engine as it is"].append(bench.engine_run(url, n, "action"))
            figures["engine, dispatcher in its own process"].append(engine_with_dispatcher_apart(url, n))
    finally:
        proc.kill()
        proc.wait()
    client = statistics.median(figures["aiohttp, 32 connections"])
    for name, rates in figures.items():
        rate = statistics.median(rates)
        print(f"  {name:<40} {rate:>8,.0f}/s   {rate / client:5.2f}x aiohttp-32   "
              f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")


if __name__ == "__main__":
    main()
