"""vm.power and VM events on VergeOS, against the VergeOS contract server (HTTPS on
127.0.0.1 with a certificate from a CA the test makes; see tests/test_vm_fixtures.py)."""

from __future__ import annotations


import pytest

from taskengine_core.engine import Engine
from tests.test_vm_fixtures import VergeOS, make_tls, run_power_task


@pytest.fixture
def tls(tmp_path):
    return make_tls(tmp_path)


@pytest.fixture
def verge(tls):
    server = VergeOS(tls)
    server.add_vm(1, "gpu-alice", running=False, tags=["gpu"])
    server.add_vm(2, "lab-1", running=True, tags=["lab"])
    server.add_vm(3, "lab-2", running=True, tags=["lab", "gpu"], ignores_acpi=True)
    server.add_tenant(7, "acme", running=True)
    with server:
        yield server


@pytest.fixture
def run_task(applied, db_path, monkeypatch):
    monkeypatch.setenv("VERGE_API_KEY", "verge-key-1")

    def run(server, with_: dict, *, host: str | None = None):
        host = host or f'{{type: vergeos, url: "{server.url}", auth: {{type: bearer, token: "${{env:VERGE_API_KEY}}"}}, ca_file: "{server.ca}"}}'
        return run_power_task(applied, db_path, f"{{verge: {host}}}", with_)

    return run


@pytest.fixture(autouse=True)
def _ca(verge, tls):
    verge.ca = tls[0]


def test_power_on_then_already_on(run_task, verge):
    status, out, _ = run_task(verge, {"vm": "gpu-alice", "state": "on"})
    assert status == "succeeded" and out["targets"][0]["changed"] is True
    assert verge.vms[1]["running"] is True
    assert verge.count("POST", "/api/v4/vm_actions") == 1
    status, out, _ = run_task(verge, {"vm": "gpu-alice", "state": "on"})
    assert status == "succeeded" and out["targets"][0]["note"] == "already on"
    assert verge.count("POST", "/api/v4/vm_actions") == 1  # read first: no second poweron


def test_off_by_native_tag_forces_the_guest_ignoring_acpi(run_task, verge):
    status, out, _ = run_task(verge, {"tag": "lab", "state": "off", "timeout": "3s", "force": True})
    assert status == "succeeded"
    t = {x["vm"]: x for x in out["targets"]}
    assert t["lab-1"]["note"] == "shut down" and t["lab-2"]["forced"] is True
    assert not verge.vms[2]["running"] and not verge.vms[3]["running"]


def test_tenant_power_off(run_task, verge):
    status, out, _ = run_task(verge, {"tenant": "acme", "state": "off"})
    assert status == "succeeded"
    assert out["targets"] == [{"host": "verge", "vm": "acme", "kind": "tenant", "before": "on",
                               "after": "off", "changed": True, "note": "shut down"}]
    assert verge.tenants[7]["running"] is False
    assert verge.count("POST", "/api/v4/tenant_actions") == 1


def test_wrong_api_key_is_an_auth_failure_that_is_not_retried(run_task, verge, monkeypatch):
    monkeypatch.setenv("VERGE_API_KEY", "wrong-key")
    status, _, error = run_task(verge, {"vm": "gpu-alice", "state": "on"})
    assert status == "failed"
    assert "host 'verge' (VergeOS) refused our credentials while listing VMs (HTTP 401" in error
    assert "check the token in settings.vm.hosts.verge" in error
    assert "wrong-key" not in error


def test_basic_auth(run_task, verge):
    host = f'{{type: vergeos, url: "{verge.url}", auth: {{type: basic, username: admin, password: "${{env:VERGE_PW}}"}}, ca_file: "{verge.ca}"}}'
    import os

    os.environ["VERGE_PW"] = "pw"
    try:
        status, out, _ = run_task(verge, {"vm": "gpu-alice", "state": "on"}, host=host)
    finally:
        del os.environ["VERGE_PW"]
    assert status == "succeeded"


