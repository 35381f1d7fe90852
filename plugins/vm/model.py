"""What every backend speaks: a VM as seen on a host, its power state in our words, and the
errors a hypervisor can give (each carrying what the operator should do)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Power states in the words of the action's output and of events.
ON, OFF, PAUSED, CRASHED = "on", "off", "paused", "crashed"


@dataclass
class VmInfo:
    """One VM (or VergeOS tenant) on one host. ``ref`` is whatever the backend needs to act on
    it (a libvirt domain, a VergeOS key and machine, a Proxmox node and vmid)."""

    host: str
    name: str
    uuid: str
    state: str
    tags: list[str] = field(default_factory=list)
    kind: str = "vm"  # or "tenant"
    ref: Any = None

    @property
    def key(self) -> str:
        return self.uuid or self.name


class VmError(Exception):
    """A failure about one VM or one host; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class HostUnreachable(VmError):
    """The hypervisor cannot be reached (or the connection broke): retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class AuthFailed(VmError):
    """The hypervisor refused our credentials: not retryable until someone fixes them."""


class VmVanished(VmError):
    """The VM was there when the run listed it and is gone now."""


class Unsupported(VmError):
    """The backend cannot do this (VergeOS has no suspend through its API, ...)."""
