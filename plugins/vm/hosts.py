"""Which host a task means, and the backend object that talks to it (one per host and
configuration per process, so connections and sessions are reused)."""

from __future__ import annotations

import json
import threading

from .model import VmError

_lock = threading.Lock()
_backends: dict[tuple[str, str], object] = {}


def host_names(settings: dict) -> list[str]:
    return sorted((settings or {}).get("hosts") or {})


def pick_host(settings: dict, wanted: str | None) -> str:
    """The host a task acts on: its own ``host``, else ``settings.vm.default``, else the only
    host. Raises a VmError saying what to set."""
    hosts = (settings or {}).get("hosts") or {}
    if not hosts:
        raise VmError("no VM hosts are configured: add settings.vm.hosts to a rule file "
                      "(see the user guide, 'Virtual machines')")
    name = wanted or settings.get("default")
    if name is None:
        if len(hosts) > 1:
            raise VmError(f"several VM hosts are configured ({', '.join(sorted(hosts))}) and the "
                          f"task names none: set with.host, or settings.vm.default")
        name = next(iter(hosts))
    if name not in hosts:
        where = "with.host" if wanted else "settings.vm.default"
        raise VmError(f"unknown VM host {name!r} (from {where}); defined in settings.vm.hosts: "
                      f"{', '.join(sorted(hosts))}")
    return name


def backend(name: str, config: dict):
    """The backend for host ``name`` configured as ``config`` (secrets resolved)."""
    key = (name, json.dumps(config, sort_keys=True, default=str))
    with _lock:
        found = _backends.get(key)
        if found is not None:
            return found
    kind = config.get("type")
    if kind == "libvirt":
        from .libvirt_backend import LibvirtBackend as cls
    elif kind == "vergeos":
        from .vergeos import VergeOSBackend as cls
    elif kind == "proxmox":
        from .proxmox import ProxmoxBackend as cls
    else:
        raise VmError(f"host {name!r}: unknown type {kind!r}; expected libvirt, vergeos or proxmox")
    made = cls(name, config)
    with _lock:
        return _backends.setdefault(key, made)
