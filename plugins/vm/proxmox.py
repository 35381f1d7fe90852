"""The Proxmox VE backend: QEMU VMs and LXC containers, native tags.

- list: ``GET /api2/json/cluster/resources?type=vm`` (one request: node, vmid, status, tags);
- one VM's state: ``GET /nodes/{node}/{qemu|lxc}/{vmid}/status/current`` (``qmpstatus``
  tells paused from running);
- act: ``POST /nodes/{node}/{type}/{vmid}/status/{start|shutdown|stop|reboot|reset|suspend|
  resume}`` returns a task id (UPID), polled at ``/nodes/{node}/tasks/{upid}/status`` until
  ``status: stopped``; ``exitstatus: OK`` is success.
Auth: ``Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`` (stateless, no CSRF token).
"""

from __future__ import annotations

import time
from urllib.parse import quote

from .https import Api
from .model import OFF, ON, PAUSED, Unsupported, VmError, VmInfo, VmVanished

_OPS = {"start": "start", "shutdown": "shutdown", "destroy": "stop", "reboot": "reboot",
        "reset": "reset", "suspend": "suspend", "resume": "resume"}


def _state(status: str | None, qmpstatus: str | None = None) -> str:
    if qmpstatus in ("paused", "suspended", "prelaunch"):
        return PAUSED
    return {"running": ON, "stopped": OFF, "paused": PAUSED}.get(str(status), str(status))


class ProxmoxBackend:
    type = "proxmox"
    coarse_listing = True  # cluster/resources says "running" for a paused VM: ask each target
    poll_first, poll_max = 0.2, 2.0

    def __init__(self, name: str, config: dict) -> None:
        self.name = name
        headers = {"Accept": "application/json",
                   "Authorization": f"PVEAPIToken={config['token_id']}={config['token']}"}
        self.api = Api(name, "Proxmox", config, headers)

    def list_vms(self) -> list[VmInfo]:
        data = self.api.request("GET", "/api2/json/cluster/resources", params={"type": "vm"},
                                what="listing VMs")
        out = []
        for r in _data(data, list):
            if r.get("template") or "vmid" not in r:
                continue
            tags = [t for t in str(r.get("tags") or "").replace(",", ";").split(";") if t]
            ref = {"node": r["node"], "type": r.get("type", "qemu"), "vmid": int(r["vmid"])}
            out.append(VmInfo(self.name, r.get("name") or str(r["vmid"]),
                              f"pve-{r['vmid']}", _state(r.get("status")), tags, "vm", ref))
        return out

    def list_tenants(self) -> list[VmInfo]:
        raise Unsupported(f"host {self.name!r} is Proxmox, which has no tenants; tenant: is for "
                          f"VergeOS hosts (use vm: or tag:)")

    def _path(self, vm: VmInfo) -> str:
        ref = vm.ref
        return f"/api2/json/nodes/{quote(ref['node'], safe='')}/{ref['type']}/{ref['vmid']}"

    def refresh(self, vms: list[VmInfo]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for vm in vms:
            data = self.api.request("GET", self._path(vm) + "/status/current", ok=(200, 404),
                                    what=f"reading the state of VM {vm.name!r}")
            if isinstance(data, int):  # 404: removed or migrated away
                out[vm.key] = None
                continue
            current = _data(data, dict)
            out[vm.key] = _state(current.get("status"), current.get("qmpstatus"))
        return out

    def act(self, vm: VmInfo, op: str, *, timeout: float) -> None:
        if op not in _OPS:
            raise Unsupported(f"VM {vm.name!r} on host {self.name!r}: Proxmox has no {op}")
        body = {}
        if op == "shutdown":  # PVE's own wait; ours polls the state and forces if asked
            body = {"timeout": max(1, int(timeout)), "forceStop": 0}
        data = self.api.request("POST", self._path(vm) + f"/status/{_OPS[op]}", data=body,
                                ok=(200, 404), what=f"asking VM {vm.name!r} to {_OPS[op]}")
        if isinstance(data, int):
            raise VmVanished(f"VM {vm.name!r} vanished from host {self.name!r} during the run "
                             f"(HTTP {data}); it was removed or migrated meanwhile")
        upid = _data(data, str)
        if op != "shutdown":  # a shutdown's task lasts as long as the guest takes: we poll state
            self._wait_task(vm, upid, timeout)

    def _wait_task(self, vm: VmInfo, upid: str, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 1.0)
        path = f"/api2/json/nodes/{quote(vm.ref['node'], safe='')}/tasks/{quote(upid, safe='')}/status"
        delay = 0.05
        while True:
            status = _data(self.api.request("GET", path, what=f"waiting for task {upid}"), dict)
            if status.get("status") == "stopped":
                if status.get("exitstatus") != "OK":
                    raise VmError(f"VM {vm.name!r} on host {self.name!r}: Proxmox task {upid} ended "
                                  f"with {status.get('exitstatus')!r}; see the task log in the "
                                  f"Proxmox UI", retryable=True)
                return
            if time.monotonic() > deadline:
                raise VmError(f"VM {vm.name!r} on host {self.name!r}: Proxmox task {upid} still runs "
                              f"after {timeout:.0f}s; see the task log in the Proxmox UI",
                              retryable=True)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _data(body, kind):
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, kind):
        raise VmError(f"Proxmox answered without a 'data' {kind.__name__}: {str(body)[:200]}")
    return data
