"""The libvirt backend: VMs are domains on the process's shared connection; tags live in a
domain metadata element of our own namespace (see the user guide, "Tags with virsh metadata")."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from . import libvirt_conn
from .libvirt_errors import NO_DOMAIN, NO_METADATA, OPERATION_INVALID, action_error
from .model import CRASHED, OFF, ON, PAUSED, HostUnreachable, VmInfo, VmVanished

TAGS_NAMESPACE = "https://taskengine.dev/xmlns/vm/1"
TAGS_KEY = "taskengine"  # the prefix virsh metadata --key sets

# virDomainState -> our words (SHUTDOWN: being shut down, still running)
_STATES = {0: "unknown", 1: ON, 2: ON, 3: PAUSED, 4: ON, 5: OFF, 6: CRASHED, 7: PAUSED}


class LibvirtBackend:
    type = "libvirt"

    def __init__(self, name: str, config: dict) -> None:
        self.name = name
        self.uri = config["uri"]

    # -- reading -----------------------------------------------------------------------------

    def connection(self):
        return libvirt_conn.connection(self.uri, self.name)

    def list_vms(self) -> list[VmInfo]:
        libvirt = libvirt_conn.libvirt_module()
        conn = self.connection()
        try:
            domains = conn.listAllDomains(0)
        except libvirt.libvirtError as exc:
            self._broken(conn)
            raise libvirt_conn.connect_error(self.name, self.uri, exc) from None
        out = []
        for dom in domains:
            try:
                out.append(self.info(dom))
            except VmVanished:
                continue  # undefined between the listing and now: not ours to report here
        return out

    def lookup(self, name: str) -> VmInfo | None:
        """One domain by exact name (no listing of every domain), or None."""
        libvirt = libvirt_conn.libvirt_module()
        conn = self.connection()
        try:
            return self.info(conn.lookupByName(name))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == NO_DOMAIN:
                return None
            if exc.get_error_code() in (38, 39):
                self._broken(conn)
                raise libvirt_conn.connect_error(self.name, self.uri, exc) from None
            raise action_error(exc, host=self.name, vm=name, what="looking it up") from None
        except VmVanished:
            return None

    def info(self, dom) -> VmInfo:
        libvirt = libvirt_conn.libvirt_module()
        name = "?"
        try:
            name = dom.name()
            uuid, state, tags = dom.UUIDString(), dom.state()[0], self.tags(dom)
        except libvirt.libvirtError as exc:
            raise action_error(exc, host=self.name, vm=name, what="reading its state") from None
        return VmInfo(self.name, name, uuid, _STATES.get(state, "unknown"), tags, ref=dom)

    def tags(self, dom) -> list[str]:
        libvirt = libvirt_conn.libvirt_module()
        try:
            text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, TAGS_NAMESPACE, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (NO_METADATA, NO_DOMAIN):
                return []
            raise
        return parse_tags(text)

    def refresh(self, vms: list[VmInfo]) -> dict[str, str | None]:
        """Current state of each VM by key; None for one that is gone."""
        libvirt = libvirt_conn.libvirt_module()
        out: dict[str, str | None] = {}
        for vm in vms:
            try:
                out[vm.key] = _STATES.get(vm.ref.state()[0], "unknown")
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != NO_DOMAIN:
                    raise action_error(exc, host=self.name, vm=vm.name, what="reading the state") from None
                out[vm.key] = None
        return out

    def list_tenants(self) -> list[VmInfo]:
        from .model import Unsupported

        raise Unsupported(f"host {self.name!r} is libvirt, which has no tenants; tenant: is for "
                          f"VergeOS hosts (use vm: or tag:)")

    # -- acting ------------------------------------------------------------------------------

    def act(self, vm: VmInfo, op: str, *, timeout: float) -> None:
        libvirt = libvirt_conn.libvirt_module()
        dom = vm.ref
        calls = {
            "start": dom.create, "shutdown": dom.shutdown, "destroy": dom.destroy,
            "reboot": lambda: dom.reboot(0), "reset": lambda: dom.reset(0),
            "suspend": dom.suspend, "resume": dom.resume,
        }
        try:
            calls[op]()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == OPERATION_INVALID and op == "destroy":
                return  # it went off by itself meanwhile: what we wanted
            if exc.get_error_code() == 1 and op == "start" and "already running" in str(exc):
                return  # started by someone else meanwhile
            error = action_error(exc, host=self.name, vm=vm.name, what=op)
            if isinstance(error, HostUnreachable):
                self._broken(self.connection())
            raise error from None

    def _broken(self, conn) -> None:
        libvirt_conn.forget(self.uri, conn)


def parse_tags(text: str | None) -> list[str]:
    """``<tags><tag>gpu</tag><tag>lab</tag></tags>`` -> ``['gpu', 'lab']``; a comma-separated
    text body (``<tags>gpu,lab</tags>``) works too."""
    if not text:
        return []
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return []
    tags = [t.text.strip() for t in root.iter() if t is not root and t.text and t.text.strip()]
    if not tags and root.text:
        tags = [t.strip() for t in root.text.split(",") if t.strip()]
    return tags
