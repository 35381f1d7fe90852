"""A running engine picking up one changed schedule among N (issue 15).

N schedules (bench_scheduler.write_rules, every definition distinct) linked to 1,000 tasks are
applied to a fresh database; then, as in a running engine, a runtime is loaded and a
``Scheduler`` loads every schedule (warm: its definitions compiled and cached). Each run then
changes one schedule's time in the rule file and applies it (``apply_config`` in this process,
on a store of its own, as the CLI does; its time is printed but not part of the comparison:
see bench_apply.py), and times what the engine loop does on its next step:

  incremental: ``refresh_runtime`` + ``Scheduler.refresh`` (reads only the schedules the
               configuration change log names; what the engine does now)
  baseline:    ``refresh_runtime`` + ``Scheduler.load`` on the same warmed scheduler object
               (every schedule row with its state and every task link read again and the heap
               rebuilt: what the engine did before), after a change of its own

The two alternate (which goes first alternates too). Median of ``--runs``; the ratio is
baseline / incremental. ``--db postgresql://...`` runs it on an (empty) PostgreSQL database.

Usage: python benchmarks/bench_reload_one.py [--schedules 100000] [--runs 7] [--db URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FIRST = '  s0: {every: day, at: "00:00"'


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--db", help="a database URL (default: an SQLite file in a temporary directory)")
    args = parser.parse_args()
    from bench_scheduler import write_rules

    from taskengine_core.apply import apply_config
    from taskengine_core.model import load_runtime, refresh_runtime
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.scheduler import Scheduler
    from taskengine_core.store import open_store

    registry = get_plugin_manager().registry()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        db = args.db or str(tmp / "bench.db")
        rules = tmp / "rules.yaml"
        write_rules(rules, args.schedules, distinct=True)
        original = rules.read_text()
        assert FIRST in original
        cli_store = open_store(db)  # the `taskengine apply` side
        start = time.perf_counter()
        apply_config(cli_store, load_config([rules], registry))
        cold = time.perf_counter() - start
        store = open_store(db)  # the engine's
        runtime = load_runtime(store)
        scheduler = Scheduler(store)
        start = time.perf_counter()
        scheduler.load(runtime)
        first_load = time.perf_counter() - start
        print(f"nproc {os.cpu_count()}, {args.schedules} schedules ({'PostgreSQL' if '://' in db else 'SQLite'}), "
              f"median of {args.runs} runs; setup: apply {cold:.1f} s, first Scheduler.load {first_load:.2f} s")
        times: dict[str, list[float]] = {"incremental": [], "baseline": []}
        applies: list[float] = []
        minute = 0

        def change_one() -> None:
            nonlocal minute
            minute += 1
            rules.write_text(original.replace(FIRST, f'  s0: {{every: day, at: "00:{minute % 60:02d}"', 1))
            start = time.perf_counter()
            apply_config(cli_store, load_config([rules], registry))
            applies.append(time.perf_counter() - start)

        def pickup(how: str) -> None:
            nonlocal runtime
            change_one()
            start = time.perf_counter()
            runtime = refresh_runtime(store, runtime)
            if how == "incremental":
                scheduler.refresh(runtime)
            else:
                scheduler.load(runtime)
            times[how].append(time.perf_counter() - start)
            assert scheduler.generation == runtime.generation
            assert scheduler._next["s0"].minute == minute % 60  # the change was picked up

        for run in range(args.runs):
            for how in (("incremental", "baseline") if run % 2 == 0 else ("baseline", "incremental")):
                pickup(how)
        assert len(scheduler._schedules) == args.schedules
        inc, base = statistics.median(times["incremental"]), statistics.median(times["baseline"])
        print(f"incremental (refresh_runtime + Scheduler.refresh): {inc * 1000:8.1f} ms  "
              f"(min {min(times['incremental']) * 1000:.1f}, max {max(times['incremental']) * 1000:.1f})")
        print(f"baseline    (refresh_runtime + Scheduler.load):    {base * 1000:8.1f} ms  "
              f"(min {min(times['baseline']) * 1000:.1f}, max {max(times['baseline']) * 1000:.1f})")
        print(f"ratio baseline / incremental: {base / inc:.0f}x")
        print(f"(the apply of the one change, not compared: median {statistics.median(applies):.2f} s)")
        store.close()
        cli_store.close()


if __name__ == "__main__":
    main()
