"""A/B of the `webhook.send` action path across taskengine trees, alternated round by round.

Each round runs, for every tree in turn and in a fresh subprocess with ``PYTHONPATH`` at that
tree (``.`` means the installed one): that tree's own ``benchmarks/bench_webhooks.py``
``engine_run`` twice (instant receiver, ``--deliveries`` each), then the bare aiohttp client with
32 connections once, against the same receiver. A tree is made with
``git archive REV taskengine_core plugins benchmarks | tar -x -C TREE`` plus one symlink
``taskengine_<name> -> plugins/<name>`` per plugin, so the tree imports its own plugins.

Usage: python benchmarks/ab_webhooks.py TREE[,TREE...] [--deliveries 6000] [--rounds 3]
Prints per round and tree the rate, its ratio to aiohttp-32 and the CPU per delivery; then the
medians per tree (nproc is printed: read the ratios, the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r'''
import json, statistics, sys
sys.path.insert(0, sys.argv[1])
import bench_webhooks as bench
proc, url = bench.start_server(0.0)
try:
    bench.aiohttp_client(url, 300)  # imports and first connections
    rates = [bench.engine_run(url, int(sys.argv[2]), "action") for _ in range(2)]
    client = bench.aiohttp_client(url, int(sys.argv[2]))
finally:
    proc.kill()
print("RESULT " + json.dumps({"rate": statistics.median(rates), "client": client,
                              "cpu_ms": statistics.median(bench.CPU_MS["action"])}))
'''


def one(tree: str, n: int) -> dict:
    installed = tree == "."
    env = dict(os.environ, PYTHONPATH="" if installed else tree)
    scripts = str(HERE if installed else Path(tree) / "benchmarks")
    out = subprocess.run([sys.executable, "-c", CHILD, scripts, str(n)], env=env, capture_output=True,
                         text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{tree} failed:\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", help="comma-separated trees; '.' is the installed taskengine")
    parser.add_argument("--deliveries", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = args.trees.split(",")
    print(f"nproc={os.cpu_count()} deliveries={args.deliveries} rounds={args.rounds}")
    results: dict[str, list[dict]] = {tree: [] for tree in trees}
    for number in range(args.rounds):
        for tree in trees:
            r = one(tree, args.deliveries)
            results[tree].append(r)
            print(f"  round {number} {tree}: {r['rate']:,.0f}/s = {r['rate'] / r['client']:.3f} x aiohttp-32 "
                  f"({r['client']:,.0f}/s), {r['cpu_ms']:.3f} ms CPU/delivery", flush=True)
    for tree, rs in results.items():
        print(f"{tree}: median {statistics.median(r['rate'] for r in rs):,.0f}/s, "
              f"{statistics.median(r['rate'] / r['client'] for r in rs):.3f} x aiohttp-32, "
              f"{statistics.median(r['cpu_ms'] for r in rs):.3f} ms CPU/delivery")


if __name__ == "__main__":
    main()
