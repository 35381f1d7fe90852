"""One schedule changed among 100,000, end to end, against a running engine (issue 15).

The rule files: N schedules (bench_scheduler.write_rules, every definition distinct) linked to
1,000 tasks, split into files of 1,000 schedules plus one of tasks (bench_apply.split_rules), as
a directory. They are applied to a fresh SQLite database, and ``taskengine run`` is started on it
(a real engine process, no ingress). Once the engine has loaded every schedule (each has its
``schedule_state`` row), each round edits one schedule's time in place in one file and times:

  apply:  ``taskengine apply DIR`` as a fresh process (start-up included), until it exits;
  pickup: from the apply's exit until the running engine has stored the schedule's new next
          fire time (its ``schedule_state`` row, polled every millisecond by this script);
  total:  the two together: the edit taking effect in the engine.

The baseline is the same on another source tree (``--baseline-tree``, else ``git archive`` of
``--baseline-rev``, default ``main``; issue 15's figures used a42c80d), in the same run; its engine and CLI import that tree. The steps of the
two alternate. Median of ``--rounds`` per engine; the ratio is baseline / current.

Usage: python benchmarks/bench_apply_live.py [--schedules 100000] [--rounds 7]
       [--baseline-rev REV | --baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_apply import add_baseline_options, baseline_tree, split_rules  # noqa: E402


def next_fire(db: Path, schedule: str) -> str | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT next_fire FROM schedule_state WHERE schedule = ?", (schedule,)).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def states(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM schedule_state").fetchone()[0]
    finally:
        conn.close()


class Live:
    """One source tree's engine on its own database and rule directory."""

    def __init__(self, name: str, tree: Path, rules: Path, tmp: Path, schedules: int) -> None:
        self.name, self.tree, self.rules = name, tree, rules
        self.db = tmp / f"{name}.db"
        home = tmp / f"home-{name}"
        home.mkdir()
        self.env = {**os.environ, "PYTHONPATH": str(tree), "TASKENGINE_HOME": str(home),
                    "TASKENGINE_DB": str(self.db)}
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.cwd = home  # no source tree in the working directory: python -m would import it
        self.cli = [sys.executable, "-m", "taskengine_core"]
        subprocess.run(self.cli + ["apply", str(rules)], env=self.env, cwd=self.cwd, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.engine = subprocess.Popen(self.cli + ["run"], env=self.env, cwd=self.cwd,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 600
        while states(self.db) < schedules:
            if self.engine.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name}: the engine did not load: {self.engine.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        self.results: list[tuple[float, float]] = []

    def round(self, n: int) -> None:
        part = self.rules / "part-0000.yaml"
        text = part.read_text()
        old = next_fire(self.db, "s0")
        minute = 10 + n % 40
        edited = text.replace(text[text.index("  s0: "):text.index("\n", text.index("  s0: "))],
                              f'  s0: {{every: day, at: "01:{minute:02d}"}}', 1)
        part.write_text(edited)
        start = time.perf_counter()
        subprocess.run(self.cli + ["apply", str(self.rules)], env=self.env, cwd=self.cwd, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        applied = time.perf_counter()
        deadline = applied + 120
        while next_fire(self.db, "s0") == old:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{self.name}: the engine did not pick the change up")
            time.sleep(0.001)
        done = time.perf_counter()
        self.results.append((applied - start, done - applied))

    def stop(self) -> None:
        self.engine.terminate()
        self.engine.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    add_baseline_options(parser)
    args = parser.parse_args()
    from bench_scheduler import write_rules

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        base = baseline_tree(args, tmp)
        source = tmp / "all.yaml"
        write_rules(source, args.schedules, distinct=True)
        lives = []
        for name, tree in (("baseline", base), ("current", HERE.parent)):
            rules = tmp / f"rules-{name}"
            split_rules(source, rules)
            lives.append(Live(name, tree, rules, tmp, args.schedules))
        try:
            for n in range(args.rounds):
                for live in (lives if n % 2 == 0 else lives[::-1]):
                    live.round(n)
        finally:
            for live in lives:
                live.stop()
        print(f"nproc {os.cpu_count()}, {args.schedules} schedules in {args.schedules // 1000} files of 1,000 "
              f"+ tasks, one schedule changed, median of {args.rounds} rounds (ms)")
        medians = {}
        for live in lives:
            apply = statistics.median(a for a, _ in live.results) * 1000
            pickup = statistics.median(p for _, p in live.results) * 1000
            total = statistics.median(a + p for a, p in live.results) * 1000
            medians[live.name] = (apply, pickup, total)
            print(f"  {live.name:8s} apply {apply:8.1f}  pickup {pickup:8.1f}  total {total:8.1f}")
        b, c = medians["baseline"], medians["current"]
        print(f"  ratio baseline/current: apply {b[0] / c[0]:.2f}x  pickup {b[1] / c[1]:.2f}x  "
              f"total {b[2] / c[2]:.2f}x  (target: total < 200 ms)")


if __name__ == "__main__":
    main()
