"""Webhook deliveries per second: the engine (durable, signed, every attempt logged) against a
serial ``requests`` loop, a bare aiohttp client and a raw asyncio client, to one local HTTP
server running in another process.

Usage: python benchmarks/bench_webhooks.py [--deliveries 5000] [--runs 3] [--latency 0.05]

Floors (``--path action`` or ``both``, instant mode; ``--no-floors`` leaves them out): the durable
rows the action path commits per delivery, values precomputed and no HTTP, batched as the engine
batches them (one transaction per executor step, the deliveries in it), with 16 runs a step (one
per worker) and with 160 (about what the engine's steps carry now); benchmarks/sql_floors.py
``webhook_floor_rate``. And the limit of one process: those rows (160 a step) committed in one
thread while the aiohttp client makes the same requests with 32 connections, at once, in this
one interpreter, with no engine logic at all; and the same two in two processes (the limit of an
engine whose dispatcher runs in a process of its own).

Two server modes: ``instant`` (answers at once) and ``latency`` (answers after --latency
seconds, standing in for a remote receiver). Bodies are 1 KB of JSON. Engine figures time the
whole path: the deliveries are committed to the queue (``taskengine_webhook.enqueue``, one
transaction; ``--path action`` queues them through the ``webhook.send`` action instead, one run
per delivery), then sent by the dispatcher (at most ``concurrency``, default 32, in flight to the
destination) and recorded (one row per attempt). The clock stops when every delivery is
``delivered`` in the database. Each figure is the median of --runs runs. The clients without the
engine use the same number of connections (32); the serial loop sends fewer requests in latency
mode (its rate does not depend on the count) to keep the run short.

Recorded (2 vCPUs shared with other work, so +-30% between runs; ratios are from one run):

    instant:                                    deliveries/s   x serial
      requests, serial, one Session                    1,280      1.0
      aiohttp, 32 connections                          5,896      4.6
      raw asyncio streams, 32 connections             18,699     14.6
      engine (enqueue path), durable + logged          2,727      2.1
      engine (action path), durable + logged             930      0.7
    latency 50 ms:
      requests, serial, one Session                       19      1.0
      aiohttp, 32 connections                            580     30.5
      raw asyncio streams, 32 connections                619     32.6
      engine (enqueue path), durable + logged            519     27.3
      engine (action path), durable + logged             523     27.5

The action path also pays for the core's work per run (event, rule match, run row, claim,
template rendering, outcome); with 32 requests in flight per destination, 50 ms of latency caps
any client at 640/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
CONNECTIONS = 32
FLOOR_COMMITS: dict[int, dict] = {}  # per cohort: commits of each kind in the floor's last run
QUEUED: list[float] = []  # action path: runs succeeded (their deliveries queued) per second
CPU_MS: dict[str, list[float]] = {}  # per engine path: CPU (all of this process's threads) per delivery
RECEIVER_MS: dict[str, list[float]] = {}  # per client: the receiver process's CPU per request
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)
# the body the floors store per delivery: what the rule below renders from payload()
FLOOR_BODY = json.dumps({"type": "bench.event", "index": "1", "text": "x" * 960}, separators=(",", ":"))


# --- the server (another process) -----------------------------------------------------------


def serve(port: int, delay: float) -> None:
    class Handler(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buf = transport, b""

        def data_received(self, data):
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                match = _LENGTH.search(self.buf, 0, end)
                size = end + 4 + (int(match.group(1)) if match else 0)
                if len(self.buf) < size:
                    return
                self.buf = self.buf[size:]
                if delay:
                    loop.call_later(delay, self._reply)
                else:
                    self.transport.write(RESPONSE)

        def _reply(self):
            if not self.transport.is_closing():
                self.transport.write(RESPONSE)

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Handler, "127.0.0.1", port, backlog=1024))
    print("ready", flush=True)
    loop.run_until_complete(server.serve_forever())


def start_server(delay: float) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--delay", str(delay)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc, f"http://127.0.0.1:{port}/hook"


def payload(i: int) -> dict:
    return {"type": "bench.event", "index": i, "text": "x" * 960}  # ~1 KB of JSON


# --- the engine -----------------------------------------------------------------------------


def rules_text(url: str, processes: int = 0) -> str:
    """The benchmark's rules; ``processes``: ``settings.webhook.processes`` (dispatchers in
    processes of their own)."""
    os.environ["BENCH_SIGNING"] = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    settings = f"settings:\n  webhook: {{processes: {processes}}}\n" if processes else ""
    return f"""{settings}
