"""vm.power on libvirt's test driver (a per-test node file), through the engine: states read
first, idempotent success, graceful shutdown then force, tags, and every failure named."""

from __future__ import annotations

import sys
import threading

import pytest

from taskengine_core.engine import Engine
from tests.test_vm_fixtures import domain, domain_xml, lab_node, node_file, run_power_task, state_of

libvirt = pytest.importorskip("libvirt")
RUNNING, PAUSED, SHUTOFF = 1, 3, 5


@pytest.fixture
def lab(tmp_path):
    return lab_node(tmp_path)


@pytest.fixture
def power(applied, db_path):
    """Run one vm.power task on a libvirt host ``lab`` at ``uri``: (status, output, error)."""
    return lambda uri, with_: run_power_task(applied, db_path, f'{{lab: {{type: libvirt, uri: "{uri}"}}}}', with_)


def targets(output) -> dict:
    return {t["vm"]: t for t in output["targets"]}


def test_on_powers_a_vm_on_and_a_second_on_is_success_without_change(power, lab):
    status, out, _ = power(lab, {"vm": "gpu-alice", "state": "on"})
    assert status == "succeeded"
    assert out["targets"] == [{"host": "lab", "vm": "gpu-alice", "before": "off", "after": "on",
                               "changed": True, "note": "powered on"}]
    assert state_of(lab, "gpu-alice") == RUNNING
    status, out, _ = power(lab, {"vm": "gpu-alice", "state": "on"})
    assert status == "succeeded"
    assert out["targets"][0] | {} == {"host": "lab", "vm": "gpu-alice", "before": "on", "after": "on",
                                      "changed": False, "note": "already on"}
    assert out["changed"] == 0


def test_off_by_tag_fails_naming_the_guest_that_ignores_acpi_and_still_stops_the_others(power, lab):
    status, out, error = power(lab, {"tag": "lab", "state": "off", "timeout": "1s"})
    assert status == "failed"
    assert "1 of 2 failed" in error and "VM 'lab-2' on host 'lab' did not shut down within 1s" in error
    assert "force: true" in error
    t = targets(out)
    assert t["lab-1"]["after"] == "off" and t["lab-1"]["changed"] is True
    assert t["lab-2"]["after"] == "on" and t["lab-2"]["changed"] is False and "error" in t["lab-2"]
    assert state_of(lab, "lab-1") == SHUTOFF and state_of(lab, "lab-2") == RUNNING


def test_off_with_force_destroys_a_guest_that_ignores_acpi_after_the_timeout(power, lab):
    status, out, _ = power(lab, {"tag": "lab", "state": "off", "timeout": "1s", "force": True})
    assert status == "succeeded"
    t = targets(out)
    assert t["lab-2"]["forced"] is True and t["lab-2"]["after"] == "off"
    assert "forced off after 1s" in t["lab-2"]["note"]
    assert "forced" not in t["lab-1"] and t["lab-1"]["note"] == "shut down"
    assert state_of(lab, "lab-2") == SHUTOFF


def test_globs_lists_and_states(power, lab):
    status, out, _ = power(lab, {"vm": ["lab-*", "gpu-alice"], "state": "kill"})
    assert status == "succeeded"
    assert {k: (v["before"], v["after"]) for k, v in targets(out).items()} == {
        "gpu-alice": ("off", "off"), "lab-1": ("on", "off"), "lab-2": ("on", "off")}
    status, out, _ = power(lab, {"vm": "paused-1", "state": "resume"})
    assert (status, out["targets"][0]["after"]) == ("succeeded", "on")
    status, out, _ = power(lab, {"vm": "paused-1", "state": "suspend"})
    assert (status, out["targets"][0]["after"]) == ("succeeded", "paused")
    assert state_of(lab, "paused-1") == PAUSED
    status, out, _ = power(lab, {"vm": "paused-1", "state": "on"})  # on resumes a paused VM
    assert (status, out["targets"][0]["note"]) == ("succeeded", "resumed")
    status, out, _ = power(lab, {"vm": "paused-1", "state": "reboot"})
    assert (status, out["targets"][0]["changed"]) == ("succeeded", True)


def test_a_state_that_does_not_apply_fails_with_advice(power, lab):
    status, out, error = power(lab, {"vm": "gpu-alice", "state": "reboot"})
    assert status == "failed"
    assert "VM 'gpu-alice' on host 'lab' is off, so reboot does not apply; use state: on" in error
    status, _, error = power(lab, {"vm": "paused-1", "state": "off"})
    assert "is paused, so it cannot see an ACPI shutdown" in error
    assert state_of(lab, "paused-1") == PAUSED  # nothing done


def test_a_target_matching_nothing_fails_naming_the_pattern(power, lab):
    status, out, error = power(lab, {"vm": ["gpu-alice", "gpu-bob*"], "state": "on"})
    assert status == "failed" and "no VM on host 'lab' matches 'gpu-bob*'" in error
    assert state_of(lab, "gpu-alice") == SHUTOFF  # nothing acted on when a pattern is wrong
    status, _, error = power(lab, {"tag": "nosuch", "state": "on"})
    assert "no VM on host 'lab' carries the tag 'nosuch'" in error and "virsh metadata" in error


def test_unknown_host_at_run_time_names_the_defined_ones(power, lab, applied, db_path, run_cli):
    status, _, error = power(lab, {"vm": "gpu-alice", "state": "on", "host": "{{ 'no' ~ 'where' }}"})
    assert status == "failed"
    assert "unknown VM host 'nowhere' (from with.host); defined in settings.vm.hosts: lab" in error


