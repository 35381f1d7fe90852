"""validate and apply of a generated rule file: 10,000 tasks, 1,000 schedules, 10,000 event rules.

Usage: python benchmarks/bench_rules.py [--runs 5]
Baseline measured in the same run: parsing the same file with PyYAML's C loader alone (the floor
for any YAML-based validation) and raw sqlite3 executemany of the same rows (the floor for apply).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import yaml


def generate(path: Path, tasks: int = 10_000, schedules: int = 1_000, events: int = 10_000) -> None:
    lines = ["settings:", "  timezone: Europe/Berlin", "schedules:"]
    for i in range(schedules):
        lines.append(f"  s{i}: {{every: week, days: [sat], at: \"{i % 24:02d}:{i % 60:02d}\"}}")
    lines.append("tasks:")
    for i in range(tasks):
        lines.append(f"  t{i}:")
        lines.append("    action: command.run")
        lines.append(f"    with: {{argv: [echo, \"task {i} {{{{ event.type }}}}\"], timeout: 30}}")
        lines.append(f"    schedules: [s{i % schedules}]")
        lines.append("    retry: {attempts: 3, backoff: 10s}")
    lines.append("events:")
    for i in range(events):
        lines.append(f"  e{i}: {{on: type-{i % 1000}, when: {{data.user: user-{i}}}, tasks: [t{i % tasks}]}}")
    path.write_text("\n".join(lines) + "\n")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from taskengine_core.apply import apply_config
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store

    registry = get_plugin_manager().registry()
    results: dict[str, list[float]] = {k: [] for k in ("yaml_only", "validate", "apply", "reapply", "raw_insert")}
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "big.yaml"
        generate(rules)
        size = rules.stat().st_size
        for run in range(args.runs):
            db = Path(tmp) / f"bench{run}.db"
            results["yaml_only"].append(timed(lambda: yaml.load(rules.read_text(), Loader=yaml.CSafeLoader)))
            config = None

            def validate():
                nonlocal config
                config = load_config([rules], registry)

            results["validate"].append(timed(validate))
            store = Store(db)
            results["apply"].append(timed(lambda: apply_config(store, load_config([rules], registry))))
            results["reapply"].append(timed(lambda: apply_config(store, load_config([rules], registry))))
            store.close()
            raw = sqlite3.connect(Path(tmp) / f"raw{run}.db")
            raw.execute("CREATE TABLE t (name TEXT PRIMARY KEY, spec TEXT)")
            rows = [(f"{s}.{n}", json.dumps(d.spec)) for s, objs in config.objects.items() for n, d in objs.items()]
            results["raw_insert"].append(timed(lambda: (raw.executemany("INSERT INTO t VALUES (?, ?)", rows), raw.commit())))
            raw.close()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"cpu_count={os.cpu_count()} runs={args.runs} file={size / 1e6:.1f} MB "
          "(10,000 tasks, 1,000 schedules, 10,000 event rules)")
    print(f"  PyYAML C loader alone (baseline): {med['yaml_only']:.2f} s")
    print(f"  validate:                          {med['validate']:.2f} s  (target < 2 s; "
          f"{med['validate'] / med['yaml_only']:.1f}x parsing alone)")
    print(f"  apply (validate + write):          {med['apply']:.2f} s  (target < 3 s)")
    print(f"  re-apply unchanged:                {med['reapply']:.2f} s  (target < 3 s)")
    print(f"  raw sqlite3 executemany of the same rows (baseline): {med['raw_insert'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
