"""Which VMs a ``vm.power`` task means: names, globs, lists, a tag, or VergeOS tenants."""

from __future__ import annotations

from fnmatch import fnmatchcase

from .model import VmError, VmInfo

_GLOB = set("*?[")


def as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def describe(params: dict) -> str:
    """``VM 'gpu-alice'``, ``VMs gpu-*, lab-1``, ``VMs tagged 'lab'``, ``tenant 'acme'``."""
    if params.get("tag") is not None:
        return f"VMs tagged {params['tag']!r}"
    kind = "tenant" if params.get("tenant") is not None else "VM"
    names = as_list(params.get("tenant") if kind == "tenant" else params.get("vm"))
    if len(names) == 1 and not _GLOB & set(names[0]):
        return f"{kind} {names[0]!r}"
    return f"{kind}s {', '.join(names)}"


def select(backend, host: str, params: dict) -> list[VmInfo]:
    """The targets on ``backend``, in a stable order, each once. A name, glob or tag that
    matches nothing is an error naming it: a typo must not pass as success."""
    if params.get("tag") is not None:
        tag = params["tag"]
        found = [vm for vm in backend.list_vms() if tag in vm.tags]
        if not found:
            hint = (" (libvirt tags are domain metadata: see the user guide, 'Tags with virsh "
                    "metadata')" if backend.type == "libvirt" else "")
            raise VmError(f"no VM on host {host!r} carries the tag {tag!r}{hint}")
        return sorted(found, key=lambda vm: vm.name)
    tenants = params.get("tenant") is not None
    patterns = as_list(params.get("tenant") if tenants else params.get("vm"))
    kind = "tenant" if tenants else "VM"
    exact = bool(params.get("exact"))
    lookup = getattr(backend, "lookup", None)
    if not tenants and lookup is not None and (exact or not any(_GLOB & set(p) for p in patterns)):
        inventory = [vm for vm in (lookup(p) for p in patterns) if vm is not None]
    else:
        inventory = backend.list_tenants() if tenants else backend.list_vms()
    chosen: dict[str, VmInfo] = {}
    missing = []
    for pattern in patterns:
        matches = [vm for vm in inventory
                   if (vm.name == pattern if exact else fnmatchcase(vm.name, pattern))]
        if not matches:
            missing.append(pattern)
        for vm in matches:
            chosen.setdefault(vm.key, vm)
    if missing:
        what = ", ".join(repr(p) for p in missing)
        raise VmError(f"no {kind} on host {host!r} matches {what}; check the name (names are "
                      f"case-sensitive) and the host")
    return sorted(chosen.values(), key=lambda vm: vm.name)