def test_unreachable_hypervisor_is_a_retryable_failure_naming_host_and_uri(power):
    status, _, error = power("qemu+tcp://127.0.0.1:1/system", {"vm": "gpu-alice", "state": "on"})
    assert status == "failed"
    assert "VM 'gpu-alice': host 'lab': cannot connect to libvirt at qemu+tcp://127.0.0.1:1/system" in error
    assert "check that libvirtd runs there" in error


def test_a_vm_vanishing_mid_run_fails_naming_it(power, tmp_path):
    uri = node_file(tmp_path, [domain_xml("ghost", state="on", ignores_acpi=True, transient=True),
                               domain_xml("lab-1", state="on")])
    dom, other = domain(uri, "ghost"), domain(uri, "lab-1")

    def vanish():
        # lab-1 off means both shutdowns were sent (ghost first) and the run waits for ghost
        while other.state()[0] != SHUTOFF:
            threading.Event().wait(0.01)
        dom.destroy()  # a transient domain is gone once destroyed

    thread = threading.Thread(target=vanish)
    thread.start()
    status, out, error = power(uri, {"vm": ["ghost", "lab-1"], "state": "off", "timeout": "60s"})
    thread.join()
    assert status == "failed"
    assert "VM 'ghost' vanished from host 'lab' during the run" in error
    assert targets(out)["lab-1"]["after"] == "off"


def test_libvirt_error_codes_become_messages_that_say_what_to_do(lab):
    from taskengine_vm.libvirt_errors import action_error
    from taskengine_vm.model import AuthFailed, VmVanished

    conn = libvirt.open(lab)  # a private connection: errors straight from the library
    with pytest.raises(libvirt.libvirtError) as missing:
        conn.lookupByName("nope")
    error = action_error(missing.value, host="lab", vm="nope", what="start")
    assert isinstance(error, VmVanished) and "libvirt error 42" in str(error)
    with pytest.raises(libvirt.libvirtError) as running:
        conn.lookupByName("lab-1").create()
    error = action_error(running.value, host="lab", vm="lab-1", what="start")
    assert "VM 'lab-1' on host 'lab': start failed (libvirt error 1:" in str(error)
    assert "journalctl -u libvirtd" in str(error)
    conn.close()
    readonly = libvirt.openReadOnly(lab)
    with pytest.raises(libvirt.libvirtError) as denied:
        readonly.lookupByName("lab-1").destroy()
    error = action_error(denied.value, host="lab", vm="lab-1", what="destroy")
    assert isinstance(error, AuthFailed) and not error.retryable
    assert "libvirt denied destroy (error 29" in str(error)
    assert "run taskengine as a member of the 'libvirt' group" in str(error)
    readonly.close()


def test_without_the_libvirt_binding_a_libvirt_host_says_what_to_install(power, lab, monkeypatch):
    from taskengine_vm import hosts

    monkeypatch.setitem(sys.modules, "libvirt", None)  # import libvirt now raises ImportError
    monkeypatch.setattr(hosts, "_backends", {})
    status, _, error = power(lab, {"vm": "gpu-alice", "state": "on"})
    assert status == "failed"
    assert "pip install 'taskengine-core[libvirt]'" in error and "libvirt-dev" in error


def test_a_failing_vm_run_does_not_stop_other_runs(applied, db_path, lab):
    rules = f"""
        settings:
          vm: {{hosts: {{lab: {{type: libvirt, uri: "{lab}"}}}}}}
        tasks:
          bad: {{action: vm.power, with: {{vm: nosuch, state: on}}}}
          good: {{action: vm.power, with: {{vm: gpu-alice, state: on}}}}
    """
    applied(rules)
    engine = Engine(db_path, workers=2)
    engine.executor.start()
    try:
        bad, good = engine.queue_run("bad"), engine.queue_run("good")
        assert engine.execute(bad, timeout=30) == "failed"
        assert engine.execute(good, timeout=30) == "succeeded"
    finally:
        engine.executor.stop(0)
    assert state_of(lab, "gpu-alice") == RUNNING


def test_the_action_declares_itself_idempotent():
    from taskengine_core.plugins import get_plugin_manager

    item = get_plugin_manager().registry().actions["vm.power"]
    assert item.idempotent is True and item.plugin.name == "vm"


def test_exact_names_from_event_data_are_never_globs(applied, db_path, lab):
    rules = f"""
        settings:
          vm: {{hosts: {{lab: {{type: libvirt, uri: "{lab}"}}}}}}
        tasks:
          off: {{action: vm.power, with: {{vm: "{{{{ event.data.vm }}}}", exact: true, state: kill}}}}
        events:
          stop-it: {{on: vm.stop-requested, tasks: [off]}}
    """
    applied(rules)
    engine = Engine(db_path, workers=1)
    engine.executor.start()
    try:
        engine.emit("vm.stop-requested", {"vm": "*"})
        engine.run_until_idle()
    finally:
        engine.executor.stop(0)
    status, error = engine.store.conn.execute("SELECT status, error FROM runs").fetchone()
    assert status == "failed" and "no VM on host 'lab' matches '*'" in error
    assert state_of(lab, "lab-1") == RUNNING and state_of(lab, "lab-2") == RUNNING