webhooks:
  sink: {{url: "{url}", secret: "${{env:BENCH_SIGNING}}", retries: 0}}
tasks:
  forward:
    action: webhook.send
    concurrency: parallel
    with: {{webhook: sink, payload: {{type: bench.event, index: "{{{{ event.data.index }}}}",
            text: "{{{{ event.data.text }}}}"}}}}
events:
  all: {{on: bench.event, tasks: [forward]}}
"""


def floor_run(url: str, n: int, cohort: int) -> float:
    """The floor under the action path: the rows the engine commits per delivery (event, run,
    decision, claim, delivery, the dispatcher's attempt record and claim, the run's outcome),
    values precomputed, no HTTP, batched as the engine batches them (``cohort`` runs a step);
    see benchmarks/sql_floors.py ``webhook_floor_rate``."""
    import sql_floors

    with tempfile.TemporaryDirectory(prefix="bench-webhooks-floor-") as tmp:
        out = sql_floors.webhook_floor_rate(n, Path(tmp), rules_text(url), cohort, FLOOR_BODY)
    commits = {k: v for k, v in out.items() if k not in ("rate", "cpu_ms")}
    commits["ms per commit"] = round(n / out["rate"] / sum(commits.values()) * 1000, 2)
    FLOOR_COMMITS[cohort] = commits
    CPU_MS.setdefault(f"floor{cohort}", []).append(out["cpu_ms"])
    return out["rate"]


def floor_with_http(url: str, n: int, cohort: int) -> float:
    """The limit of one process: the floor's rows (``cohort`` a step) committed in a thread while
    the aiohttp-32 client sends the ``n`` requests, both at once in this interpreter; the clock
    stops when both are done."""
    import sql_floors

    both = threading.Barrier(2)
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-floor-") as tmp:
        rows = threading.Thread(target=sql_floors.webhook_floor_rate,
                                args=(n, Path(tmp), rules_text(url), cohort, FLOOR_BODY, both.wait))
        rows.start()
        both.wait()
        cpu, started = time.process_time(), time.perf_counter()
        aiohttp_client(url, n)
        rows.join()
        elapsed = time.perf_counter() - started
    CPU_MS.setdefault("floor+http", []).append((time.process_time() - cpu) / n * 1000)
    return n / elapsed


def floor_and_http_apart(url: str, n: int, cohort: int) -> float:
    """The same two at once, in two processes (the floor's rows in a child, the requests here): the
    limit of an engine whose dispatcher runs in a process of its own."""
    child = subprocess.Popen([sys.executable, __file__, "--floor-child", str(n), "--cohort", str(cohort),
                              "--url", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        child.stdin.write("go\n")
        child.stdin.flush()
        aiohttp_client(url, n)
        assert child.stdout.readline().strip() == "done"
        elapsed = time.perf_counter() - started
    finally:
        child.wait()
    return n / elapsed


def floor_child(n: int, cohort: int, url: str) -> None:
    import sql_floors

    def ready() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    with tempfile.TemporaryDirectory(prefix="bench-webhooks-floor-") as tmp:
        sql_floors.webhook_floor_rate(n, Path(tmp), rules_text(url), cohort, FLOOR_BODY, ready)
        print("done", flush=True)


def applied_database(url: str, prefix: str, processes: int = 0):
    """A new database in a temporary folder with this benchmark's rules applied; returns its
    path and the plugin manager (shared by the webhook benchmarks)."""
    from taskengine_core.apply import apply_config
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    db, rules = tmp / "engine.db", tmp / "rules.yaml"
    rules.write_text(rules_text(url, processes) if processes else rules_text(url))
    manager = get_plugin_manager()
    store = Store(db)
    apply_config(store, load_config([rules], manager.registry()))
    store.close()
    return db, manager


def engine_run(url: str, n: int, path: str) -> float:
    from taskengine_core.engine import Engine
    from taskengine_core.events import Event
    import taskengine_webhook

    db, manager = applied_database(url, "bench-webhooks-")
    engine = Engine(db, manager=manager, poll_interval=0.01)
    engine.start()
    conn = sqlite3.connect(db)
    try:
        cpu = time.process_time()
        started = time.perf_counter()
        if path == "action":
            engine.emit_many([Event("bench.event", payload(i)) for i in range(n)])
        else:
            taskengine_webhook.enqueue(str(db), "sink", [payload(i) for i in range(n)])
        queued_at = None  # action path: when every run had succeeded (all deliveries queued)
        polling = time.thread_time()  # this thread's polling is the script's, not the engine's
        while conn.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
                           ).fetchone()[0] < n:
            if path == "action" and queued_at is None and conn.execute(
                    "SELECT count(*) FROM runs WHERE status = 'succeeded'").fetchone()[0] >= n:
                queued_at = time.perf_counter() - started
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        polling = time.thread_time() - polling
        if path == "action":
            QUEUED.append(n / (queued_at or elapsed))
        CPU_MS.setdefault(path, []).append((time.process_time() - cpu - polling) / n * 1000)
        logged = conn.execute("SELECT count(*) FROM webhook_attempts").fetchone()[0]
        assert logged == n, f"{logged} attempts logged for {n} deliveries"
    finally:
        conn.close()
        engine.stop(grace=5)
    return n / elapsed


# --- baselines ------------------------------------------------------------------------------


def requests_serial(url: str, n: int) -> float:
    import requests

    with requests.Session() as session:
        started = time.perf_counter()
        for i in range(n):
            response = session.post(url, data=json.dumps(payload(i)),
                                    headers={"Content-Type": "application/json"})
            assert response.status_code == 200
        return n / (time.perf_counter() - started)


def aiohttp_client(url: str, n: int) -> float:
    import aiohttp

    async def main() -> float:
        queue = iter(range(n))
        cpu = time.process_time()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as session:
            async def worker():
                for i in queue:
                    async with session.post(url, data=json.dumps(payload(i)),
                                            headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        assert r.status == 200

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
            rate = n / (time.perf_counter() - started)
        CPU_MS.setdefault("aiohttp", []).append((time.process_time() - cpu) / n * 1000)
        return rate

    return asyncio.run(main())


def raw_asyncio(url: str, n: int) -> float:
    host, port = url.split("//")[1].split("/")[0].split(":")

    async def main() -> float:
        queue = iter(range(n))

        async def worker():
            reader, writer = await asyncio.open_connection(host, int(port))
            for i in queue:
                body = json.dumps(payload(i)).encode()
                writer.write(b"POST /hook HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(_LENGTH.search(head).group(1)))
                assert head.startswith(b"HTTP/1.1 200")
            writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        return n / (time.perf_counter() - started)

    return asyncio.run(main())


# --- the comparison -------------------------------------------------------------------------


def median_of(runs: int, func, *args) -> float:
    return statistics.median(func(*args) for _ in range(runs))


def process_cpu_ms(pid: int) -> float:
    """CPU (user + system) another process has used so far, in ms (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def receiver_median(proc, name: str, runs: int, n: int, func, *args) -> float:
    """``median_of``, also noting the receiver's CPU per request in each run."""
    rates = []
    for _ in range(runs):
        before = process_cpu_ms(proc.pid)
        rates.append(func(*args))
        RECEIVER_MS.setdefault(name, []).append((process_cpu_ms(proc.pid) - before) / n)
    return statistics.median(rates)


def cpu_budget(client_rate: float, target: float = 0.6) -> list[str]:
    """What the rate target leaves for the engine's own logic on this machine's cores: at
    ``target`` × the aiohttp-32 client, the bare parts of a delivery (that client's requests,
    the floor's rows at 160 a step, the receiver's side) take their measured CPU; the cores
    left over, spread over the deliveries, are all the engine's logic may cost (with perfect
    parallelism, in any number of processes)."""
    cores = os.cpu_count() or 1
    rate = target * client_rate
    client, rows = statistics.median(CPU_MS["aiohttp"]), statistics.median(CPU_MS["floor160"])
    receiver = statistics.median(RECEIVER_MS["aiohttp"])
    bare = client + rows + receiver
    left = cores * 1000 / rate - bare
    logic = statistics.median(CPU_MS["action"]) - client - rows  # the engine's own sending counted as the client's
    engine_receiver = statistics.median(RECEIVER_MS["action"])
    return [f"  CPU budget at {target:g} x aiohttp-{CONNECTIONS} ({rate:,.0f}/s) on {cores} cores: "
            f"{cores * 1000 / rate:.3f} ms of CPU per delivery in all",
            f"    bare parts, measured: aiohttp client {client:.3f} + rows (floor, 160/step) {rows:.3f} + "
            f"receiver {receiver:.3f} = {bare:.3f} ms ({rate * bare / 1000:.2f} cores)",
            f"    left for the engine's logic (events, rules, runs, rendering, signing, attempt records): "
            f"{left:.3f} ms/delivery; it uses {logic:.3f} now ({logic / left:.1f} x what is left)"
            if left > 0 else "    nothing is left for the engine's logic: the bare parts alone need more cores",
            f"    (receiver CPU per request: {receiver:.3f} ms for aiohttp-{CONNECTIONS}, "
            f"{engine_receiver:.3f} ms for the engine)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--path", choices=["enqueue", "action", "both"], default="both")
    parser.add_argument("--no-floors", dest="floors", action="store_false",
                        help="leave out the SQL floor under the action path")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--floor-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cohort", type=int, default=160, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.delay)
        return
    if args.floor_child:
        floor_child(args.floor_child, args.cohort, args.url)
        return
    n = args.deliveries
    print(f"bench_webhooks: {n} deliveries of ~1 KB, median of {args.runs}, os.cpu_count()={os.cpu_count()}, "
          f"Python {sys.version.split()[0]}")
    paths = ["enqueue", "action"] if args.path == "both" else [args.path]
    for mode, delay in (("instant", 0.0), (f"latency {args.latency * 1000:g} ms", args.latency)):
        proc, url = start_server(delay)
        try:
            serial_n = n if not delay else min(n, 300)
            figures = {"requests, serial, one Session": median_of(args.runs, requests_serial, url, serial_n),
                       f"aiohttp, {CONNECTIONS} connections": receiver_median(proc, "aiohttp", args.runs, n,
                                                                               aiohttp_client, url, n),
                       f"raw asyncio streams, {CONNECTIONS} connections": median_of(args.runs, raw_asyncio, url, n)}
            for path in paths:
                figures[f"engine ({path} path), durable + logged"] = receiver_median(
                    proc, path, args.runs, n, engine_run, url, n, path)
            if "action" in paths and not delay and args.floors:
                floors: dict[int, list[float]] = {16: [], 160: []}
                with_http: list[float] = []
                apart: list[float] = []
                for _ in range(args.runs):  # alternated: the disk's fsync time drifts
                    for cohort in floors:
                        floors[cohort].append(floor_run(url, n, cohort))
                    with_http.append(floor_with_http(url, n, 160))
                    apart.append(floor_and_http_apart(url, n, 160))
                for cohort, rates in floors.items():
                    figures[f"floor: action path's rows, no HTTP, {cohort}/step"] = statistics.median(rates)
                figures["limit of one process: rows + aiohttp-32"] = statistics.median(with_http)
                figures["limit of two processes: rows | aiohttp-32"] = statistics.median(apart)
        finally:
            proc.kill()
            proc.wait()
        serial = figures["requests, serial, one Session"]
        ceiling = figures[f"raw asyncio streams, {CONNECTIONS} connections"]
        client = figures[f"aiohttp, {CONNECTIONS} connections"]
        print(f"\n{mode}:")
        for name, rate in figures.items():
            line = (f"  {name:<45} {rate:>9,.0f}/s   {rate / serial:6.1f}x serial   "
                    f"{rate / client:5.2f}x aiohttp-{CONNECTIONS}   {rate / ceiling:5.2f}x raw")
            path = name.split("(")[1].split(" ")[0] if name.startswith("engine") else None
            if name.startswith("floor:"):
                path = "floor" + name.split(", ")[-1].split("/")[0]
            if name.startswith("limit of one process"):
                path = "floor+http"
            if name.startswith("aiohttp"):
                path = "aiohttp"
            if path in CPU_MS:  # the process's CPU, less this script's own polling of the database
                line += f"   {statistics.median(CPU_MS[path]):.2f} ms CPU/delivery"
            print(line)
        if QUEUED:
            print(f"  (engine, action path: every run succeeded, its delivery queued, at "
                  f"{statistics.median(QUEUED):,.0f} runs/s; the rest of the time is the sending)")
            QUEUED.clear()
        if "floor160" in CPU_MS and "action" in CPU_MS:
            print("\n".join(cpu_budget(client)))
        CPU_MS.clear()
        RECEIVER_MS.clear()
        for cohort, commits in FLOOR_COMMITS.items():
            print(f"  (floor, {cohort} runs a step: commits {commits})")
        FLOOR_COMMITS.clear()


if __name__ == "__main__":
    main()
