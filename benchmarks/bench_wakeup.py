"""Emit-to-start latency: from ``taskengine emit`` in another process committing an event to
the running engine starting its run (``runs.started_at - events.received_at``).

  (a) the engine woken by the CLI's poke (wake-up socket)
  (b) baseline in the same run: the same engine polling only (``wake_listener=False``, the
      default 0.2 s poll interval: what every emit from another process waited before)

Emits are spaced by a random 0.1-0.4 s so they land anywhere in the poll cycle.

    python benchmarks/bench_wakeup.py [--emits 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

RULES = """
tasks:
  t: {action: command.run, with: {argv: ["true"]}}
events:
  e: {on: go, tasks: [t]}
"""


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def one(tmp: Path, listen: bool, emits: int, rng: random.Random) -> list[float]:
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store

    db = tmp / f"wake-{listen}-{time.monotonic_ns()}.db"
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    store = Store(db)
    apply_config(store, load_config([rules], get_plugin_manager().registry()))
    store.close()
    engine = Engine(db, wake_listener=listen)
    engine.start()
    try:
        for _ in range(emits):
            time.sleep(rng.uniform(0.1, 0.4))
            subprocess.run([sys.executable, "-m", "taskengine_core", "--db", str(db), "emit", "go"],
                           check=True, capture_output=True)
        conn = sqlite3.connect(db)
        while conn.execute("SELECT count(*) FROM runs WHERE started_at IS NOT NULL").fetchone()[0] < emits:
            time.sleep(0.05)
        rows = conn.execute("SELECT e.received_at, r.started_at FROM runs r JOIN events e "
                            "ON e.id = r.event_id").fetchall()
    finally:
        engine.stop(5)
    return [seconds(started) - seconds(received) for received, started in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emits", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(7)
    woken, polled = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            woken.append(one(Path(tmp), True, args.emits, rng))
            polled.append(one(Path(tmp), False, args.emits, rng))
    ms = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(len(xs) * q))] * 1000  # noqa: E731
    med = lambda rounds, q: statistics.median(ms(r, q) for r in rounds)  # noqa: E731
    print(f"cpu_count={os.cpu_count()} emits={args.emits} rounds={args.rounds}; "
          f"emit commit -> run started, medians over rounds")
    print(f"  (a) woken by the CLI's poke     p50 {med(woken, 0.5):6.1f} ms  p90 {med(woken, 0.9):6.1f} ms  "
          f"max {med(woken, 1.0):6.1f} ms")
    print(f"  (b) polling every 0.2 s (base)  p50 {med(polled, 0.5):6.1f} ms  p90 {med(polled, 0.9):6.1f} ms  "
          f"max {med(polled, 1.0):6.1f} ms")
    print(f"  median latency {med(polled, 0.5) / max(med(woken, 0.5), 0.001):.0f}x lower with the wake-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
