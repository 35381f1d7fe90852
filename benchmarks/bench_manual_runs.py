"""Queued manual runs (``taskengine tasks run --no-wait``), against huey's SQLite queue (issue 15).

Each round, in a fresh subprocess and a fresh database file (both SQLite, WAL, synchronous FULL):
1. enqueue N runs one at a time, each committed before the call returns: taskengine's
   ``Engine.queue_run`` (what ``tasks run --no-wait`` calls) with no engine running; huey's
   ``task()`` call on a ``SqliteHuey``;
2. start the consumer and wait until every run has completed: a taskengine ``Engine`` (16
   workers) until every run is final in the database (attempt row, outcome and decision
   committed); huey's consumer with ``--huey-workers`` thread workers until the task function has
   run N times (huey stores nothing for a task returning None).
Runs/s = N / (enqueue + completion time). The action / task is a no-op. Median of ``--rounds``;
the ratio is taskengine's runs/s over huey's, both measured in the same run.

Floors in the same run (``--no-floors`` leaves them out; benchmarks/sql_floors.py), each round
in a fresh subprocess and database in the same temporary directory:
(a) raw SQLite: N times ``BEGIN IMMEDIATE; INSERT one small row; COMMIT`` (WAL, synchronous
    FULL): the fsync floor of one commit per call;
(b) the engine's enqueue statements with precomputed values: the run row (store.runs.insert)
    and the manual decision row (store.decisions.record_decision), one commit per call, on a
    database made by the engine's store; then the executor's claim and outcome rows for them
    (claims of 16, then 16 + 512 ahead, outcomes in the next step's transaction).
The script prints enqueue/s for each, and the best end-to-end ratio to huey taskengine could
reach if its enqueue ran at floor (b), and at (a), with its completion rate as measured.

With ``--baseline-tree DIR`` (a tree holding another taskengine's ``taskengine_core``, plugins as
``taskengine_<name>`` and ``benchmarks``, e.g. ``git archive main``), each round also times that
tree's taskengine (its own bench script as child, ``PYTHONPATH=DIR``), alternating with this one,
and the script prints this tree's rates over the baseline's (an A/B in one run).

Usage: python benchmarks/bench_manual_runs.py [--runs 5000] [--rounds 5] [--huey-workers 1] [--no-floors]
       [--baseline-tree DIR]
       [--profile]  (py-spy style top entries via cProfile for one taskengine round, both phases)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from taskengine_core.hookspecs import hookimpl

sys.path.insert(0, str(Path(__file__).resolve().parent))
RULES = "tasks:\n  t: {action: bench.noop, concurrency: parallel}\n"

DONE = [0]
_lock = threading.Lock()


def noop(params=None, ctx=None):
    with _lock:
        DONE[0] += 1


class NoopPlugin:
    __name__ = "bench-noop"

    @hookimpl
    def register_actions(self, register):
        register("bench.noop", noop, schema={"type": "object"}, idempotent=True)


def round_taskengine(n: int, tmp: Path, profile: bool = False) -> dict:
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store

    rules = tmp / "manual.yaml"
    rules.write_text(RULES)
    manager = get_plugin_manager(extra_plugins=[NoopPlugin()])
    db = tmp / f"manual-{time.monotonic_ns()}.db"
    store = Store(db)
    apply_config(store, load_config([rules], manager.registry()))
    store.close()
    producer = Engine(db, manager=manager, workers=1, wake_listener=False)  # as `tasks run --no-wait`
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    for _ in range(n):
        producer.queue_run("t", actor="cli")
    queued = time.perf_counter()
    if profiler:
        profiler.disable()
        _print_profile(profiler, "enqueue")
    engine = Engine(db, manager=manager, workers=16, wake_listener=False)
    if profiler:
        profiler = __import__("cProfile").Profile()
        profiler.enable()
    t1 = time.perf_counter()
    engine.executor.start()
    deadline = t1 + 300
    while time.perf_counter() < deadline:
        engine.step()
        if not engine.executor._active() and engine.executor._done.empty():
            if _final(engine) == n:
                break
            engine.wake.wait(0.005)
            engine.wake.clear()
    done = time.perf_counter()
    if profiler:
        profiler.disable()
        _print_profile(profiler, "completion (engine loop thread only)")
    engine.executor.stop(0)
    assert DONE[0] == n, DONE[0]
    return {"enqueue_s": queued - start, "complete_s": done - t1}


def _final(engine) -> int:
    from taskengine_core.store.runs import count_by_status

    return count_by_status(engine.store.conn).get("succeeded", 0)


def _print_profile(profiler, what: str) -> None:
    import io
    import pstats

    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(int(os.environ.get("PROFILE_TOP", "18")))
    print(f"--- profile: {what}\n" + "\n".join(out.getvalue().splitlines()[:int(os.environ.get("PROFILE_TOP", "18")) + 22]))


def round_huey(n: int, tmp: Path, workers: int) -> dict:
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=str(tmp / f"huey-{time.monotonic_ns()}.db"))
    task = huey.task()(noop)
    start = time.perf_counter()
    for _ in range(n):
        task()
    queued = time.perf_counter()
    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                    initial_delay=0.001, max_delay=0.01, check_worker_health=False)
    t1 = time.perf_counter()
    consumer.scheduler.start()
    for _, worker in consumer.worker_threads:
        worker.start()
    while DONE[0] < n:
        time.sleep(0.002)
    done = time.perf_counter()
    consumer.stop(graceful=True)
    return {"enqueue_s": queued - start, "complete_s": done - t1}


def child(mode: str, n: int, tmp: Path, extra: str) -> None:
    import huey  # noqa: F401
    import taskengine_core.engine  # noqa: F401

    if mode == "floor":
        import sql_floors
        from taskengine_core.plugins import get_plugin_manager

        enqueue, complete = sql_floors.enqueue_floor_rate(n, tmp, RULES, get_plugin_manager(extra_plugins=[NoopPlugin()]))
        out = {"raw": sql_floors.raw_commit_rate(n, tmp), "enqueue": enqueue, "complete": complete}
    elif mode == "te":
        out = round_taskengine(n, tmp, profile=extra == "profile")
    else:
        out = round_huey(n, tmp, int(extra))
    print("RESULT " + json.dumps(out))


def run_child(mode: str, n: int, tmp: Path, extra: str, tree: Path | None = None) -> dict:
    script, env = __file__, None
    if tree is not None:  # another taskengine's tree, its own copy of this script as the child
        script = str(tree / "benchmarks" / Path(__file__).name)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, script, "--child", mode, str(n), str(tmp), extra],
                          capture_output=True, text=True, env=env)
    if extra == "profile":
        print(proc.stdout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")


def print_floors(floors: list[dict], te_complete: float, huey_total: float) -> None:
    raw = statistics.median(f["raw"] for f in floors)
    enqueue = statistics.median(f["enqueue"] for f in floors)
    print(f"  floor (a) raw SQLite, BEGIN IMMEDIATE; INSERT one row; COMMIT (WAL, FULL) enqueue {raw:8,.0f}/s")
    complete = statistics.median(f["complete"] for f in floors)
    print(f"  floor (b) the engine's run + decision rows, values precomputed   enqueue {enqueue:8,.0f}/s  "
          f"(and its claim + outcome rows: complete {complete:8,.0f}/s)")
    both = 1 / (1 / enqueue + 1 / complete)
    print(f"  the engine's rows alone, enqueue and completion at their floors: end to end {both:8,.0f} runs/s "
          f"= {both / huey_total:.2f} x huey")
    for label, rate in (("(b)", enqueue), ("(a)", raw)):
        best = 1 / (1 / rate + 1 / te_complete)
        print(f"  best end to end if taskengine's enqueue ran at floor {label}, completion as measured: "
              f"{best:8,.0f} runs/s = {best / huey_total:.2f} x huey")
        gap = 1 / (2 * huey_total) - 1 / rate  # seconds per run left for completion at 2 x huey
        need = f"{1 / gap:,.0f} runs/s" if gap > 0 else "impossible (the enqueue floor alone is under 2 x huey)"
        print(f"    completion rate needed for 2 x huey with enqueue at floor {label}: {need} "
              f"(measured {te_complete:,.0f}/s)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--huey-workers", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-floors", dest="floors", action="store_false")
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="another taskengine tree (e.g. main's, from git archive) timed in the same run")
    args = parser.parse_args()
    n = args.runs
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.profile:
            run_child("te", n, tmp, "profile")
            return
        print(f"nproc={os.cpu_count()} loadavg={os.getloadavg()[0]:.1f} runs={n} rounds={args.rounds} "
              f"(medians); huey consumer: {args.huey_workers} thread worker(s)")
        results = {"te": [], "huey": [], "floor": [], "base": []}
        for _ in range(args.rounds):  # alternate, so that load changes hit both alike
            if args.baseline_tree:
                results["base"].append(run_child("te", n, tmp, "", tree=args.baseline_tree.resolve()))
            results["te"].append(run_child("te", n, tmp, ""))
            results["huey"].append(run_child("huey", n, tmp, str(args.huey_workers)))
            if args.floors:
                results["floor"].append(run_child("floor", n, tmp, ""))
        rates, completes, enqueues = {}, {}, {}
        rows = [("te", "taskengine queue_run + Engine (durable rows)"),
                ("huey", "huey SqliteHuey enqueue + consumer (baseline)")]
        if args.baseline_tree:
            rows.insert(1, ("base", "taskengine of --baseline-tree (same run)"))
        for key, label in rows:
            rs = results[key]
            enqueue = enqueues[key] = statistics.median(n / r["enqueue_s"] for r in rs)
            complete = completes[key] = statistics.median(n / r["complete_s"] for r in rs)
            total = rates[key] = statistics.median(n / (r["enqueue_s"] + r["complete_s"]) for r in rs)
            print(f"  {label:46s} enqueue {enqueue:8,.0f}/s  complete {complete:8,.0f}/s  "
                  f"end to end {total:8,.0f} runs/s")
        print(f"  ratio taskengine / huey: {rates['te'] / rates['huey']:.2f}   target: >= 2")
        if args.baseline_tree:
            print(f"  this tree / baseline tree: enqueue {enqueues['te'] / enqueues['base']:.2f}  "
                  f"complete {completes['te'] / completes['base']:.2f}  end to end {rates['te'] / rates['base']:.2f}")
        if args.floors:
            print_floors(results["floor"], completes["te"], rates["huey"])
            enqueue_floor = statistics.median(f["enqueue"] for f in results["floor"])
            complete_floor = statistics.median(f["complete"] for f in results["floor"])
            for key in ("te", "base") if args.baseline_tree else ("te",):
                print(f"  {'this tree' if key == 'te' else 'baseline tree'} at its floor (b): enqueue "
                      f"{enqueues[key] / enqueue_floor:.2f}, complete {completes[key] / complete_floor:.2f}")
    print(f"loadavg at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
