"""VM lifecycle events: what a libvirt lifecycle callback means in our event types, and which
events a change between two snapshots of a host stands for (reconciliation)."""

from __future__ import annotations

from .model import CRASHED, OFF, ON, PAUSED

TYPES = ("vm.started", "vm.stopped", "vm.crashed", "vm.suspended", "vm.resumed", "vm.defined",
         "vm.undefined", "vm.host_unreachable", "vm.host_reachable")

# virDomainEventType -> (our type, state after or None for "unchanged", detail names)
_LIBVIRT = {
    0: ("vm.defined", None, ("added", "updated", "renamed", "from_snapshot")),
    1: ("vm.undefined", None, ("removed", "renamed")),
    2: ("vm.started", ON, ("booted", "migrated", "restored", "from_snapshot", "wakeup")),
    3: ("vm.suspended", PAUSED, ("paused", "migrated", "ioerror", "watchdog", "restored",
                                 "from_snapshot", "api_error", "postcopy", "postcopy_failed")),
    4: ("vm.resumed", ON, ("unpaused", "migrated", "from_snapshot", "postcopy", "postcopy_failed")),
    5: ("vm.stopped", OFF, ("shutdown", "destroyed", "crashed", "migrated", "saved", "failed",
                            "from_snapshot")),
    7: ("vm.suspended", PAUSED, ("memory", "disk")),
    8: ("vm.crashed", CRASHED, ("panicked", "crashloaded")),
}
_STOPPED_CRASHED = (2, 5)  # STOPPED details CRASHED and FAILED are crashes


def from_libvirt(event: int, detail: int) -> tuple[str, str | None, str] | None:
    """``(type, state after, reason)`` for a lifecycle callback, or None for one we do not
    report (SHUTDOWN: the guest began shutting down; STOPPED follows)."""
    found = _LIBVIRT.get(event)
    if found is None:
        return None
    kind, state, details = found
    reason = details[detail] if 0 <= detail < len(details) else f"detail-{detail}"
    if event == 5 and detail in _STOPPED_CRASHED:
        return "vm.crashed", CRASHED, reason
    return kind, state, reason


def transition(before: str | None, after: str | None) -> str | None:
    """The event type for a state change seen between two snapshots (None: no change)."""
    if before == after:
        return None
    if before is None:
        return "vm.defined"
    if after is None:
        return "vm.undefined"
    if after == ON:
        return "vm.resumed" if before == PAUSED else "vm.started"
    if after == OFF:
        return "vm.stopped"
    if after == PAUSED:
        return "vm.suspended"
    if after == CRASHED:
        return "vm.crashed"
    return None  # a transitional state (starting, migrating): wait for where it lands
