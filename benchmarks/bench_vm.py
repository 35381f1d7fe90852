"""VM power through the engine, and VM lifecycle event latency, on libvirt's test driver.

Usage: python benchmarks/bench_vm.py [--vms 200] [--runs 3] [--samples 300]

1. Power N VMs off and on by tag: a ``vm.power`` task (``tag: bench``) run through the engine
   (run row, claim, state read of every target, one libvirt call each, a wait until every
   target is in the state, the outcome stored), against the shell baseline a rule file used
   before: a loop of ``virsh -c test:///… shutdown|start NAME`` processes, one per VM. ``virsh``
   comes from Debian's ``libvirt-clients``; without it the baseline is skipped. The baseline
   only sends the calls (``virsh shutdown`` returns before the guest is off, and nothing reads
   the state first); the engine also verifies the outcome.
2. Lifecycle event to committed run: a domain is started on the engine's shared connection;
   the clock stops when a run of the task listening for ``vm.started`` is visible in the
   database to another connection (polled every 0.5 ms). p50 and p99 over --samples.

Medians of --runs for (1). Needs libvirt-python (``pip install -e '.[libvirt]'``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_vm_fixtures import domain_xml, node_file  # noqa: E402


def apply_rules(db: str, text: str, directory: Path) -> None:
    from taskengine_core.apply import apply_config
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store

    path = directory / "rules.yaml"
    path.write_text(text)
    store = Store(db)
    try:
        apply_config(store, load_config([path], get_plugin_manager().registry()))
    finally:
        store.close()


def bench_power(vms: int, runs: int) -> None:
    from taskengine_core.engine import Engine

    engine_times, virsh_times = [], []
    for r in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            uri = node_file(tmp, [domain_xml(f"vm-{i:03d}", state="on", tags=["bench"]) for i in range(vms)])
            db = str(tmp / "bench.db")
            apply_rules(db, f"""
settings:
  vm: {{hosts: {{lab: {{type: libvirt, uri: "{uri}"}}}}}}
tasks:
  bench-off: {{action: vm.power, with: {{tag: bench, state: "off"}}}}
  bench-on: {{action: vm.power, with: {{tag: bench, state: "on"}}}}
""", tmp)
            engine = Engine(db, workers=1)
            engine.executor.start()
            start = time.perf_counter()
            for task in ("bench-off", "bench-on"):
                status = engine.execute(engine.queue_run(task), timeout=600)
                assert status == "succeeded", status
            engine_times.append(time.perf_counter() - start)
            engine.executor.stop(0)
            engine.store.close()
            virsh = shutil.which("virsh")
            if virsh:
                off_uri = node_file(tmp, [domain_xml(f"vm-{i:03d}", state="off") for i in range(vms)], "off.xml")
                start = time.perf_counter()
                for i in range(vms):  # each process starts from the file: all running
                    subprocess.run([virsh, "-q", "-c", uri, "shutdown", f"vm-{i:03d}"], check=True,
                                   stdout=subprocess.DEVNULL)
                for i in range(vms):  # and here all off
                    subprocess.run([virsh, "-q", "-c", off_uri, "start", f"vm-{i:03d}"], check=True,
                                   stdout=subprocess.DEVNULL)
                virsh_times.append(time.perf_counter() - start)
        print(f"  run {r + 1}: engine {engine_times[-1]:.3f}s"
              + (f", virsh loop {virsh_times[-1]:.3f}s" if virsh_times else ""), flush=True)
    e = statistics.median(engine_times)
    print(f"\n{vms} VMs off then on by tag (median of {runs}):")
    print(f"  engine, vm.power by tag (state read, act, verified)  {e:8.3f} s")
    if virsh_times:
        v = statistics.median(virsh_times)
        print(f"  loop of {2 * vms} virsh processes (baseline)          {v:8.3f} s")
        print(f"  engine is {v / e:.1f}x faster (target >= 20x)")
    else:
        print("  virsh not found (apt-get install libvirt-clients): baseline skipped")


def bench_latency(samples: int) -> None:
    from taskengine_core.engine import Engine
    from taskengine_vm import libvirt_conn

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        uri = node_file(tmp, [domain_xml(f"lat-{i:03d}", state="off") for i in range(samples)])
        db = str(tmp / "bench.db")
        apply_rules(db, f"""
settings:
  vm: {{hosts: {{lab: {{type: libvirt, uri: "{uri}"}}}}}}
tasks:
  noticed: {{action: vm.power, with: {{vm: "{{{{ event.data.vm }}}}", exact: true, state: "on"}}}}
events:
  vm-up: {{on: vm.started, tasks: [noticed]}}
""", tmp)
        engine = Engine(db, workers=2)
        engine.start()
        state = engine.source_state("vm")
        while not (state.get("host/lab") or {}).get("baseline"):
            time.sleep(0.01)
        conn = libvirt_conn.connection(uri, "lab")
        reader = sqlite3.connect(db)
        latencies = []
        for i in range(samples):
            dom = conn.lookupByName(f"lat-{i:03d}")
            before = reader.execute("SELECT count(*) FROM runs").fetchone()[0]
            start = time.perf_counter()
            dom.create()
            while reader.execute("SELECT count(*) FROM runs").fetchone()[0] == before:
                time.sleep(0.0005)
            latencies.append((time.perf_counter() - start) * 1000)
            time.sleep(0.01)  # let the run finish before the next sample
        reader.close()
        engine.stop(grace=10)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    print(f"\nlifecycle event -> committed run of a task listening for vm.started ({samples} samples):")
    print(f"  p50 {p50:.1f} ms   p99 {p99:.1f} ms   max {latencies[-1]:.1f} ms   (target p99 < 50 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    bench_power(args.vms, args.runs)
    bench_latency(args.samples)


if __name__ == "__main__":
    main()
