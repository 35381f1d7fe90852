"""Many schedules due at one instant (issue 15): due -> committed run and due -> action start.

For 1,000 and 10,000 schedules (``--sizes``), each a ``once:`` schedule of its own task running
a no-op action (concurrency parallel), a running ``Engine`` with 16 workers on SQLite, real clock:
- due -> committed: when the scheduler's transaction holding the slot's run row has returned;
- due -> action start: when the action function starts (``time.time()`` inside it).
Baseline in the same run: APScheduler 3's BackgroundScheduler with its memory store and a
16-thread pool, one DateTrigger job per schedule (committed = its EVENT_JOB_SUBMITTED listener,
nothing durable; start = the job function starting). Each measurement runs in a fresh
subprocess; ``--rounds`` rounds are pooled; the ratio is taskengine's p99 over APScheduler's.

Usage: python benchmarks/bench_due_at_once.py [--sizes 1000,10000] [--rounds 3]
       [--profile N]  (cProfile of the engine's process for one round at N schedules; top entries)
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, n, tmp, profile = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5] == "1"
        child(mode, n, tmp, profile)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, help="profile one engine round at this size")
    args = parser.parse_args()
    print(f"nproc={os.cpu_count()} loadavg={os.getloadavg()[0]:.1f} rounds={args.rounds} (pooled); "
          "ms p50 / p99 / max; targets: committed p99 < 50 ms, action start p99 < 150 ms at 10,000")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.profile:
            run_child("te", args.profile, tmp, profile=True)
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
    print(f"\nloadavg at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
