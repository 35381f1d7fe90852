"""Events accepted per second by the HTTP ingress, against the same aiohttp setup answering a
constant 202 (no auth, no validation, no database): the ceiling of the HTTP stack itself.

16 keep-alive connections on loopback, driven by a small raw HTTP/1.1 client in separate
processes (so it does not share the server's GIL). The engine is started normally
(``engine.start(listen=...)``) with no rules; only ``settings.ingress.rate`` is raised so the
per-client rate limit (all clients are 127.0.0.1) does not cap the figure. Every 202 means the
event was committed (group commit); the inbox row count is checked after each run.

    python benchmarks/bench_ingress.py [--events 10000] [--connections 16] [--clients 1] [--runs 5]
                                      [--compare-synchronous] [--dir PATH] [--postgres]

``--compare-synchronous`` also measures, in the same runs, the ingress with SQLite's
``synchronous=NORMAL`` (the WAL is synced only at checkpoints: a power loss can lose the last
acknowledged events) against the default ``FULL`` (every commit synced). Each run starts a fresh
engine per setting, in alternating order. ``--dir`` puts the databases on that file system
(the default temporary directory may be a RAM disk, where a sync costs nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

TOKEN = "bench-token-0123456789"


# -- the client (runs in its own processes) ----------------------------------------------------

async def _connection(reader, writer, requests: list[bytes], statuses: list[int]) -> None:
    for request in requests:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        statuses.append(int(head[9:12]))
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
    writer.close()


def _client(host: str, port: int, per_conn: list[list[bytes]], ready, go, results) -> None:
    async def main() -> list[int]:
        statuses: list[int] = []
        connections = [await asyncio.open_connection(host, port) for _ in per_conn]
        ready.put(True)
        go.wait()  # blocks the loop, which has nothing else to do yet
        await asyncio.gather(*(_connection(r, w, reqs, statuses) for (r, w), reqs in zip(connections, per_conn)))
        return statuses

    results.put(asyncio.run(main()))


def _requests(host: str, port: int, run: int, count: int) -> list[bytes]:
    out = []
    for n in range(count):
        body = json.dumps({"type": "user.login", "source": "bench", "id": f"{run}-{n}",
                           "data": {"user": f"user-{n % 1000}", "n": n}}).encode()
        out.append(b"POST /events HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                   b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                   % (host.encode(), port, TOKEN.encode(), len(body), body))
    return out


def drive(address: str, run: int, events: int, connections: int, clients: int) -> tuple[float, int]:
    """Send ``events`` requests over ``connections`` keep-alive connections; (seconds, 202s)."""
    host, port = address.rsplit(":", 1)
    reqs = _requests(host, int(port), run, events)
    per_conn = [reqs[i::connections] for i in range(connections)]
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(host, int(port), per_conn[i::clients], ready, go, results))
             for i in range(clients)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=60)  # every client process has started and connected
    start = time.perf_counter()
    go.set()
    statuses = [s for _ in procs for s in results.get(timeout=300)]
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.join()
    bad = [s for s in statuses if s != 202]
    if bad:
        sys.exit(f"run {run}: {len(bad)} responses were not 202, e.g. {sorted(set(bad))}")
    return elapsed, len(statuses)


# -- the servers -------------------------------------------------------------------------------

def constant_server(engine):
    """The ingress's own aiohttp setup, with a handler that reads the body and answers 202."""
    from taskengine_core.ingress import Ingress

    class Constant(Ingress):
        async def _post_event(self, request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"id": "constant"}, status=202)

    return Constant(engine, "127.0.0.1:0")


def durable_run(db_path: Path, synchronous: str, run: int, args) -> float:
    """Events/s of a fresh engine whose every connection uses ``synchronous``."""
    from taskengine_core.engine import Engine
    from taskengine_core.store import db as store_db

    default, store_db.SYNCHRONOUS = store_db.SYNCHRONOUS, synchronous
    try:
        engine = Engine(db_path)
        engine.start(listen="127.0.0.1:0", token=TOKEN)
        try:
            mode = engine.store.conn.execute("PRAGMA synchronous").fetchone()[0]
            assert mode == {"NORMAL": 1, "FULL": 2}[synchronous], mode
            seconds, n = drive(engine.ingress.address, run, args.events, args.connections, args.clients)
        finally:
            engine.stop(1)
    finally:
        store_db.SYNCHRONOUS = default
    stored = sqlite3.connect(db_path).execute(
        "SELECT count(*) FROM events WHERE source = 'bench' AND source_id LIKE ?", (f"{run}-%",)).fetchone()[0]
    assert stored == args.events, f"run {run}: {stored} events stored, expected {args.events}"
    return n / seconds


def commit_latency(db_path: Path, synchronous: str, batches: int = 200, size: int = 16) -> float:
    """Median seconds to commit one batch of ``size`` events (as the group commit does), on a
    store opened with ``synchronous``: the part of the cost that the disk's sync sets."""
    from taskengine_core.events import Event, insert_events
    from taskengine_core.store import Store
    from taskengine_core.store import db as store_db

    default, store_db.SYNCHRONOUS = store_db.SYNCHRONOUS, synchronous
    try:
        store = Store(db_path, migrate=False)
    finally:
        store_db.SYNCHRONOUS = default
    times = []
    for b in range(batches):
        events = [Event("user.login", {"user": f"u{i}"}, source="latency", source_id=f"{synchronous}-{b}-{i}")
                  for i in range(size)]
        start = time.perf_counter()
        insert_events(store, events)
        times.append(time.perf_counter() - start)
    store.close()
    return statistics.median(times)


