"""validate: a vm.power task's host must be defined in settings.vm.hosts; settings checked."""

from __future__ import annotations


def test_unknown_host_is_a_validate_error_with_position_and_hint(write_rules, run_cli):
    path = write_rules("""
        settings:
          vm:
            hosts:
              lab: {type: libvirt, uri: "qemu:///system"}
              verge: {type: vergeos, url: "https://verge.example.com", auth: {type: bearer, token: "${env:VERGE_API_KEY}"}}
        tasks:
          a: {action: vm.power, with: {vm: x, state: on, host: labb}}
          b: {action: vm.power, with: {vm: x, state: on, host: pve}}
          c: {action: vm.power, with: {vm: x, state: on, host: verge}}
    """)
    result = run_cli("validate", path)
    assert result.exit_code == 1
    assert (f"{path}:7:50  tasks.a.with.host  task 'a' refers to host 'labb', which is not defined "
            f"under settings.vm.hosts; did you mean 'lab'?") in result.stderr
    assert "task 'b' refers to host 'pve', which is not defined under settings.vm.hosts; defined: lab, verge" in result.stderr
    assert "task 'c'" not in result.stderr
    assert "2 errors found" in result.stderr


def test_host_without_vm_settings_says_where_to_add_it(write_rules, run_cli):
    path = write_rules("""
        tasks:
          a: {action: vm.power, with: {vm: x, state: on, host: lab}}
    """)
    result = run_cli("validate", path)
    assert result.exit_code == 1
    assert "refers to host 'lab', which is not defined under settings.vm.hosts; add it under 'settings.vm.hosts:'" in result.stderr


def test_bad_settings_and_parameters_are_named(write_rules, run_cli):
    path = write_rules("""
        settings:
          vm:
            hosts:
              pve: {type: proxmox, url: "http://pve.example.com:8006", token_id: nobang, token: "${env:PVE_TOKEN}"}
              verge: {type: vergeos, url: "https://v.example.com", auth: {type: bearer, token: literal-key-123}}
        tasks:
          a: {action: vm.power, with: {vm: x, tag: y, state: on}}
          b: {action: vm.power, with: {vm: x, state: sideways}}
    """)
    result = run_cli("validate", path)
    assert result.exit_code == 1
    err = result.stderr
    assert "settings.vm.hosts.pve.url" in err and "settings.vm.hosts.pve.token_id" in err
    assert "settings.vm.hosts.verge.auth.token" in err  # a literal where a secret belongs
    assert "tasks.a.with" in err and "tasks.b.with.state" in err


def test_the_shipped_examples_validate(run_cli):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "examples"
    for name in ("power-on-vm-at-login.yaml", "power-off-tenant-on-date.yaml"):
        result = run_cli("validate", root / "settings.yaml", root / name)  # their settings live there
        assert result.exit_code == 0, result.stderr
