"""The VergeOS backend (API v4): VMs and tenants, native tags.

- list: ``GET /api/v4/vms?fields=...`` (one request for every VM with its machine's status),
  tags from ``tags`` and ``tag_members`` (members written ``vms/KEY``);
- act: ``POST /api/v4/vm_actions`` / ``tenant_actions`` (201; 409 when already in the state);
- one VM's state: ``GET /api/v4/machine_status/{machine}``.
VergeOS allows 1,000 requests per hour per API key: waits poll the one-request listing.
"""

from __future__ import annotations

from .https import Api
from .model import OFF, ON, PAUSED, Unsupported, VmError, VmInfo, VmVanished

VM_FIELDS = "$key,name,machine,uuid,machine#status#running as running,machine#status#status as status"
TENANT_FIELDS = "$key,name,uuid,status#running as running,status#status as status"
_OPS = {"start": ("poweron", {}), "shutdown": ("poweroff", {}), "destroy": ("kill", {}),
        "reset": ("reset", {}), "reboot": ("reset", {"graceful": True})}
_TENANT_OPS = {"start": ("poweron", {}), "shutdown": ("poweroff", {}), "reset": ("reset", {})}


def _state(row: dict) -> str:
    status = str(row.get("status") or "").lower()
    if status in ("paused", "suspended", "hibernated"):
        return PAUSED
    if status in ("running", "online"):
        return ON
    if status in ("stopped", "offline", ""):
        return ON if row.get("running") else OFF
    return status  # starting, stopping, migrating, error: passed on as VergeOS says it


class VergeOSBackend:
    type = "vergeos"
    poll_first, poll_max = 1.0, 5.0  # waits re-list every VM: mind the 1,000 requests/hour

    def __init__(self, name: str, config: dict) -> None:
        self.name = name
        auth = config["auth"]
        headers, basic = {"Accept": "application/json"}, None
        if auth["type"] == "bearer":
            headers["Authorization"] = f"Bearer {auth['token']}"
        else:
            basic = (auth["username"], auth["password"])
        self.api = Api(name, "VergeOS", config, headers, basic)

    def list_vms(self, *, with_tags: bool = True) -> list[VmInfo]:
        rows = self.api.request("GET", "/api/v4/vms", what="listing VMs",
                                params={"fields": VM_FIELDS, "filter": "is_snapshot eq false"})
        tags = self._tags("vms") if with_tags else {}
        return [VmInfo(self.name, r["name"], str(r.get("uuid") or f"vergeos-vm-{r['$key']}"),
                       _state(r), tags.get(str(r["$key"]), []), "vm",
                       {"key": r["$key"], "machine": r.get("machine")})
                for r in _rows(rows, "vms")]

    def list_tenants(self, *, with_tags: bool = True) -> list[VmInfo]:
        rows = self.api.request("GET", "/api/v4/tenants", what="listing tenants",
                                params={"fields": TENANT_FIELDS})
        tags = self._tags("tenants") if with_tags else {}
        return [VmInfo(self.name, r["name"], str(r.get("uuid") or f"vergeos-tenant-{r['$key']}"),
                       _state(r), tags.get(str(r["$key"]), []), "tenant", {"key": r["$key"]})
                for r in _rows(rows, "tenants")]

    def _tags(self, table: str) -> dict[str, list[str]]:
        names = {str(t["$key"]): t["name"] for t in _rows(self.api.request(
            "GET", "/api/v4/tags", what="listing tags", params={"fields": "$key,name"}), "tags")}
        members = self.api.request("GET", "/api/v4/tag_members", what="listing tag members",
                                   params={"fields": "tag,member"})
        out: dict[str, list[str]] = {}
        for m in _rows(members, "tag_members"):
            owner_table, _, key = str(m.get("member", "")).partition("/")
            if owner_table == table and str(m.get("tag")) in names:
                out.setdefault(key, []).append(names[str(m["tag"])])
        return out

    def refresh(self, vms: list[VmInfo]) -> dict[str, str | None]:
        if not vms:
            return {}
        if len(vms) == 1 and vms[0].kind == "vm" and vms[0].ref.get("machine") is not None:
            vm = vms[0]  # one VM: its machine's status, a small answer
            row = self.api.request("GET", f"/api/v4/machine_status/{vm.ref['machine']}", ok=(200, 404),
                                   params={"fields": "powerstate,running,status"},
                                   what=f"reading the state of VM {vm.name!r}")
            return {vm.key: None if isinstance(row, int) else _state(row)}
        listing = self.list_tenants if vms[0].kind == "tenant" else self.list_vms
        current = {v.key: v.state for v in listing(with_tags=False)}  # one request per wait step
        return {vm.key: current.get(vm.key) for vm in vms}

    def act(self, vm: VmInfo, op: str, *, timeout: float) -> None:
        ops = _TENANT_OPS if vm.kind == "tenant" else _OPS
        if op not in ops:
            raise Unsupported(f"{vm.kind} {vm.name!r} on host {self.name!r}: VergeOS's API has no "
                              f"{op} for {vm.kind}s; choose another state")
        action, params = ops[op]
        table = "tenant_actions" if vm.kind == "tenant" else "vm_actions"
        body = {vm.kind: str(vm.ref["key"]), "action": action, "params": params}
        status = self.api.request("POST", f"/api/v4/{table}", json=body, ok=(200, 201, 202, 409, 404),
                                  what=f"asking {vm.kind} {vm.name!r} to {action}")
        if status == 404:
            raise VmVanished(f"{vm.kind} {vm.name!r} vanished from host {self.name!r} during the "
                             f"run (HTTP 404); it was deleted or renamed meanwhile")
        # 409: already in that state (someone else acted meanwhile): what we wanted


def _rows(data, what: str) -> list[dict]:
    if isinstance(data, dict) and isinstance(data.get(what), list):  # some builds wrap lists
        data = data[what]
    if not isinstance(data, list):
        raise VmError(f"VergeOS answered a listing of {what} with {type(data).__name__}, not a list")
    return [r for r in data if isinstance(r, dict) and ("$key" in r or what == "tag_members")]
