"""The dashboard at scale: render time of the runs page (several filters, a deep keyset page) and
of a run's trace with a million runs in the database, against the same query as
``logs list --json`` (``task_logs.list_runs`` plus JSON) in the same run. Then the HTTP ingress'
events per second with the dashboard open and refreshing (as htmx does) against the same without.

    python benchmarks/bench_dashboard.py [--runs 1000000] [--requests 60] [--events 4000]

Figures go to stdout; record them in benchmarks/README.md with ``nproc``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from taskengine_core.apply import apply_config  # noqa: E402
from taskengine_core.engine import Engine  # noqa: E402
from taskengine_core.plugins import get_plugin_manager  # noqa: E402
from taskengine_core.rules.validate import load_config  # noqa: E402
from taskengine_core.store import Store  # noqa: E402
from taskengine_core.task_logs import list_runs  # noqa: E402

TOKEN = "bench-dashboard-token-1234567890"
INGRESS_TOKEN = "bench-token-0123456789"  # what bench_ingress' client sends
TASKS = 20
RULES = "settings:\n  access:\n    tokens:\n      bench: {token: \"${env:BENCH_UI_TOKEN}\", role: admin}\n" \
        "  ingress: {rate: 1000000}\n" \
        "tasks:\n" + "".join(f"  t{n}: {{action: command.run, with: {{argv: ['true']}}}}\n" for n in range(TASKS))
# no rule listens for the posted events: the ingress is measured, not a backlog of runs that the
# first half of a round would leave to the second


def seed(db: Path, count: int) -> list[str]:
    """``count`` finished runs over the last 30 days (1 in 50 failed), each with one attempt."""
    conn = sqlite3.connect(db)
    start = time.time() - 30 * 86400
    step = 30 * 86400 / count
    ids = []
    batch, attempts = [], []
    with conn:
        for n in range(count):
            created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + n * step)) + f".{n % 1000000:06d}Z"
            run_id = f"{n:020x}"
            status = "failed" if n % 50 == 0 else "succeeded"
            batch.append((run_id, f"t{n % TASKS}", status, "manual" if n % 3 else "event", created, created,
                          created, created, 1, 1, "boom" if status == "failed" else None, '{"ok": true}', 0.01))
            attempts.append((run_id, 1, created, created, status, '{"ok": true}', 0.01))
            if len(batch) == 50_000:
                _flush(conn, batch, attempts)
                batch, attempts = [], []
            if n % (count // 10 or 1) == 0:
                ids.append(run_id)
        _flush(conn, batch, attempts)
    conn.execute("ANALYZE")
    conn.close()
    return ids


def _flush(conn, batch, attempts) -> None:
    conn.executemany("INSERT INTO runs (id, task, status, trigger, not_before, created_at, started_at, finished_at, "
                     "attempt, max_attempts, error, output, duration) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
    conn.executemany("INSERT INTO attempts (run_id, number, started_at, finished_at, outcome, output, duration) "
                     "VALUES (?,?,?,?,?,?,?)", attempts)


def timed(call, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        out.append((time.perf_counter() - began) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def refresh_like_a_browser(base: str, cookie: str, stop) -> None:
    """An open dashboard, in its own process: the runs rows every 2 s and the overview every 5 s
    (what the pages' htmx triggers ask for)."""
    session = requests.Session()
    session.cookies.set("taskengine_session", cookie)
    ticks = 0
    while not stop.wait(1.0):
        ticks += 1
        if ticks % 2 == 0:
            session.get(base + "/ui/runs/rows").raise_for_status()
        if ticks % 5 == 0:
            session.get(base + "/ui").raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["BENCH_UI_TOKEN"] = TOKEN
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    db = tmp / "taskengine.db"
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    manager = get_plugin_manager()
    store = Store(db)
    apply_config(store, load_config([str(rules)], manager.registry()))
    store.close()
    began = time.perf_counter()
    ids = seed(db, args.runs)
    print(f"seeded {args.runs:,} runs in {time.perf_counter() - began:.1f} s; cores: {os.cpu_count()}")

    engine = Engine(db, manager=manager)
    engine.start(listen="127.0.0.1:0", token=INGRESS_TOKEN, ui=True)
    base = f"http://{engine.ingress.address}"
    try:
        browser = requests.Session()
        browser.post(base + "/ui/login", data={"token": TOKEN}, headers={"Origin": base})
        page = browser.get(base + "/ui/runs?task=t7").text
        deep = re.search(r'<a rel="next" href="([^"]+)"', page).group(1).replace("&amp;", "&")
        for _ in range(5):  # 5 pages further back by keyset
            page = browser.get(base + deep).text
            deep = re.search(r'<a rel="next" href="([^"]+)"', page).group(1).replace("&amp;", "&")
        cases = {
            "runs page, newest": "/ui/runs",
            "runs page, task filter": "/ui/runs?task=t7",
            "runs page, status=failed": "/ui/runs?status=failed",
            "runs page, deep keyset page": deep,
            "runs rows (live refresh)": "/ui/runs/rows",
            "run trace": f"/ui/runs/{ids[len(ids) // 2]}",
            "overview": "/ui",
        }
        cli_store = Store(db, migrate=False)
        baseline = timed(lambda: json.dumps(list_runs(cli_store, limit=50)), args.requests)
        print(f"\nbaseline: logs list --json's query (list_runs, 50 rows, JSON) "
              f"p50 {p(baseline, .5):.1f} ms, p99 {p(baseline, .99):.1f} ms")
        print(f"{'page':32} {'p50 ms':>8} {'p99 ms':>8} {'p50 / baseline':>15}")
        for name, path in cases.items():
            browser.get(base + path)  # warm
            figures = timed(lambda: browser.get(base + path).raise_for_status(), args.requests)
            print(f"{name:32} {p(figures, .5):8.1f} {p(figures, .99):8.1f} {p(figures, .5) / p(baseline, .5):15.1f}")

        import multiprocessing

        from bench_ingress import drive  # the ingress benchmark's client: raw HTTP from other processes

        ctx = multiprocessing.get_context("spawn")
        cookie = browser.cookies.get("taskengine_session")
        without, with_ui = [], []
        for round_ in range(args.rounds):
            for with_dashboard in ((False, True) if round_ % 2 == 0 else (True, False)):  # no order bias
                viewer = None
                if with_dashboard:
                    stop = ctx.Event()
                    viewer = ctx.Process(target=refresh_like_a_browser, args=(base, cookie, stop))
                    viewer.start()
                seconds, n = drive(engine.ingress.address, 2 * round_ + with_dashboard, args.events, 16, 1)
                (with_ui if with_dashboard else without).append(n / seconds)
                if viewer is not None:
                    stop.set()
                    viewer.join()
        a, b = statistics.median(without), statistics.median(with_ui)
        print(f"\ningress events/s, median of {args.rounds}: without the dashboard {a:,.0f}, "
              f"with it open and refreshing {b:,.0f} ({(b - a) / a * 100:+.1f}%)")
    finally:
        engine.stop(grace=1)


if __name__ == "__main__":
    main()
