"""Registering schedules through ``taskengine apply`` (issue 15), end to end.

For each rule file (N schedules linked to 1,000 tasks, written by bench_scheduler.write_rules:
"shared" = 1,440 distinct definitions, "distinct" = every definition different; "split" = the
distinct file cut into 100 files of 1,000 schedules plus one of tasks and settings, applied as a
directory, the change made in place in one of them), on a fresh
database, each step a fresh ``python -m taskengine_core`` subprocess timed by wall clock:
  1. ``taskengine apply FILE`` (cold: everything created)
  2. an engine's ``Scheduler.load`` after it (compiles the schedules, persists next fire times)
  3. ``taskengine apply`` of the same file with one schedule's time changed in place (incremental)
  4. ``Scheduler.load`` again (the engine picking up the one change)
  5. ``taskengine apply`` of that same changed file again (nothing changed: a no-op apply)
The baseline is the same steps run on another source tree (default: ``git archive main``),
measured in the same run; the ratio is baseline / current. Median of ``--runs``.

Usage: python benchmarks/bench_apply.py [--schedules 100000] [--runs 3] [--baseline-rev main]
       [--files shared,distinct]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

LOAD = ("from taskengine_core.model import load_runtime; from taskengine_core.scheduler import Scheduler; "
        "from taskengine_core.store import Store; s = Store({db!r}); Scheduler(s).load(load_runtime(s))")


def timed(cmd: list[str], env: dict) -> float:
    """Wall seconds of ``cmd``, run from a directory holding no source tree: ``python -m`` puts
    the working directory first on sys.path, which would shadow the tree under test."""
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   cwd=env["TASKENGINE_HOME"])
    return time.perf_counter() - start


def split_rules(source: Path, directory: Path, per_file: int = 1000) -> None:
    """``source`` (one file: settings, schedules, tasks) as a directory of rule files."""
    directory.mkdir()
    head, rest = source.read_text().split("schedules:\n", 1)
    schedules, tasks = rest.split("tasks:\n", 1)
    lines = schedules.splitlines(keepends=True)
    for n in range(0, len(lines), per_file):
        (directory / f"part-{n // per_file:04d}.yaml").write_text("schedules:\n" + "".join(lines[n:n + per_file]))
    (directory / "tasks.yaml").write_text(head + "tasks:\n" + tasks)


def one_run(tree: Path, rules: Path, changed: Path, tmp: Path) -> dict:
    db = tmp / "bench.db"
    for p in tmp.glob("bench.db*"):
        p.unlink()
    # The change is made in place, as a user edits a rule file: one schedule of the file (or of
    # one file of the directory) changed, the path the same.
    if rules.is_dir():
        first = rules / "part-0000.yaml"
        original = first.read_text()
        edited = original.replace('  s0: {every: day, at: "00:00"', '  s0: {every: day, at: "00:07"', 1)
    else:
        first = tmp / "live.yaml"
        original, edited = rules.read_text(), changed.read_text()
        first.write_text(original)
        rules = first
    changed = rules
    env = {**os.environ, "PYTHONPATH": str(tree), "TASKENGINE_HOME": str(tmp / "home"), "TASKENGINE_DB": str(db)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    py = [sys.executable]
    load = py + ["-c", LOAD.format(db=str(db)) + "; import taskengine_core; "
                 f"assert taskengine_core.__file__.startswith({str(tree)!r}), taskengine_core.__file__"]
    out = {
        "apply_cold": timed(py + ["-m", "taskengine_core", "apply", str(rules)], env),
        "load_cold": timed(load, env),
    }
    first.write_text(edited)
    out["apply_one"] = timed(py + ["-m", "taskengine_core", "apply", str(changed)], env)
    out["load_one"] = timed(load, env)
    out["apply_same"] = timed(py + ["-m", "taskengine_core", "apply", str(changed)], env)
    first.write_text(original)
    return out


def add_baseline_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline-rev", default="main")
    parser.add_argument("--baseline-tree", help="a source tree to use as the baseline instead")


def baseline_tree(args, tmp: Path) -> Path:
    """``--baseline-tree``, else ``taskengine_core`` of ``--baseline-rev`` (git archive) under ``tmp``."""
    if args.baseline_tree:
        return Path(args.baseline_tree)
    base = tmp / "baseline"
    base.mkdir()
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", args.baseline_rev, "taskengine_core"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
    return base


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    add_baseline_options(parser)
    parser.add_argument("--files", default="shared,distinct")
    args = parser.parse_args()
    from bench_scheduler import write_rules

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "home").mkdir()
        base = baseline_tree(args, tmp)
        trees = {"baseline": base, "current": HERE.parent}
        print(f"nproc {os.cpu_count()}, {args.schedules} schedules, median of {args.runs} runs (seconds)")
        for kind in args.files.split(","):
            rules, changed = tmp / f"{kind}.yaml", tmp / f"{kind}-changed.yaml"
            write_rules(rules, args.schedules, distinct=kind in ("distinct", "split"))
            text = rules.read_text()
            changed.write_text(text.replace("  s0: {every: day, at: \"00:00\"", "  s0: {every: day, at: \"00:07\"", 1))
            if kind == "split":
                split_rules(rules, tmp / "split")
                rules = changed = tmp / "split"
            results = {name: [] for name in trees}
            for _ in range(args.runs):
                for name, tree in trees.items():  # interleaved, so load changes hit both alike
                    results[name].append(one_run(tree, rules, changed, tmp))
            for step in ("apply_cold", "load_cold", "apply_one", "load_one", "apply_same"):
                b = statistics.median(r[step] for r in results["baseline"])
                c = statistics.median(r[step] for r in results["current"])
                print(f"{kind:9s} {step:11s} baseline {b:7.3f}  current {c:7.3f}  ratio {b / c:5.2f}x")


if __name__ == "__main__":
    main()
