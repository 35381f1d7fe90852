"""Several engines on one PostgreSQL database, against one engine on SQLite, in one run.

Usage: python benchmarks/bench_cluster.py [--events 3000] [--runs 3] [--schedules 1000]
       [--skip-throughput]
The PostgreSQL server is a throwaway one started here, with fsync and synchronous commit on.

Measures, each node a separate process running an ``Engine`` with a no-op action:
- completed runs per second end to end (events committed, evaluated, claimed, run, logged) with
  1, 2 and 3 nodes on PostgreSQL, and 1 node on SQLite (the baseline, same machine, same run);
- takeover: a node holding a running run is killed with SIGKILL; the time until another node
  has taken the run over (target: within two lease periods);
- ``--schedules`` schedules due at one instant across 3 nodes: p99 from due to the committed
  run (target: under 100 ms), and that each slot fired once.

Needs PostgreSQL's server binaries (``apt-get install postgresql``) and ``taskengine-core[postgres]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve()
LEASE = 2.0  # seconds: short, so the takeover is measured in seconds


def _plugin():
    from taskengine_core.hookspecs import hookimpl

    def noop(params, ctx):
        return None

    def hold(params, ctx):
        ctx.cancelled.wait(float(params.get("seconds", 60)))

    class Plugin:
        __name__ = "bench-cluster"

        @hookimpl
        def register_actions(self, register):
            register("bench.noop", noop, schema={"type": "object"}, idempotent=True)
            register("bench.hold", hold, schema={"type": "object"}, idempotent=True)

    return Plugin()


def node_main(target: str, workers: int) -> None:
    """One node: an engine until SIGTERM."""
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager

    engine = Engine(target, manager=get_plugin_manager(extra_plugins=[_plugin()]), workers=workers)
    engine.start()
    print("ready", flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    while not stopping:
        time.sleep(0.1)
    engine.stop(5)


def start_nodes(target: str, count: int, workers: int = 8) -> list[subprocess.Popen]:
    env = {**os.environ, "TASKENGINE_LEASE_SECONDS": str(LEASE)}
    nodes = [subprocess.Popen([sys.executable, str(HERE), "--node", target, "--workers", str(workers)],
                              env=env, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    for node in nodes:
        if node.stdout.readline().strip() != "ready":
            raise SystemExit("a node did not start")
    return nodes


def stop_nodes(nodes: list[subprocess.Popen]) -> None:
    for node in nodes:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()


def apply_rules(target: str, text: str, tmp: Path) -> None:
    from taskengine_core.apply import apply_config
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import open_store

    rules = tmp / f"rules-{time.monotonic_ns()}.yaml"
    rules.write_text(text)
    store = open_store(target)
    apply_config(store, load_config([rules], get_plugin_manager(extra_plugins=[_plugin()]).registry()))
    store.close()


def count(store, sql: str, params=()) -> int:
    return store.conn.execute(sql, params).fetchone()[0]


def throughput(target: str, nodes: int, events: int, tmp: Path) -> float:
    from taskengine_core.engine import Engine
    from taskengine_core.events import Event
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.store import open_store

    apply_rules(target, "tasks:\n  t: {action: bench.noop, concurrency: parallel}\n"
                        "events:\n  r: {on: work, tasks: [t]}\n", tmp)
    running = start_nodes(target, nodes)
    try:
        sender = Engine(target, manager=get_plugin_manager(extra_plugins=[_plugin()]), wake_listener=False)
        batch = [Event("work", {"n": i}) for i in range(events)]
        store = open_store(target)
        start = time.perf_counter()
        for i in range(0, events, 200):
            sender.emit_many(batch[i:i + 200])
        while count(store, "SELECT count(*) FROM runs WHERE status = 'succeeded'") < events:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        assert count(store, "SELECT count(*) FROM attempts") == events, "a run ran twice"
        return events / elapsed
    finally:
        stop_nodes(running)


def takeover(target: str, tmp: Path) -> float:
    """Seconds from SIGKILL of the node running a run until another node has claimed it."""
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.store import open_store

    apply_rules(target, "tasks:\n  slow: {action: bench.hold, with: {seconds: 600}, retry: {attempts: 3}}\n"
                        "events:\n  r: {on: hold, tasks: [slow]}\n", tmp)
    running = start_nodes(target, 3)
    try:
        Engine(target, manager=get_plugin_manager(extra_plugins=[_plugin()]), wake_listener=False).emit("hold")
        store = open_store(target)
        owner = None
        while owner is None:
            row = store.conn.execute("SELECT lease_owner FROM runs WHERE status = 'running'").fetchone()
            owner = row[0] if row else None
            time.sleep(0.01)
        pid = int(owner.split(":")[1])
        victim = next(n for n in running if n.pid == pid)
        victim.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        while True:  # taken over: recovered from the dead owner (then retried after its backoff)
            row = store.conn.execute("SELECT lease_owner, attempt FROM runs").fetchone()
            if row[0] != owner:
                return time.perf_counter() - killed
            time.sleep(0.01)
    finally:
        stop_nodes(running)


def schedules_due(target: str, n: int, tmp: Path) -> dict:
    """``n`` schedules due at the next whole minute, 3 nodes: due → committed run."""
    from taskengine_core.clock import from_iso
    from taskengine_core.store import open_store

    lines = ["schedules:"] + [f"  s{i}: {{cron: '* * * * *', timezone: UTC}}" for i in range(n)]
    lines += ["tasks:"] + [f"  t{i}: {{action: bench.noop, schedules: [s{i}], concurrency: parallel}}"
                           for i in range(n)]
    apply_rules(target, "\n".join(lines) + "\n", tmp)
    running = start_nodes(target, 3)
    try:
        now = datetime.now(timezone.utc)
        wait = 60 - now.second - now.microsecond / 1e6
        if wait < 10:  # too close to the boundary for every node to have loaded: take the next
            wait += 60
        store = open_store(target)
        due_at = time.time() + wait
        time.sleep(max(0.0, wait - 0.5))
        committed: list[float] = []  # ms after due when each run became visible (committed)
        seen = 0
        while seen < n and time.time() < due_at + 30:
            now_seen = count(store, "SELECT count(*) FROM runs WHERE schedule IS NOT NULL")
            if now_seen > seen:
                committed += [(time.time() - due_at) * 1000] * (now_seen - seen)
                seen = now_seen
            time.sleep(0.001)
        time.sleep(3)
        rows = store.conn.execute("SELECT slot, created_at, started_at FROM runs WHERE schedule IS NOT NULL").fetchall()
        latest_slot = max(r[0] for r in rows)

        def ms(later, slot):
            return (from_iso(later) - from_iso(slot)).total_seconds() * 1000

        fired = sorted(ms(c, s) for s, c, _ in rows if s == latest_slot)
        started = sorted(ms(b, s) for s, _, b in rows if s == latest_slot and b)
        per_slot = count(store, "SELECT count(*) FROM (SELECT schedule, slot FROM runs WHERE slot = ? "
                                "GROUP BY schedule, slot HAVING count(*) > 1) AS doubled", (latest_slot,))
        return {"committed_p50_ms": committed[len(committed) // 2] if committed else float("nan"),
                "committed_p99_ms": committed[int(len(committed) * 0.99) - 1] if committed else float("nan"),
                "fired": len(fired), "p50_ms": fired[len(fired) // 2], "p99_ms": fired[int(len(fired) * 0.99) - 1],
                "start_p50_ms": started[len(started) // 2], "start_p99_ms": started[int(len(started) * 0.99) - 1],
                "doubled": per_slot}
    finally:
        stop_nodes(running)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--node", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--skip-throughput", action="store_true", help="only takeover and schedules")
    args = parser.parse_args()
    if args.node:
        node_main(args.node, args.workers)
        return
    from taskengine_core.testing.postgres import PostgresServer

    server = PostgresServer()
    server.start(durable=True)
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            rates: dict[str, list[float]] = {}
            for _ in range(0 if args.skip_throughput else args.runs):
                rates.setdefault("sqlite, 1 node", []).append(
                    throughput(str(tmp / f"lite-{time.monotonic_ns()}.db"), 1, args.events, tmp))
                for nodes in (1, 2, 3):
                    rates.setdefault(f"postgresql, {nodes} node(s)", []).append(
                        throughput(server.create_database(), nodes, args.events, tmp))
            print(f"cpu_count={os.cpu_count()} events={args.events} runs={args.runs} (medians)")
            base = statistics.median(rates["sqlite, 1 node"]) if rates else 1
            for name, values in rates.items():
                rate = statistics.median(values)
                print(f"  {name:24s} {rate:8,.0f} completed runs/s  ({rate / base:.2f} of SQLite)")
            takeovers = [takeover(server.create_database(), tmp) for _ in range(args.runs)]
            print(f"  takeover after SIGKILL: median {statistics.median(takeovers):.2f} s, max "
                  f"{max(takeovers):.2f} s (lease {LEASE:g} s; target within {2 * LEASE:g} s)")
            if args.schedules:
                due = schedules_due(server.create_database(), args.schedules, tmp)
                print(f"  {due['fired']} schedules due at one instant on 3 nodes: due -> committed (visible to "
                      f"a reader polling every 1 ms) p50 {due['committed_p50_ms']:.0f} ms, p99 "
                      f"{due['committed_p99_ms']:.0f} ms (target < 100 ms); the run rows' own time: p50 "
                      f"{due['p50_ms']:.0f} ms, p99 {due['p99_ms']:.0f} ms; due -> run "
                      f"started (claimed, committed) p50 {due['start_p50_ms']:.0f} ms, p99 "
                      f"{due['start_p99_ms']:.0f} ms; slots fired twice: {due['doubled']}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
