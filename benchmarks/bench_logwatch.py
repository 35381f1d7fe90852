"""Benchmark: the logwatch source, from a log file through the sshd bundle to committed events.

1. Throughput: a realistic mixed auth.log (sshd logins, failures and scans, pam_unix sessions,
   cron, sudo, systemd-logind, kernel lines) is read from its start by the real engine
   (``taskengine`` source thread, RE2 matching, ``emit_many`` commits, positions stored) until
   the stored position reaches the end of the file. Baseline, in the same run: ``grep -E -c``
   with the same four sshd patterns (counting matches; it commits nothing).
2. Latency: lines appended one at a time to the watched file while the engine runs; the time
   from the write to the event being visible (committed) in the database, p50 and p99.

Run: python benchmarks/bench_logwatch.py [--lines 200000] [--samples 200] [--repeat 3]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PREFIX_ERE = r"^([A-Z][a-z]{2} [ 0-9]?[0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [^ ]+ )?sshd(-session)?\[[0-9]+\]: "
HOST_ERE = r"[0-9A-Za-z.:%_-]+"
GREP_PATTERNS = [
    PREFIX_ERE + r"Accepted [[:alnum:]_/-]+ for [^ ]+ from " + HOST_ERE + r" port [0-9]{1,5} ssh2(: [[:alnum:]_-]+ SHA256:[A-Za-z0-9+/=]+( .*)?)?$",
    PREFIX_ERE + r"Failed [[:alnum:]_/-]+ for (invalid user )?.* from " + HOST_ERE + r" port [0-9]{1,5} ssh2(: .*)?$",
    PREFIX_ERE + r"Invalid user .* from " + HOST_ERE + r" port [0-9]{1,5}$",
    PREFIX_ERE + r"Disconnected from user [^ ]+ " + HOST_ERE + r" port [0-9]{1,5}$",
]


def make_log(path: Path, lines: int, seed: int = 7) -> int:
    """A mixed auth.log of an internet-facing server; returns how many lines the sshd bundle
    turns into events (about 10%: logins, failures and scans; the rest is sshd's other lines,
    pam_unix sessions of sshd and cron, sudo, systemd-logind and firewall lines)."""
    rnd = random.Random(seed)
    users = ["alice", "bob", "carol", "deploy", "backup"]
    bad = ["admin", "oracle", "test", "ubuntu", "x Accepted publickey for alice from 198.51.100.1 port 1 ssh2"]
    out, events = [], 0
    for i in range(lines):
        ts = f"Dec {1 + i // 86400 % 28:2d} {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d} web1"
        pid = 1000 + i % 30000
        ip = f"203.0.{rnd.randrange(256)}.{rnd.randrange(256)}"
        port = rnd.randrange(1024, 65535)
        r = rnd.random()
        if r < 0.01:
            line, hit = f"sshd[{pid}]: Accepted publickey for {rnd.choice(users)} from {ip} port {port} ssh2: ED25519 SHA256:Xm{i:08d}abc", 1
        elif r < 0.06:
            line, hit = f"sshd[{pid}]: Failed password for invalid user {rnd.choice(bad)} from {ip} port {port} ssh2", 1
        elif r < 0.09:
            line, hit = f"sshd[{pid}]: Invalid user {rnd.choice(bad)} from {ip} port {port}", 1
        elif r < 0.10:
            line, hit = f"sshd-session[{pid}]: Disconnected from user {rnd.choice(users)} {ip} port {port}", 1
        elif r < 0.27:
            line, hit = f"sshd[{pid}]: Connection closed by authenticating user root {ip} port {port} [preauth]", 0
        elif r < 0.35:
            line, hit = f"sshd[{pid}]: Received disconnect from {ip} port {port}:11: Bye Bye [preauth]", 0
        elif r < 0.42:
            line, hit = f"sshd[{pid}]: pam_unix(sshd:session): session opened for user {rnd.choice(users)}(uid=1000) by (uid=0)", 0
        elif r < 0.72:
            line, hit = f"CRON[{pid}]: pam_unix(cron:session): session {'opened' if r < 0.57 else 'closed'} for user root" + (" by (uid=0)" if r < 0.57 else ""), 0
        elif r < 0.80:
            line, hit = f"sudo[{pid}]:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/systemctl status nginx", 0
        elif r < 0.90:
            line, hit = f"systemd-logind[412]: New session {i} of user {rnd.choice(users)}.", 0
        else:
            line, hit = f"kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:16:3e:aa:bb:cc SRC={ip} DST=10.0.0.5 LEN=40 PROTO=TCP SPT={port} DPT=23", 0
        out.append(f"{ts} {line}\n")
        events += hit
    path.write_text("".join(out))
    return events


def grep_baseline(path: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and matches of ``grep -E -c`` with the same patterns."""
    import resource

    args = ["grep", "-E", "-c"] + [a for p in GREP_PATTERNS for a in ("-e", p)] + [str(path)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, int(done.stdout.strip() or 0)


def engine_throughput(path: Path, work: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process (the engine's threads: source, loop,
    executor) and events committed, reading ``path`` from its start."""
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store

    db = work / f"bench-{time.monotonic_ns()}.db"
    rules = work / "rules.yaml"
    rules.write_text(f"settings:\n  logwatch:\n    poll: 0.05\n    files:\n"
                     f"      - {{path: {path}, patterns: [sshd], from: start}}\n")
    manager = get_plugin_manager()
    store = Store(db)
    apply_config(store, load_config([rules], manager.registry()))
    size = path.stat().st_size
    engine = Engine(db, manager=manager)
    state = engine.source_state("logwatch")
    start, cpu_start = time.perf_counter(), time.process_time()
    engine.start()
    try:
        while (state.get(f"file:{path}") or {}).get("offset", 0) < size:
            time.sleep(0.005)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        engine.stop(grace=1)
    count = store.conn.execute("SELECT count(*) FROM events WHERE source = 'logwatch'").fetchone()[0]
    store.close()
    return elapsed, cpu, count


def latency(work: Path, samples: int) -> list[float]:
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store

    db, log = work / "latency.db", work / "latency.log"
    log.write_text("")
    rules = work / "latency.yaml"
    rules.write_text(f"settings:\n  logwatch:\n    files:\n      - {{path: {log}, patterns: [sshd]}}\n")
    manager = get_plugin_manager()
    store = Store(db)
    apply_config(store, load_config([rules], manager.registry()))
    store.close()
    engine = Engine(db, manager=manager)  # default settings, as users run it
    engine.start()
    state = engine.source_state("logwatch")
    while state.get(f"file:{log}") is None:
        time.sleep(0.01)
    reader = sqlite3.connect(db)
    results = []
    try:
        for i in range(samples):
            time.sleep(random.uniform(0.02, 0.3))
            with open(log, "a") as f:
                f.write(f"Dec  4 13:30:23 web1 sshd[9]: Accepted publickey for u{i} from 127.0.0.1 port {1000 + i} ssh2\n")
            written = time.perf_counter()
            while reader.execute("SELECT count(*) FROM events WHERE source = 'logwatch'").fetchone()[0] <= i:
                time.sleep(0.001)
            results.append(time.perf_counter() - written)
    finally:
        reader.close()
        engine.stop(grace=1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log = work / "auth.log"
        expected = make_log(log, args.lines)
        print(f"log: {args.lines} lines, {log.stat().st_size / 1e6:.1f} MB, {expected} sshd events; nproc {os.cpu_count()}")
        ours, theirs, ours_cpu, theirs_cpu = [], [], [], []
        for _ in range(args.repeat):
            t, cpu, n = engine_throughput(log, work)
            assert n == expected, f"engine committed {n} events, expected {expected}"
            ours.append(args.lines / t)
            ours_cpu.append(args.lines / cpu)
            t, cpu, n = grep_baseline(log)
            assert n == expected, f"grep -E counted {n}, expected {expected}"
            theirs.append(args.lines / t)
            theirs_cpu.append(args.lines / max(cpu, 1e-6))
        o, g = statistics.median(ours), statistics.median(theirs)
        oc, gc = statistics.median(ours_cpu), statistics.median(theirs_cpu)
        print(f"load average {os.getloadavg()[0]:.1f}")
        print(f"throughput (median of {args.repeat}): logwatch {o:,.0f} lines/s to committed events; "
              f"grep -E -c {g:,.0f} lines/s (counting only); ratio {o / g:.3f}")
        print(f"per CPU second (all engine threads; grep's own): logwatch {oc:,.0f} lines; "
              f"grep -E -c {gc:,.0f} lines; ratio {oc / gc:.3f}")
        lat = sorted(latency(work, args.samples))
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"latency line written -> event committed ({len(lat)} samples, inotify wake-up, poll 0.25 s): "
              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