def test_an_untrusted_certificate_fails_saying_to_give_the_ca(run_task, verge):
    host = f'{{type: vergeos, url: "{verge.url}", auth: {{type: bearer, token: "${{env:VERGE_API_KEY}}"}}}}'
    status, _, error = run_task(verge, {"vm": "gpu-alice", "state": "on"}, host=host)
    assert status == "failed"
    assert "TLS check of " + verge.url in error and "give the server's CA certificate as ca_file" in error
    assert verge.vms[1]["running"] is False


def test_an_unreachable_host_is_named(run_task, verge):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f'{{type: vergeos, url: "https://127.0.0.1:{port}", auth: {{type: bearer, token: "${{env:VERGE_API_KEY}}"}}, ca_file: "{verge.ca}"}}'
    status, _, error = run_task(verge, {"vm": "gpu-alice", "state": "on"}, host=host)
    assert status == "failed"
    assert f"vm.power VM 'gpu-alice': host 'verge' (VergeOS) is unreachable at https://127.0.0.1:{port}" in error


def test_suspend_is_refused_as_unsupported(run_task, verge):
    status, _, error = run_task(verge, {"vm": "lab-1", "state": "suspend"})
    assert status == "failed" and "VergeOS's API has no suspend for vms" in error


def test_polled_events_and_reconciliation(applied, db_path, verge, monkeypatch):
    from tests.test_vm_events import vm_events
    from tests.test_vm_fixtures import wait_for

    monkeypatch.setenv("VERGE_API_KEY", "verge-key-1")
    monkeypatch.setattr("taskengine_vm.schema.MIN_VERGEOS_POLL", 0.1)
    monkeypatch.setattr("taskengine_vm.source.MIN_VERGEOS_POLL", 0.1)
    applied(f"""
        settings:
          vm: {{hosts: {{verge: {{type: vergeos, url: "{verge.url}", auth: {{type: bearer, token: "${{env:VERGE_API_KEY}}"}}, ca_file: "{verge.ca}", poll_interval: 0.2}}}}}}
    """)
    engine = Engine(db_path, workers=1)
    engine.start()
    try:
        state = engine.source_state("vm")
        wait_for(lambda: (state.get("host/verge") or {}).get("baseline"))
        verge.vms[1]["running"] = True
        started = wait_for(lambda: vm_events(db_path, "vm.started"))
        assert started[0]["data"] == {"vm": "gpu-alice", "uuid": "vergeos-vm-1", "host": "verge",
                                      "reason": "polled", "tags": ["gpu"], "state": "on"}
    finally:
        engine.stop(grace=5)
    verge.vms[2]["running"] = False  # while the engine is stopped
    engine = Engine(db_path, workers=1)
    engine.start()
    try:
        stopped = wait_for(lambda: vm_events(db_path, "vm.stopped"))
        assert stopped[0]["data"]["vm"] == "lab-1" and stopped[0]["data"]["reconciled"] is True
    finally:
        engine.stop(grace=5)


def test_verge_poll_interval_keeps_inside_the_rate_limit():
    from taskengine_vm.source import PollWatcher

    watcher = PollWatcher.__new__(PollWatcher)
    watcher.config = {"type": "vergeos", "poll_interval": "5s"}
    assert watcher.interval() == 30.0  # 1000 requests/hour per key: never faster than 30 s
    watcher.config = {"type": "vergeos"}
    assert watcher.interval() == 60.0


def test_waiting_for_many_vms_lists_them_once_per_step(run_task, verge):
    """Inside the rate limit: three requests to find the targets (VMs, tags, members), one
    action per VM, then one listing per wait step, not one request per VM."""
    status, out, _ = run_task(verge, {"tag": "lab", "state": "off", "timeout": "3s", "force": True})
    assert status == "succeeded"
    assert verge.count("GET", "/api/v4/tags") == verge.count("GET", "/api/v4/tag_members") == 1
    assert verge.count("POST", "/api/v4/vm_actions") == 3  # two poweroffs, one kill
    # waits: a listing while both are waited for, one machine's status once only lab-2 is left;
    # 3 s at steps of 1 s then 2 s, and one read after the kill
    polls = verge.count("GET", "/api/v4/vms") - 1 + verge.count("GET", "/api/v4/machine_status")
    assert 2 <= polls <= 5
