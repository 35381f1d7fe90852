"""Schedules at scale, against the `schedule` library and APScheduler 3 (BackgroundScheduler).

1. Registering N (100,000) daily schedules durably: a rule file with N ``{every: day, at: HH:MM}``
   schedules linked to 1,000 ``command.run`` tasks, through load_config + apply_config +
   Scheduler.load (which persists every next fire time in ``schedule_state``). Seconds (wall and
   CPU) and peak RSS, each measurement in a fresh subprocess. Compared: APScheduler add_job x N
   (cron trigger; memory store, and the SQLAlchemy store on SQLite when sqlalchemy is installed)
   and ``schedule.every().day.at(...)`` x N. Also the worst case for taskengine: every
   definition distinct (a start date per 1,440 times of day), so nothing is shared between schedules.
2. CPU per scheduler pass with nothing due at 1,000 / 10,000 / 100,000 schedules
   (``time.process_time_ns`` over many passes, median of 5): ``Scheduler.tick(runtime)`` with the
   real clock and every schedule starting in a week; APScheduler's ``_process_jobs()`` called
   directly on a started (running, idle) scheduler with a memory store, which is exactly what its
   thread runs on each wake-up; ``schedule.run_pending()`` with ``every(7).days.at(...)`` jobs.
3. Lateness of 1,000 schedules due at the same instant (real clock): taskengine as a running
   ``Engine`` with one ``once`` schedule per task and a no-op action; (a) due -> the slot's runs
   committed in SQLite (time after the scheduler's transaction returns; ``runs.created_at`` is
   the pass's clock reading before that transaction, a lower bound, also shown); (b) due -> the
   action starting (the action records ``time.time()``). APScheduler: 1,000 DateTrigger jobs,
   (a) = its EVENT_JOB_SUBMITTED listener (dispatched once the pass has submitted every due job
   and updated its store: the closest equivalent; nothing about a run is durable there),
   (b) = the job function starting. 16 worker threads for both.

Usage: python benchmarks/bench_scheduler.py [--schedules 100000] [--runs 3] [--rounds 3]
       [--no-sqlalchemy] [--no-distinct]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from taskengine_core.hookspecs import hookimpl

UTC = timezone.utc
STARTS: dict[str, float] = {}
_lock = threading.Lock()


def noop(params=None, ctx=None):
    now = time.time()
    if ctx is not None:
        with _lock:
            STARTS[ctx.run_id] = now
    return None


def aps_job(key):
    now = time.time()
    with _lock:
        STARTS[key] = now


class NoopPlugin:
    __name__ = "bench-noop"

    @hookimpl
    def register_actions(self, register):
        register("bench.noop", noop, schema={"type": "object"}, idempotent=True)


# -- rule files ---------------------------------------------------------------------------------

def hhmm(i: int) -> str:
    return f"{(i // 60) % 24:02d}:{i % 60:02d}"


def write_rules(path: Path, n: int, *, tasks: int = 1000, start: str | None = None, distinct: bool = False) -> None:
    lines = ["settings: {timezone: Europe/Berlin}", "schedules:"]
    for i in range(n):
        if distinct:  # every definition different: 1,440 times x a start date per 1,440
            first = (date(2026, 1, 1) + timedelta(days=i // 1440)).isoformat()
            lines.append(f'  s{i}: {{every: day, at: "{hhmm(i)}", start: {first}}}')
        else:
            extra = f", start: {start}" if start else ""
            lines.append(f'  s{i}: {{every: day, at: "{hhmm(i)}"{extra}}}')
    lines.append("tasks:")
    for t in range(min(tasks, n)):
        linked = ", ".join(f"s{i}" for i in range(t, n, tasks))
        lines.append(f'  t{t}: {{action: command.run, with: {{argv: ["true"]}}, schedules: [{linked}]}}')
    path.write_text("\n".join(lines) + "\n")


def register_taskengine(rules: Path, db: Path) -> dict:
    from taskengine_core.apply import apply_config
    from taskengine_core.model import load_runtime
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.scheduler import Scheduler
    from taskengine_core.store import Store

    registry = get_plugin_manager().registry()
    phases = {}
    store = Store(db)
    config = load_config([rules], registry)
    phases["validate"] = _peak()
    apply_config(store, config)
    phases["apply"] = _peak()
    del config
    scheduler = Scheduler(store)
    scheduler.load(load_runtime(store))
    phases["load"] = _peak()
    persisted = store.conn.execute("SELECT count(*) FROM schedule_state WHERE next_fire IS NOT NULL").fetchone()[0]
    return {"persisted": persisted, "phase_peak_mb": phases, "db": str(db)}


def restart_taskengine(db: Path) -> dict:
    """An engine starting on the registered database: runtime + heap from schedule_state."""
    from taskengine_core.model import load_runtime
    from taskengine_core.scheduler import Scheduler
    from taskengine_core.store import Store

    store = Store(db)
    scheduler = Scheduler(store)
    scheduler.load(load_runtime(store))
    return {"persisted": len(scheduler._heap)}


def register_apscheduler(n: int, db: Path | None) -> dict:
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    if db is None:
        store = MemoryJobStore()
    else:
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        store = SQLAlchemyJobStore(url=f"sqlite:///{db}")
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="Europe/Berlin")
    scheduler.start(paused=True)  # jobs go straight into the store; the thread stays idle
    for i in range(n):
        scheduler.add_job(noop, "cron", hour=(i // 60) % 24, minute=i % 60, id=f"s{i}")
    count = len(scheduler.get_jobs())
    scheduler.shutdown(wait=False)
    return {"persisted": count}


def register_schedule(n: int) -> dict:
    import schedule

    s = schedule.Scheduler()
    for i in range(n):
        s.every().day.at(hhmm(i)).do(noop)
    return {"persisted": len(s.jobs)}


# -- passes with nothing due --------------------------------------------------------------------

def _per_pass_us(fn, passes: int, reps: int = 5) -> float:
    fn()  # warm
    samples = []
    for _ in range(reps):
        start = time.process_time_ns()
        for _ in range(passes):
            fn()
        samples.append((time.process_time_ns() - start) / passes / 1000)
    return statistics.median(samples)


def pass_taskengine(n: int, tmp: Path) -> dict:
    from taskengine_core.apply import apply_config
    from taskengine_core.model import load_runtime
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.scheduler import Scheduler
    from taskengine_core.store import Store

    rules = tmp / f"pass-{n}.yaml"
    write_rules(rules, n, start=(datetime.now(UTC) + timedelta(days=7)).date().isoformat())
    store = Store(tmp / f"pass-{n}-{time.monotonic_ns()}.db")
    apply_config(store, load_config([rules], get_plugin_manager().registry()))
    runtime = load_runtime(store)
    scheduler = Scheduler(store)
    assert scheduler.tick(runtime) == 0 and len(scheduler._heap) == n
    us = _per_pass_us(lambda: scheduler.tick(runtime), 200_000)
    assert scheduler.tick(runtime) == 0
    return {"us": us}


def pass_apscheduler(n: int) -> dict:
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    scheduler = BackgroundScheduler(jobstores={"default": MemoryJobStore()}, timezone="Europe/Berlin")
    scheduler.start()
    start = datetime.now(UTC) + timedelta(days=7)
    for i in range(n):
        scheduler.add_job(noop, CronTrigger(hour=(i // 60) % 24, minute=i % 60, start_date=start,
                                            timezone="Europe/Berlin"), id=f"s{i}")
    time.sleep(0.5)  # let its thread process the wake-ups from add_job and go back to waiting
    wait = scheduler._process_jobs()
    assert wait is not None and wait > 86400, wait
    us = _per_pass_us(scheduler._process_jobs, 200_000)
    scheduler.shutdown(wait=False)
    return {"us": us}


def pass_schedule(n: int) -> dict:
    import schedule

    s = schedule.Scheduler()
    for i in range(n):
        s.every(7).days.at(hhmm(i)).do(noop)
    return {"us": _per_pass_us(s.run_pending, max(5, 2_000_000 // n), reps=3)}


# -- lateness -----------------------------------------------------------------------------------

def _due_at(lead: float) -> float:
    return float(math.ceil(time.time() + lead))


def late_taskengine(n: int, tmp: Path, lead: float = 6.0) -> dict:
    from taskengine_core.apply import apply_config
    from taskengine_core.clock import from_iso
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store

    due = _due_at(lead)
    local = datetime.fromtimestamp(due, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    lines = ["settings: {timezone: UTC}", "schedules:"]
    lines += [f'  s{i}: {{once: "{local}"}}' for i in range(n)]
    lines.append("tasks:")
    lines += [f"  t{i}: {{action: bench.noop, concurrency: parallel, schedules: [s{i}]}}" for i in range(n)]
    rules = tmp / "late.yaml"
    rules.write_text("\n".join(lines) + "\n")
    manager = get_plugin_manager(extra_plugins=[NoopPlugin()])
    db = tmp / f"late-{time.monotonic_ns()}.db"
    store = Store(db)
    apply_config(store, load_config([rules], manager.registry()))
    store.close()
    engine = Engine(db, manager=manager, workers=16)
    committed: list[float] = []
    fire = engine.scheduler._fire

    def timed_fire(due_list, now, runtime):
        handled = fire(due_list, now, runtime)
        committed.extend([time.time()] * len(due_list))  # the transaction has returned
        return handled

    engine.scheduler._fire = timed_fire
    engine.start()
    ready = time.time()
    deadline = due + 120
    while (len(STARTS) < n or len(committed) < n) and time.time() < deadline:
        time.sleep(0.05)
    engine.stop(5)
    created = [from_iso(r[0]).timestamp() for r in engine.store.conn.execute("SELECT created_at FROM runs")]
    return {"setup_overran": ready > due, "commit_ms": [(t - due) * 1000 for t in committed],
            "created_ms": [(t - due) * 1000 for t in created],
            "start_ms": [(t - due) * 1000 for t in STARTS.values()]}


def late_apscheduler(n: int, db: Path | None, lead: float = 6.0) -> dict:
    from apscheduler.events import EVENT_JOB_SUBMITTED
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    if db is None:
        store = MemoryJobStore()
    else:
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        store = SQLAlchemyJobStore(url=f"sqlite:///{db}")
        lead += 10  # adding 1,000 jobs commits 1,000 times
    submitted: dict[str, float] = {}
    scheduler = BackgroundScheduler(jobstores={"default": store}, executors={"default": ThreadPoolExecutor(16)},
                                    job_defaults={"misfire_grace_time": 300}, timezone="UTC")
    scheduler.add_listener(lambda ev: submitted.setdefault(ev.job_id, time.time()), EVENT_JOB_SUBMITTED)
    scheduler.start()
    due = _due_at(lead)
    run_date = datetime.fromtimestamp(due, UTC)
    for i in range(n):
        scheduler.add_job(aps_job, "date", run_date=run_date, args=[f"j{i}"], id=f"j{i}")
    ready = time.time()
    deadline = due + 120
    while (len(STARTS) < n or len(submitted) < n) and time.time() < deadline:
        time.sleep(0.05)
    scheduler.shutdown(wait=True)
    return {"setup_overran": ready > due, "commit_ms": [(t - due) * 1000 for t in submitted.values()],
            "start_ms": [(t - due) * 1000 for t in STARTS.values()]}


# -- the child side -----------------------------------------------------------------------------

def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: list[str]) -> None:
    mode, n, tmp = args[0], int(args[1]), Path(args[2])
    stamp = time.monotonic_ns()
    # Everything these modes need is imported before the baseline is taken.
    import apscheduler.schedulers.background  # noqa: F401
    import schedule  # noqa: F401

    import taskengine_core.apply  # noqa: F401
    import taskengine_core.engine  # noqa: F401
    import taskengine_core.rules.validate  # noqa: F401

    base_mb = _peak()
    wall, cpu = time.perf_counter(), time.process_time()
    if mode in ("register-te", "register-te-distinct"):
        out = register_taskengine(Path(args[3]), tmp / f"reg-{stamp}.db")
    elif mode == "restart-te":
        out = restart_taskengine(Path(args[3]))
    elif mode == "register-aps-memory":
        out = register_apscheduler(n, None)
    elif mode == "register-aps-sqlite":
        out = register_apscheduler(n, tmp / f"aps-{stamp}.sqlite")
    elif mode == "register-schedule":
        out = register_schedule(n)
    elif mode == "pass-te":
        out = pass_taskengine(n, tmp)
    elif mode == "pass-aps":
        out = pass_apscheduler(n)
    elif mode == "pass-schedule":
        out = pass_schedule(n)
    elif mode == "late-te":
        out = late_taskengine(n, tmp)
    elif mode == "late-aps-memory":
        out = late_apscheduler(n, None)
    elif mode == "late-aps-sqlite":
        out = late_apscheduler(n, tmp / f"aps-late-{stamp}.sqlite")
    else:
        raise SystemExit(f"unknown mode {mode}")
    out.update(wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu,
               base_mb=base_mb, peak_mb=_peak())
    print("RESULT " + json.dumps(out))


def run_child(mode: str, n: int, tmp: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(n), str(tmp), *extra],
                          capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{mode} {n} failed:\n{proc.stderr[-3000:]}")


# -- the parent side ----------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="subprocess runs per registration (median)")
    parser.add_argument("--rounds", type=int, default=3, help="lateness rounds per system (pooled)")
    parser.add_argument("--lateness-schedules", type=int, default=1000)
    parser.add_argument("--no-sqlalchemy", action="store_true", help="skip APScheduler's SQLite store")
    parser.add_argument("--no-distinct", action="store_true", help="skip the all-distinct registration")
    args = parser.parse_args()
    n = args.schedules
    try:
        import sqlalchemy  # noqa: F401
        have_sql = not args.no_sqlalchemy
    except ImportError:
        have_sql = False
    print(f"cpu_count={os.cpu_count()} loadavg={os.getloadavg()[0]:.1f} schedules={n} runs={args.runs} "
          f"rounds={args.rounds}" + ("" if have_sql else "  (APScheduler SQLite store skipped)"))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rules = tmp / "register.yaml"
        write_rules(rules, n)
        distinct = tmp / "distinct.yaml"
        write_rules(distinct, n, distinct=True)

        print(f"\n1. registering {n:,} daily schedules (subprocess each; median wall / CPU; peak RSS, "
              "RSS after imports in brackets)   target: < 10 s, < 200 MB")
        as_json = tmp / "register.json"  # the same rules; JSON is what a generator would write
        # converted in a child process: the children measured here inherit this one's peak RSS
        subprocess.run([sys.executable, "-c", "import json, sys, yaml_rs; src, dst = sys.argv[1:]; "
                        "open(dst, 'w').write(json.dumps(yaml_rs.loads(open(src).read(), parse_datetime=False)))",
                        str(rules), str(as_json)], check=True)
        plan = [("taskengine (apply + Scheduler.load, durable)", "register-te", args.runs, (str(rules),)),
                ("taskengine, the same rule file as JSON", "register-te", args.runs, (str(as_json),))]
        if not args.no_distinct:
            plan.append(("taskengine, every definition distinct", "register-te-distinct", 1, (str(distinct),)))
        plan += [("APScheduler 3, MemoryJobStore (not durable)", "register-aps-memory", args.runs, ()),
                 ("schedule.every().day.at() (not durable)", "register-schedule", args.runs, ())]
        if have_sql:
            plan.append(("APScheduler 3, SQLAlchemyJobStore on SQLite", "register-aps-sqlite", 1, ()))
        for label, mode, runs, extra in plan:
            results = [run_child(mode, n, tmp, *extra) for _ in range(runs)]
            med = {k: statistics.median(r[k] for r in results) for k in ("wall_s", "cpu_s", "peak_mb", "base_mb")}
            assert all(r["persisted"] == n for r in results), [r["persisted"] for r in results]
            note = ""
            if "phase_peak_mb" in results[0]:
                phases = results[0]["phase_peak_mb"]
                note = "  peak after " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items())
            print(f"  {label:48s} {med['wall_s']:6.1f} s / {med['cpu_s']:5.1f} s CPU  "
                  f"{med['peak_mb']:5.0f} MB [{med['base_mb']:.0f}]  (x{runs}){note}")
            if mode == "register-te" and extra == (str(rules),):
                again = [run_child("restart-te", n, tmp, results[0]["db"]) for _ in range(runs)]
                assert all(r["persisted"] == n for r in again)
                print(f"  {'  then an engine start on that database':48s} "
                      f"{statistics.median(r['wall_s'] for r in again):6.1f} s / "
                      f"{statistics.median(r['cpu_s'] for r in again):5.1f} s CPU  "
                      f"{statistics.median(r['peak_mb'] for r in again):5.0f} MB  (Scheduler.load from schedule_state)")

        print("\n2. CPU per pass with nothing due (process_time over many passes, median of 5)   "
              "target: flat, <= APScheduler")
        sizes = [s for s in (1_000, 10_000, 100_000) if s <= n] or [n]
        rows = {label: [run_child(mode, size, tmp)["us"] for size in sizes] for label, mode in (
            ("taskengine Scheduler.tick", "pass-te"),
            ("APScheduler _process_jobs (memory)", "pass-aps"),
            ("schedule.run_pending", "pass-schedule"))}
        print("  " + " " * 38 + "".join(f"{size:>12,}" for size in sizes))
        for label, values in rows.items():
            print(f"  {label:38s}" + "".join(f"{v:>10,.1f}us" for v in values))

        m = args.lateness_schedules
        print(f"\n3. lateness, {m:,} schedules due at the same instant, real clock, 16 workers, "
              f"{args.rounds} rounds pooled (ms: p50 / p99 / max)   target: commit p99 < 50 ms")
        systems = [("taskengine Engine (runs in SQLite)", "late-te"),
                   ("APScheduler 3, MemoryJobStore", "late-aps-memory")]
        if have_sql:
            systems.append(("APScheduler 3, SQLAlchemyJobStore SQLite", "late-aps-sqlite"))
        for label, mode in systems:
            pooled: dict[str, list[float]] = {"commit_ms": [], "start_ms": [], "created_ms": []}
            for _ in range(args.rounds):
                result = run_child(mode, m, tmp)
                if result["setup_overran"]:
                    print(f"  ({label}: set-up overran the due time in one round; figures inflated)")
                for key in pooled:
                    pooled[key] += result.get(key, [])
            def fmt(values: list[float]) -> str:
                if not values:
                    return "-"
                return f"{pct(values, .5):7.1f} / {pct(values, .99):7.1f} / {max(values):7.1f}"
            print(f"  {label:42s} due->committed {fmt(pooled['commit_ms'])}   "
                  f"due->action start {fmt(pooled['start_ms'])}")
            if pooled["created_ms"]:
                print(f"  {'':42s} (runs.created_at, lower bound: {fmt(pooled['created_ms'])})")
    print(f"\nloadavg at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
