"""Built-in plugin: ``vm.power`` and the ``vm`` event source, on libvirt, VergeOS and Proxmox.

``vm.power`` reads each target's state first: a VM already in the wanted state is success
with ``changed: false``; a graceful shutdown waits up to ``timeout``, then powers off when
``force: true`` (or fails naming the VM). The event source emits ``vm.started``,
``vm.stopped``, ``vm.crashed``, ``vm.suspended``, ``vm.resumed``, ``vm.defined`` and
``vm.undefined`` and reconciles what it missed while away. The libvirt binding is the
optional extra ``taskengine-core[libvirt]``, imported only when a libvirt host is used.
"""

from __future__ import annotations

from taskengine_core.hookspecs import hookimpl

from .schema import PARAMS_SCHEMA, SETTINGS_SCHEMA

# Backends (requests, libvirt) are imported inside the hooks' functions: every CLI start loads
# every plugin, and a machine without libvirt must still run everything else.
__all__ = ["PARAMS_SCHEMA", "SETTINGS_SCHEMA", "register_actions", "register_triggers"]


@hookimpl
def register_triggers(register) -> None:
    from .source import run_source

    # the hosts are shared: with several engines on one database, one of them watches them
    register("vm", run_source, schema=SETTINGS_SCHEMA, runs_on="one_node",
             description="VM lifecycle events (vm.started, vm.stopped, ...) from settings.vm.hosts")


@hookimpl
def register_actions(register) -> None:
    from .power import power

    register(
        "vm.power",
        power,
        schema=PARAMS_SCHEMA,
        description="Bring VMs to a power state (on, off, kill, reboot, reset, suspend, resume).",
        idempotent=True,  # it reads the state first: a retry after a crash does not act twice
    )
