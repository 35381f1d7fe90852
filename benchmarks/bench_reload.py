"""A configuration change while the engine runs: how long the engine loop stops for it.

The generated rule file of bench_rules.py (10,000 tasks, 1,000 schedules, 10,000 event rules).
Each round toggles one task (``tasks disable`` / ``enable``), then times the engine's next step,
in which it picks the change up (reload + the scheduler's reload; nothing is due, so nothing
else runs). A one-rule edit (``apply`` with one condition changed) is timed the same way.
Baseline in the same run: the full rebuild every change used to cost (``load_runtime``).

Usage: python benchmarks/bench_reload.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_rules import generate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from taskengine_core.apply import apply_config
    from taskengine_core.catalog import set_enabled
    from taskengine_core.engine import Engine
    from taskengine_core.model import load_runtime, refresh_runtime
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store
    from taskengine_core.task_logs import explain_event

    manager = get_plugin_manager()
    with tempfile.TemporaryDirectory() as tmp:
        rules, db = Path(tmp) / "big.yaml", Path(tmp) / "reload.db"
        generate(rules)
        store = Store(db)
        apply_config(store, load_config([rules], manager.registry()))
        edited = Path(tmp) / "edited.yaml"
        original = rules.read_text()
        engine = Engine(db, manager=manager, workers=1)
        engine.step()  # the scheduler loads once
        full, refresh, toggle_step, edit_step = [], [], [], []
        for n in range(args.rounds):
            start = time.perf_counter()
            load_runtime(store)
            full.append(time.perf_counter() - start)

            set_enabled(store, "task", "t17", n % 2 == 1)
            start = time.perf_counter()
            engine.step()
            toggle_step.append(time.perf_counter() - start)
            assert engine.runtime.tasks["t17"].enabled is (n % 2 == 1)

            before = load_runtime(store)
            set_enabled(store, "task", "t18", n % 2 == 1)
            start = time.perf_counter()
            refresh_runtime(store, before)
            refresh.append(time.perf_counter() - start)

            edited.write_text(original.replace("user-4242}", f"user-4242-{n}}}"))
            apply_config(store, load_config([edited], manager.registry()))
            start = time.perf_counter()
            engine.step()
            edit_step.append(time.perf_counter() - start)
            assert any(r.name == "e4242" for r in engine.runtime.rules.match(
                {"type": "type-242", "data": {"user": f"user-4242-{n}"}}))
        with store.write() as db:
            db.conn.execute("INSERT INTO events (id, type, source, data, time, received_at) VALUES "
                            "('ev', 'type-242', 'bench', '{\"user\": \"user-242\"}', 't', 't')")
        explain = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            answer = explain_event(store, "ev")
            explain.append(time.perf_counter() - start)
        assert len(answer["rules_now"]) == 10_000
        engine.store.close()

    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"cpu_count={os.cpu_count()} rounds={args.rounds}: 10,000 tasks, 1,000 schedules, "
          f"10,000 event rules; medians")
    print(f"  full rebuild, load_runtime (baseline: every change did this) {ms(full):8.1f} ms")
    print(f"  one-task toggle, refresh_runtime                            {ms(refresh):8.1f} ms")
    print(f"  one-task toggle, the engine step that picks it up           {ms(toggle_step):8.1f} ms"
          f"   ({ms(full) / ms(toggle_step):.0f}x less than the rebuild)")
    print(f"  one event rule edited by apply, the engine step             {ms(edit_step):8.1f} ms")
    print(f"  logs explain (every rule's verdict; was a full rebuild plus) {ms(explain):8.1f} ms")
    ok = ms(toggle_step) < 50
    print("target (one-task toggle < 50 ms at 10,000 rules):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
