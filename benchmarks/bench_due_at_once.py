"""Many schedules due at one instant (issue 15): due -> committed run and due -> action start.

For 1,000 and 10,000 schedules (``--sizes``), each a ``once:`` schedule of its own task running
a no-op action (concurrency parallel), a running ``Engine`` with 16 workers on SQLite, real clock:
- due -> committed: when the scheduler's transaction holding the slot's run row has returned;
- due -> action start: when the action function starts (``time.time()`` inside it).
Baseline in the same run: APScheduler 3's BackgroundScheduler with its memory store and a
16-thread pool, one DateTrigger job per schedule (committed = its EVENT_JOB_SUBMITTED listener,
nothing durable; start = the job function starting). Each measurement runs in a fresh
subprocess; ``--rounds`` rounds are pooled; the ratio is taskengine's p99 over APScheduler's.

Floors in the same run (``--no-floors`` leaves them out), each round in a fresh subprocess:
- SQL floor (benchmarks/sql_floors.py ``due_floor``): the rows the engine writes for N due slots,
  every value precomputed, no engine logic, on a database made by the engine's store (same
  schema, pragmas and synchronous): Scheduler._fire's transactions (1,000 schedules each: slot
  claims, run rows, decision rows, schedule state), then the executor's steps (claim 16, then
  16 + 512 ahead; each step also holds the previous step's outcomes: attempt rows + run UPDATE);
- interpreter floor: N ``threading.Event()`` and N no-op calls handed to 16 threads through a
  ``queue.Queue`` (what starting an action costs CPython at least), and a ThreadPoolExecutor(16).

Usage: python benchmarks/bench_due_at_once.py [--sizes 1000,10000] [--rounds 3] [--no-floors]
       [--profile N]  (cProfile of the engine's process for one round at N schedules; top entries)
       [--py-spy N --py-spy-out FILE]  (one engine round at N schedules, py-spy ``record --gil
       -r 200 --format raw`` attached from just before the due instant for --py-spy-seconds;
       ``--py-spy-args=--idle`` for wall time instead of GIL samples)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scheduler as base  # noqa: E402  (the lateness measurement lives there)


def lead_for(n: int) -> float:
    """Seconds between writing the rule file and the due instant: set-up must finish first."""
    return 6.0 + n * 0.0015


def child(mode: str, n: int, tmp: Path, profile: bool) -> None:
    import taskengine_core.engine  # noqa: F401  imported before the clock starts
    import apscheduler.schedulers.background  # noqa: F401

    if mode == "floor":
        import sql_floors
        from taskengine_core.plugins import get_plugin_manager

        out = sql_floors.due_floor(n, tmp, get_plugin_manager(extra_plugins=[base.NoopPlugin()]))
        out.update(sql_floors.interpreter_floor(n))
        print("RESULT " + json.dumps(out))
        return
    if mode == "te" and os.environ.get("BENCH_PYSPY_OUT"):
        _attach_py_spy_at_due(os.environ["BENCH_PYSPY_OUT"], float(os.environ["BENCH_PYSPY_SECONDS"]))
    if mode == "te":
        if profile:
            import cProfile
            import pstats
            import threading

            profiler = cProfile.Profile()
            threading.setprofile(lambda *a: None)
            profiler.enable()
            out = base.late_taskengine(n, tmp, lead=lead_for(n))
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(25)
        else:
            out = base.late_taskengine(n, tmp, lead=lead_for(n))
    else:
        out = base.late_apscheduler(n, None, lead=lead_for(n))
    out.pop("created_ms", None)
    print("RESULT " + json.dumps(out))


def _attach_py_spy_at_due(out: str, seconds: float) -> None:
    """Record this process with py-spy from 0.2 s before the due instant (set-up left out)."""
    import shutil
    import threading
    import time

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    due_at = base._due_at

    def when_due(lead: float) -> float:
        due = due_at(lead)

        def record():
            time.sleep(max(0.0, due - 0.2 - time.time()))
            subprocess.run([spy, "record", *os.environ["BENCH_PYSPY_ARGS"].split(), "-r", "200", "--format", "raw", "-o", out,
                            "--duration", str(int(seconds)), "--pid", str(os.getpid())],
                           capture_output=True)

        threading.Thread(target=record, daemon=True).start()
        return due

    base._due_at = when_due


def run_child(mode: str, n: int, tmp: Path, profile: bool = False) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(n), str(tmp), str(int(profile))],
                          capture_output=True, text=True)
    if profile:
        print(proc.stdout[:12000])
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{mode} {n} failed:\n{proc.stderr[-3000:]}")


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{base.pct(values, .5):7.1f} / {base.pct(values, .99):7.1f} / {max(values):7.1f}"


def print_floors(n: int, floors: list[dict], te_start_p99: float) -> None:
    def med(key):
        return statistics.median(f[key] for f in floors)

    print(f"  SQL floor, the engine's rows for {n:,} due slots, values precomputed, no engine logic "
          f"(median of {len(floors)}):")
    print(f"    Scheduler._fire's {floors[0]['fire_commits']} transaction(s) alone         {med('fire_ms'):7.1f} ms")
    print(f"    + executor steps to the last claim ({floors[0]['executor_commits']} commits)   "
          f"{med('claimed_ms'):7.1f} ms   (the earliest every action could start)")
    print(f"    + the last outcomes: the whole row-write sequence   {med('total_ms'):7.1f} ms   "
          f"target: action start p99 < 150 ms")
    parts = {k: statistics.median(f["parts_ms"].get(k, 0.0) for f in floors) for k in floors[0]["parts_ms"]}
    print("    parts (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    print(f"  interpreter floor: {n:,} threading.Event() {med('events_ms'):.1f} ms; {n:,} no-op calls to "
          f"16 threads via queue.Queue: all run {med('pool_ms'):.1f} ms, start p50 {med('start_p50_ms'):.1f} / "
          f"p99 {med('start_p99_ms'):.1f} ms; ThreadPoolExecutor(16) {med('tpe_ms'):.1f} ms")
    print(f"  taskengine action start p99 / SQL floor to the last claim: {te_start_p99 / med('claimed_ms'):.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, n, tmp, profile = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5] == "1"
        child(mode, n, tmp, profile)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, help="profile one engine round at this size")
    parser.add_argument("--py-spy", type=int, default=0, help="py-spy one engine round at this size")
    parser.add_argument("--py-spy-out", default="due.pyspy.txt")
    parser.add_argument("--py-spy-seconds", type=float, default=5)
    parser.add_argument("--py-spy-args", default="--gil", help="--gil (default) or --idle (wall time)")
    parser.add_argument("--no-floors", dest="floors", action="store_false",
                        help="leave out the SQL and interpreter floors")
    args = parser.parse_args()
    print(f"nproc={os.cpu_count()} loadavg={os.getloadavg()[0]:.1f} rounds={args.rounds} (pooled); "
          "ms p50 / p99 / max; targets: committed p99 < 50 ms, action start p99 < 150 ms at 10,000")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.profile:
            run_child("te", args.profile, tmp, profile=True)
            return
        if args.py_spy:
            os.environ["BENCH_PYSPY_OUT"] = str(Path(args.py_spy_out).resolve())
            os.environ["BENCH_PYSPY_SECONDS"] = str(args.py_spy_seconds)
            os.environ["BENCH_PYSPY_ARGS"] = args.py_spy_args
            result = run_child("te", args.py_spy, tmp)
            print(f"{args.py_spy:,} due: action start p50 / p99 / max {fmt(result['start_ms'])} ms; "
                  f"py-spy raw samples in {args.py_spy_out}")
            return
        for n in [int(s) for s in args.sizes.split(",")]:
            pooled = {}
            for mode in ("te", "aps"):
                got = {"commit_ms": [], "start_ms": []}
                for _ in range(args.rounds):
                    result = run_child(mode, n, tmp)
                    if result["setup_overran"]:
                        print(f"  ({mode} {n}: set-up overran the due time; figures inflated)")
                    for key in got:
                        got[key] += result[key]
                pooled[mode] = got
            te, aps = pooled["te"], pooled["aps"]
            print(f"\n{n:,} schedules due at once")
            print(f"  {'taskengine Engine (SQLite, durable)':40s} due->committed {fmt(te['commit_ms'])}   "
                  f"due->action start {fmt(te['start_ms'])}")
            print(f"  {'APScheduler 3 MemoryJobStore (baseline)':40s} due->submitted {fmt(aps['commit_ms'])}   "
                  f"due->action start {fmt(aps['start_ms'])}")
            ratio_c = base.pct(te["commit_ms"], .99) / base.pct(aps["commit_ms"], .99)
            ratio_s = base.pct(te["start_ms"], .99) / base.pct(aps["start_ms"], .99)
            print(f"  p99 ratio taskengine / APScheduler: committed {ratio_c:.2f}, action start {ratio_s:.2f}")
            if args.floors:
                print_floors(n, [run_child("floor", n, tmp) for _ in range(args.rounds)],
                             base.pct(te["start_ms"], .99))
    print(f"\nloadavg at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