def compare_synchronous(args, tmp: str) -> None:
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store

    settings = Path(tmp) / "settings.yaml"
    settings.write_text("settings:\n  ingress:\n    rate: 1000000\n")
    paths = {mode: Path(tmp) / f"bench-{mode.lower()}.db" for mode in ("NORMAL", "FULL")}
    for path in paths.values():
        apply_config(Store(path), load_config([settings], get_plugin_manager().registry()))
    host = Engine(Path(tmp) / "host.db")
    ceiling = constant_server(host)
    ceiling.start()
    rates: dict[str, list[float]] = {"constant": [], "NORMAL": [], "FULL": []}
    try:
        for run in range(args.runs):
            seconds, n = drive(ceiling.address, run, args.events, args.connections, args.clients)
            rates["constant"].append(n / seconds)
            for mode in (("FULL", "NORMAL") if run % 2 else ("NORMAL", "FULL")):
                rates[mode].append(durable_run(paths[mode], mode, run, args))
            print(f"run {run + 1}: constant {rates['constant'][-1]:8.0f}/s   NORMAL "
                  f"{rates['NORMAL'][-1]:8.0f}/s   FULL {rates['FULL'][-1]:8.0f}/s", file=sys.stderr)
    finally:
        ceiling.stop()
        host.store.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"python {platform.python_version()}, os.cpu_count() = {os.cpu_count()}, "
          f"{args.events} events x {args.runs} runs, {args.connections} connections, databases in {tmp}")
    print(f"constant 202 (aiohttp ceiling):   {med['constant']:8.0f} events/s (median)")
    print(f"ingress, synchronous=NORMAL:      {med['NORMAL']:8.0f} events/s (median)")
    print(f"ingress, synchronous=FULL:        {med['FULL']:8.0f} events/s (median)")
    paired = statistics.median(f / n for f, n in zip(rates["FULL"], rates["NORMAL"]))
    print(f"FULL / NORMAL:                    {med['FULL'] / med['NORMAL']:8.1%} (median of per-run ratios {paired:.1%})")
    latency = {mode: commit_latency(paths[mode], mode) for mode in ("NORMAL", "FULL")}
    print(f"commit of a 16-event batch (median of 200): NORMAL {latency['NORMAL'] * 1000:.2f} ms, "
          f"FULL {latency['FULL'] * 1000:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare-synchronous", action="store_true",
                        help="measure synchronous=NORMAL against FULL in the same runs")
    parser.add_argument("--dir", help="directory for the databases (default: a temporary one)")
    parser.add_argument("--postgres", action="store_true",
                        help="also an engine on PostgreSQL (a throwaway server, fsync on), in the same runs")
    args = parser.parse_args()
    if args.compare_synchronous:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            compare_synchronous(args, tmp)
        return

    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import open_store

    server = None
    if args.postgres:
        from taskengine_core.testing.postgres import PostgresServer

        server = PostgresServer()
        server.start(durable=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        settings = Path(tmp) / "settings.yaml"
        settings.write_text("settings:\n  ingress:\n    rate: 1000000\n")
        targets = {"sqlite": str(Path(tmp) / "bench.db")}
        if server is not None:
            targets["postgresql"] = server.create_database()
        engines = {}
        for name, target in targets.items():
            store = open_store(target)
            apply_config(store, load_config([settings], get_plugin_manager().registry()))
            store.close()
            engines[name] = Engine(target)
            engines[name].start(listen="127.0.0.1:0", token=TOKEN)
        engine = engines["sqlite"]
        ceiling = constant_server(engine)
        ceiling.start()
        durable_rates, ceiling_rates, pg_rates = [], [], []
        try:
            for run in range(args.runs):
                seconds, n = drive(ceiling.address, run, args.events, args.connections, args.clients)
                ceiling_rates.append(n / seconds)
                for name, target in targets.items():
                    seconds, n = drive(engines[name].ingress.address, run, args.events, args.connections,
                                       args.clients)
                    (durable_rates if name == "sqlite" else pg_rates).append(n / seconds)
                    reader = open_store(target, migrate=False, create=False)
                    stored = reader.conn.execute(
                        "SELECT count(*) FROM events WHERE source = 'bench' AND source_id LIKE ?",
                        (f"{run}-%",)).fetchone()[0]
                    reader.close()
                    assert stored == args.events, f"run {run}, {name}: {stored} events stored, expected {args.events}"
                print(f"run {run + 1}: constant {ceiling_rates[-1]:8.0f}/s   ingress {durable_rates[-1]:8.0f}/s"
                      + (f"   ingress on PostgreSQL {pg_rates[-1]:8.0f}/s" if pg_rates else ""), file=sys.stderr)
        finally:
            ceiling.stop()
            for running in engines.values():
                running.stop(1)
            if server is not None:
                server.stop()

    durable, top = statistics.median(durable_rates), statistics.median(ceiling_rates)
    print(f"python {platform.python_version()}, os.cpu_count() = {os.cpu_count()}, "
          f"{args.events} events x {args.runs} runs, {args.connections} connections, "
          f"{args.clients} client processes")
    print(f"constant 202 (aiohttp ceiling): {top:8.0f} events/s (median)")
    print(f"ingress, committed:             {durable:8.0f} events/s (median)")
    paired = statistics.median(d / c for d, c in zip(durable_rates, ceiling_rates))
    print(f"ratio:                          {durable / top:8.1%} (median of per-run ratios {paired:.1%})")
    if pg_rates:
        pg = statistics.median(pg_rates)
        print(f"ingress on PostgreSQL, committed: {pg:8.0f} events/s (median): {pg / durable:.2f} of SQLite, "
              f"{pg / top:.1%} of the ceiling")


if __name__ == "__main__":
    main()
