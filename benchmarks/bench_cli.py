"""Start-up cost of the commands scripts call often, against bare Python in the same run.

Usage: python benchmarks/bench_cli.py [--runs 21]

Each round runs `python -c pass`, `taskengine --help`, `taskengine emit`, `taskengine logs list`
once each, in turn, so machine noise hits them alike; the figures are medians over the rounds,
as wall time and as CPU time (user + sys of the child, steadier on a busy machine), and the
difference from bare Python. Bytecode caches are used as an installed program would use them
(PYTHONDONTWRITEBYTECODE is unset, and one warm-up round writes them). The database is a
temporary one with the shipped rules applied and a few hundred runs logged.

Targets (difference from bare Python): emit < 60 ms, --help < 60 ms, logs list < 120 ms.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS_MS = {"taskengine --help": 60, "taskengine emit": 60, "taskengine logs list": 120}


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def prepare(script: str, env: dict) -> None:
    subprocess.run([script, "apply", str(ROOT / "rules")], env=env, check=True, capture_output=True)
    # something for `logs list` to read: events evaluated into runs of the hello rule
    code = ("import sys\nfrom taskengine_core.engine import Engine\n"
            "e = Engine(sys.argv[1])\nfor n in range(300):\n    e.emit('demo.hello', {'name': f'n{n}'})\n"
            "e.executor.start(); e.run_until_idle(timeout=300); e.executor.stop(0)\n")
    subprocess.run([sys.executable, "-c", code, env["TASKENGINE_DB"]], env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="rounds (default 21)")
    args = parser.parse_args()
    script = shutil.which("taskengine", path=os.path.dirname(sys.executable)) or shutil.which("taskengine")
    if not script:
        sys.exit("taskengine is not installed next to this Python")
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        env["TASKENGINE_HOME"] = tmp
        env["TASKENGINE_DB"] = str(Path(tmp) / "taskengine.db")
        prepare(script, env)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "taskengine --help": [script, "--help"],
            "taskengine emit": [script, "emit", "bench.event", "user=alice", "n=1"],
            "taskengine logs list": [script, "logs", "list"],
        }
        for argv in commands.values():  # warm-up: bytecode caches, page cache
            timed(argv, env)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                results[name].append(timed(argv, env))
    wall = {n: statistics.median(w for w, _ in r) * 1000 for n, r in results.items()}
    cpu = {n: statistics.median(c for _, c in r) * 1000 for n, r in results.items()}
    base_wall, base_cpu = wall["python -c pass"], cpu["python -c pass"]
    load = os.getloadavg()[0]
    print(f"nproc={os.cpu_count()} runs={args.runs} (medians) load average {load:.1f} python {sys.version.split()[0]}")
    print(f"{'command':24} {'wall ms':>8} {'over':>7} {'cpu ms':>8} {'over':>7}  target (over bare Python)")
    for name in commands:
        over_wall, over_cpu = wall[name] - base_wall, cpu[name] - base_cpu
        target = TARGETS_MS.get(name)
        verdict = ""
        if target is not None:
            verdict = f"< {target} ms: {'met' if over_wall < target else 'NOT met'} (wall)"
        print(f"{name:24} {wall[name]:8.0f} {over_wall:+7.0f} {cpu[name]:8.0f} {over_cpu:+7.0f}  {verdict}")


if __name__ == "__main__":
    main()
