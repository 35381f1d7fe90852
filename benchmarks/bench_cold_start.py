"""Cold start of `taskengine --help` against `python -c pass`, measured in the same run.

Usage: python benchmarks/bench_cold_start.py [--runs 21]
The two commands alternate so that machine noise hits both alike; the figure is the difference
of the medians. Target: under 150 ms more than bare Python.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    script = shutil.which("taskengine") or sys.exit("taskengine is not installed")
    bare, cli, version = [], [], []
    for _ in range(args.runs):
        bare.append(timed([sys.executable, "-c", "pass"]))
        cli.append(timed([script, "--help"]))
        version.append(timed([script, "--version"]))
    b, c, v = (statistics.median(x) * 1000 for x in (bare, cli, version))
    print(f"cpu_count={os.cpu_count()} runs={args.runs} (medians)")
    print(f"  python -c pass (baseline): {b:.0f} ms")
    print(f"  taskengine --help:         {c:.0f} ms  (+{c - b:.0f} ms; target < +150 ms)")
    print(f"  taskengine --version:      {v:.0f} ms  (+{v - b:.0f} ms; plugin versions from package metadata)")


if __name__ == "__main__":
    main()
