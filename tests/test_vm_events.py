"""The vm event source on libvirt's test driver, in a running engine: pushed lifecycle events,
reconciliation of what happened while away, lost and regained hosts, no doubles after a crash."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from taskengine_core.context import SourceContext
from taskengine_core.engine import Engine
from taskengine_core.events import Event
from tests.test_vm_fixtures import domain, lab_node, wait_for

libvirt = pytest.importorskip("libvirt")


def vm_events(db_path, *types) -> list[dict]:
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute("SELECT type, source, source_id, data, duplicate_of FROM events "
                            "WHERE type LIKE 'vm.%' ORDER BY seq").fetchall()
    finally:
        conn.close()
    out = [{"type": t, "source": s, "id": i, "data": json.loads(d), "duplicate_of": dup}
           for t, s, i, d, dup in rows]
    return [e for e in out if not types or e["type"] in types]


@pytest.fixture
def engine_for(applied, db_path):
    started = []

    def start(uri: str, extra: str = "") -> Engine:
        applied(f"""
            settings:
              vm: {{hosts: {{lab: {{type: libvirt, uri: "{uri}"}}}}}}
            tasks:
              on: {{action: vm.power, with: {{vm: gpu-alice, state: on}}}}
            {extra}
        """)
        engine = Engine(db_path, workers=2)
        engine.start()
        started.append(engine)
        state = engine.source_state("vm")
        wait_for(lambda: (state.get("host/lab") or {}).get("baseline"))
        return engine

    yield start
    for engine in started:
        engine.stop(grace=5)


def test_a_power_change_is_pushed_as_an_event_with_vm_uuid_host_reason_tags(engine_for, db_path, tmp_path):
    uri = lab_node(tmp_path)
    engine = engine_for(uri)
    assert vm_events(db_path) == []  # the first contact records a baseline, it reports nothing
    run_id = engine.queue_run("on")
    wait_for(lambda: vm_events(db_path, "vm.started"))
    event = vm_events(db_path, "vm.started")[0]
    assert event["source"] == "vm"
    assert event["data"] == {"vm": "gpu-alice", "uuid": domain(uri, "gpu-alice").UUIDString(),
                             "host": "lab", "reason": "booted", "tags": ["gpu"], "state": "on"}
    assert wait_for(lambda: engine.store.conn.execute(
        "SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0] == "succeeded")
    domain(uri, "lab-1").suspend()
    domain(uri, "lab-1").resume()
    domain(uri, "lab-2").destroy()
    wait_for(lambda: vm_events(db_path, "vm.stopped"))
    assert [(e["type"], e["data"]["vm"], e["data"]["reason"]) for e in vm_events(db_path)] == [
        ("vm.started", "gpu-alice", "booted"), ("vm.suspended", "lab-1", "paused"),
        ("vm.resumed", "lab-1", "unpaused"), ("vm.stopped", "lab-2", "destroyed")]


def test_changes_while_the_engine_was_stopped_are_reconciled_on_start(engine_for, db_path, tmp_path):
    uri = lab_node(tmp_path)
    engine = engine_for(uri)
    engine.stop(grace=5)
    domain(uri, "lab-1").destroy()     # while nobody watches
    domain(uri, "gpu-alice").create()
    domain(uri, "paused-1").resume()
    engine_for(uri)
    events = wait_for(lambda: len(vm_events(db_path)) >= 3 and vm_events(db_path))
    assert sorted((e["type"], e["data"]["vm"], e["data"].get("reconciled")) for e in events) == [
        ("vm.resumed", "paused-1", True), ("vm.started", "gpu-alice", True),
        ("vm.stopped", "lab-1", True)]


def test_a_lost_host_is_reported_once_then_its_return(engine_for, db_path, tmp_path, applied):
    from tests.test_vm_fixtures import domain_xml

    node = tmp_path / "later.xml"
    uri = f"test://{node}"  # no file yet: libvirt cannot open the host
    applied(f"""
        settings:
          vm: {{hosts: {{lab: {{type: libvirt, uri: "{uri}"}}}}}}
    """)
    engine = Engine(db_path, workers=1)
    engine.start()
    try:
        lost = wait_for(lambda: vm_events(db_path, "vm.host_unreachable"))
        assert lost[0]["data"]["host"] == "lab"
        assert "cannot connect to libvirt at " + uri in lost[0]["data"]["error"]
        time.sleep(1.5)  # a retry fails again: reported once, not per retry
        assert len(vm_events(db_path, "vm.host_unreachable")) == 1
        node.write_text("<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
                        + domain_xml("x", state="on") + "</node>")
        back = wait_for(lambda: vm_events(db_path, "vm.host_reachable"), timeout=20)
        assert back[0]["data"]["host"] == "lab" and back[0]["data"]["down_since"]
    finally:
        engine.stop(grace=5)


def test_a_crash_between_emitting_and_recording_repeats_nothing(db_path, applied):
    """The tracker emits first and records after; the repeat after a crash has the same id,
    so the inbox keeps it as a duplicate that triggers nothing."""
    from taskengine_vm.model import VmInfo
    from taskengine_vm.tracker import Tracker

    applied("tasks: {}")
    engine = Engine(db_path, workers=1)
    state = engine.source_state("vm")
    ctx = SourceContext(name="vm", settings={}, emit=engine.emit, state=state,
                        emit_many=lambda events: engine.emit_many(
                            [Event(e["type"], e["data"], source="vm", source_id=e["id"]) for e in events]))
    Tracker(ctx, "lab").reconcile([VmInfo("lab", "a", "u-1", "on")], reconciled=True)

    class Crash(Exception):
        pass

    real_update = state.update

    def crash(*args, **kwargs):
        raise Crash()

    state.update = crash
    with pytest.raises(Crash):
        Tracker(ctx, "lab").reconcile([VmInfo("lab", "a", "u-1", "off")], reconciled=True)
    state.update = real_update
    Tracker(ctx, "lab").reconcile([VmInfo("lab", "a", "u-1", "off")], reconciled=True)
    events = vm_events(db_path, "vm.stopped")
    assert len(events) == 2 and events[0]["id"] == events[1]["id"] == "lab:u-1:1:vm.stopped"
    assert events[0]["duplicate_of"] is None and events[1]["duplicate_of"] is not None
    Tracker(ctx, "lab").reconcile([VmInfo("lab", "a", "u-1", "off")], reconciled=True)
    assert len(vm_events(db_path, "vm.stopped")) == 2  # recorded now: nothing more
    engine.store.close()


def test_libvirt_lifecycle_callbacks_and_snapshot_changes_map_to_event_types():
    from taskengine_vm.events import from_libvirt, transition

    assert from_libvirt(2, 0) == ("vm.started", "on", "booted")
    assert from_libvirt(5, 1) == ("vm.stopped", "off", "destroyed")
    assert from_libvirt(5, 2) == ("vm.crashed", "crashed", "crashed")  # STOPPED/CRASHED
    assert from_libvirt(8, 0) == ("vm.crashed", "crashed", "panicked")
    assert from_libvirt(3, 0) == ("vm.suspended", "paused", "paused")
    assert from_libvirt(0, 0) == ("vm.defined", None, "added")
    assert from_libvirt(6, 0) is None  # SHUTDOWN: the guest began; STOPPED follows
    assert from_libvirt(2, 99) == ("vm.started", "on", "detail-99")
    assert [transition(a, b) for a, b in [("off", "on"), ("paused", "on"), ("on", "off"),
                                          ("on", "paused"), (None, "off"), ("on", None),
                                          ("on", "on"), ("on", "migrating")]] == [
        "vm.started", "vm.resumed", "vm.stopped", "vm.suspended", "vm.defined", "vm.undefined",
        None, None]


def test_defining_and_undefining_a_vm_are_events(engine_for, db_path, tmp_path):
    from taskengine_vm import libvirt_conn
    from tests.test_vm_fixtures import domain_xml

    uri = lab_node(tmp_path)
    engine_for(uri)
    conn = libvirt_conn.connection(uri, "lab")
    dom = conn.defineXML(domain_xml("fresh", tags=["new"]))
    defined = wait_for(lambda: vm_events(db_path, "vm.defined"))
    assert defined[0]["data"] | {"uuid": None} == {"vm": "fresh", "uuid": None, "host": "lab",
                                                  "reason": "added", "tags": ["new"], "state": "off"}
    dom.undefine()
    gone = wait_for(lambda: vm_events(db_path, "vm.undefined"))
    assert gone[0]["data"]["vm"] == "fresh" and gone[0]["data"]["reason"] == "removed"
    assert gone[0]["data"]["tags"] == ["new"]  # from the record: the domain is gone


def test_a_rule_on_vm_started_with_a_tag_condition_runs_its_task(engine_for, db_path, tmp_path):
    uri = lab_node(tmp_path)
    engine = engine_for(uri, "\n".join([  # under the fixture's tasks:, at its indentation
        '  gpu-up: {action: vm.power, with: {vm: "{{ event.data.vm }}", exact: true, state: on}}',
        "            events:",
        "              gpu-started: {on: vm.started, when: {data.tags: {contains: gpu}}, tasks: [gpu-up]}"]))
    domain(uri, "lab-1").suspend()
    domain(uri, "lab-1").resume()        # not tagged gpu: no run
    domain(uri, "lab-2").destroy()
    domain(uri, "lab-2").create()        # tagged lab and gpu: a run
    wait_for(lambda: engine.store.conn.execute(
        "SELECT count(*) FROM runs WHERE task = 'gpu-up' AND status = 'succeeded'").fetchone()[0])
    runs = engine.store.conn.execute("SELECT task, output FROM runs").fetchall()
    assert [(task, json.loads(out)["targets"][0]["vm"]) for task, out in runs] == [("gpu-up", "lab-2")]
