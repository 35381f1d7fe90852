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
from taskengine_core.on_first_call import on_first_call

from .schema import PARAMS_SCHEMA, SETTINGS_SCHEMA

# Backends (requests, libvirt) and the action and source modules are imported when an action or
# the source runs: every CLI start loads every plugin, and a machine without libvirt must still
# run everything else.
__all__ = ["PARAMS_SCHEMA", "SETTINGS_SCHEMA", "register_actions", "register_triggers"]


_run_source = on_first_call(f"{__name__}.source", "run_source",
                            "Watch the hosts in settings.vm.hosts; emit their VMs' lifecycle events.")
_power = on_first_call(f"{__name__}.power", "power", "Bring VMs to a power state.")


@hookimpl
def register_triggers(register) -> None:
    # the hosts are shared: with several engines on one database, one of them watches them
    register("vm", _run_source, schema=SETTINGS_SCHEMA, runs_on="one_node",
             description="VM lifecycle events (vm.started, vm.stopped, ...) from settings.vm.hosts")


@hookimpl
def register_actions(register) -> None:
    register(
        "vm.power",
        _power,
        schema=PARAMS_SCHEMA,
        description="Bring VMs to a power state (on, off, kill, reboot, reset, suspend, resume).",
        idempotent=True,  # it reads the state first: a retry after a crash does not act twice
    )
