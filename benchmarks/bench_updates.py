"""updates.check (apt source) against a local repository of 5,000 upgradable packages, and
`apt list --upgradable` with the same APT_CONFIG as the baseline, in the same run.

Usage: python benchmarks/bench_updates.py [--packages 5000] [--runs 5]

The repository is a Packages index served over HTTP on 127.0.0.1 (apt needs no .deb files to
list upgrades); a fake dpkg status has every package at 1.0, the index offers 1.1. Each
measurement runs in a fresh process, which reports its wall time, its own peak RSS and the
peak RSS of the apt processes it started. A second baseline, `apt-get -s upgrade` alone, is the
command updates.check runs (apt's upgrade resolver, which `apt list` does not run: it lists
packages `upgrade` would keep back too), so the check's own overhead is the difference.
Nothing touches the machine's apt state.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def build(base: Path, count: int) -> Path:
    repo = base / "repo"
    admin = base / "root" / "var" / "lib" / "dpkg"
    for d in (repo, admin, base / "empty", base / "state" / "lists" / "partial",
              base / "cache" / "archives" / "partial", base / "log"):
        d.mkdir(parents=True, exist_ok=True)
    stanza = ("Package: bench-{i}\nVersion: {v}\nArchitecture: all\n"
              "Maintainer: Bench <bench@example.com>\nDescription: benchmark package {i}\n")
    (admin / "status").write_text("".join(
        stanza.format(i=i, v="1.0").replace("Version:", "Status: install ok installed\nVersion:")
        + "\n" for i in range(count)))
    (repo / "Packages").write_text("".join(
        stanza.format(i=i, v="1.1") + f"Filename: ./bench-{i}_1.1_all.deb\nSize: {1000 + i}\n"
        f"MD5sum: {i:032x}\n\n" for i in range(count)))
    return admin / "status"


def serve(root: Path) -> http.server.ThreadingHTTPServer:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def write_config(base: Path, status: Path, port: int) -> Path:
    (base / "sources.list").write_text(f"deb [trusted=yes] http://127.0.0.1:{port}/ ./\n")
    config = base / "apt.conf"
    b = str(base)
    config.write_text(
        f'Dir::Etc::sourcelist "{b}/sources.list"; Dir::Etc::sourceparts "{b}/empty";\n'
        f'Dir::Etc::parts "{b}/empty"; Dir::Etc::main "/dev/null";\n'
        f'Dir::Etc::preferences "{b}/empty/none"; Dir::Etc::preferencesparts "{b}/empty";\n'
        f'Dir::State "{b}/state"; Dir::State::status "{status}"; Dir::Cache "{b}/cache";\n'
        f'Dir::Log "{b}/log"; Acquire::Languages "none"; APT::Sandbox::User "root";\n')
    return config


def one(kind: str, config: str) -> dict:
    """Runs in a fresh process: one measurement."""
    if kind in ("list", "simulate"):
        argv = (["apt", "list", "--upgradable"] if kind == "list"
                else ["apt-get", "-q", "-s", "upgrade"])
        start = time.perf_counter()
        done = subprocess.run(argv, env=dict(os.environ, APT_CONFIG=config, LC_ALL="C"),
                              capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        marker = "[upgradable from:" if kind == "list" else "Inst "
        count = sum(1 for line in done.stdout.splitlines() if marker in line)
    else:
        from taskengine_core.context import ActionContext
        from taskengine_updates.action import check_updates

        ctx = ActionContext(run_id="bench", task="bench", emit=lambda *a, **k: "ev")
        start = time.perf_counter()
        out = check_updates({"source": "apt", "config": config, "refresh": kind == "check+refresh"}, ctx)
        seconds = time.perf_counter() - start
        count = out["count"]
    return {"seconds": seconds, "count": count,
            "self_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "apt_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def measure(kind: str, config: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--one", kind, "--config", str(config)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--one")
    parser.add_argument("--config")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.config)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        status = build(base, args.packages)
        server = serve(base / "repo")
        config = write_config(base, status, server.server_address[1])
        subprocess.run(["apt-get", "-qq", "update", "--error-on=any"],
                       env=dict(os.environ, APT_CONFIG=str(config)), check=True)
        results = {k: [] for k in ("list", "simulate", "check", "check+refresh")}
        for _ in range(args.runs):
            for kind in results:
                results[kind].append(measure(kind, config))
        server.shutdown()
    print(f"{args.packages} upgradable packages, median of {args.runs} runs, nproc {os.cpu_count()}")
    print(f"{'':38} {'seconds':>8} {'python RSS MB':>14} {'apt RSS MB':>11} {'found':>6}")
    names = {"list": "apt list --upgradable (baseline)", "simulate": "apt-get -s upgrade alone",
             "check": "updates.check, refresh: false",
             "check+refresh": "updates.check (apt-get update first)"}
    med = {}
    for kind, runs in results.items():
        med[kind] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        m = med[kind]
        rss = "-" if kind in ("list", "simulate") else f"{m['self_rss_mb']:.0f}"
        print(f"{names[kind]:38} {m['seconds']:8.3f} {rss:>14} {m['apt_rss_mb']:11.0f} {m['count']:6.0f}")
    print(f"ratio updates.check / apt list: {med['check']['seconds'] / med['list']['seconds']:.2f}x time; "
          f"updates.check / apt-get -s upgrade alone: "
          f"{med['check']['seconds'] / med['simulate']['seconds']:.2f}x time")


if __name__ == "__main__":
    main()
