"""The last state the event source saw of each VM of one host, kept in the source's durable
state, and the events that changes to it stand for.

Keys: ``vm/{host}/{uuid}`` -> ``{"name", "state", "tags", "n"}`` (``state`` None once the VM
is undefined: its counter ``n`` lives on, so event ids never repeat) and ``host/{host}`` ->
``{"baseline", "reachable", "outages", "since"}``.

Events are emitted first and recorded after. A crash in between re-emits the same change on
restart under the same id (``host:uuid:n:type``), which the inbox drops as a duplicate.
"""

from __future__ import annotations

import datetime as dt

from .events import transition
from .model import ON, VmInfo


class Tracker:
    def __init__(self, ctx, host: str) -> None:
        self.ctx, self.host = ctx, host
        self.prefix = f"vm/{host}/"
        self.host_key = f"host/{host}"
        self.records: dict[str, dict] = {k[len(self.prefix):]: v for k, v in ctx.state.items(self.prefix)}
        self.status: dict = ctx.state.get(self.host_key) or {}

    # -- host reachability -------------------------------------------------------------------

    def unreachable(self, error: str) -> None:
        if self.status.get("reachable") is False:
            return
        outages = self.status.get("outages", 0) + 1
        since = _now()
        self.ctx.emit_many([{"type": "vm.host_unreachable", "id": f"{self.host}:outage:{outages}",
                             "data": {"host": self.host, "error": error}}])
        self._save_status(reachable=False, outages=outages, since=since)

    def reachable(self) -> None:
        if self.status.get("reachable") is not False:
            if not self.status.get("reachable"):
                self._save_status(reachable=True)
            return
        outages = self.status.get("outages", 0)
        self.ctx.emit_many([{"type": "vm.host_reachable", "id": f"{self.host}:back:{outages}",
                             "data": {"host": self.host, "down_since": self.status.get("since")}}])
        self._save_status(reachable=True)

    def _save_status(self, **values) -> None:
        self.status = {**self.status, **values}
        self.ctx.state.set(self.host_key, self.status)

    # -- VM states ---------------------------------------------------------------------------

    def reconcile(self, vms: list[VmInfo], *, reconciled: bool, reason: str = "reconciled") -> int:
        """Compare a full listing with the record; emit what changed; returns the count."""
        baseline = bool(self.status.get("baseline"))
        events, updates = [], {}
        live = {vm.key: vm for vm in vms}
        for key, vm in live.items():
            rec = self.records.get(key)
            before = rec.get("state") if rec else None
            if baseline:
                for kind in _kinds(before, vm.state):
                    events.append(self._event(kind, key, vm.name, vm.tags, vm.state, reason,
                                              reconciled, updates))
            if not rec or (rec.get("state"), rec.get("name"), rec.get("tags")) != (vm.state, vm.name, vm.tags):
                updates[key] = {**(updates.get(key) or rec or {"n": 0}), "name": vm.name,
                                "state": vm.state, "tags": vm.tags}
        for key, rec in self.records.items():
            if key not in live and rec.get("state") is not None:
                events.append(self._event("vm.undefined", key, rec["name"], rec.get("tags", []), None,
                                          reason, reconciled, updates))
                updates[key] = {**updates[key], "state": None}
        self._commit(events, updates)
        if not baseline:
            self._save_status(baseline=True)
        return len(events)

    def observe(self, kind: str, vm: VmInfo, state: str | None, reason: str) -> bool:
        """A pushed event (libvirt): emit it unless the record already has its outcome (a
        reconciliation that ran after the event was queued reported it)."""
        rec = self.records.get(vm.key)
        before = rec.get("state") if rec else None
        if kind == "vm.undefined":
            if before is None:
                return False
        elif kind == "vm.defined":
            state = before if rec and before is not None else state
        elif state == before:
            return False
        tags = vm.tags or (rec or {}).get("tags", [])
        updates: dict = {}
        event = self._event(kind, vm.key, vm.name, tags, state, reason, False, updates)
        updates[vm.key] = {**updates[vm.key], "name": vm.name, "state": state, "tags": tags}
        self._commit([event], updates)
        return True

    def _event(self, kind, key, name, tags, state, reason, reconciled, updates) -> dict:
        rec = updates.get(key) or self.records.get(key) or {"n": 0}
        n = rec.get("n", 0) + 1
        updates[key] = {**rec, "n": n}
        data = {"vm": name, "uuid": key, "host": self.host, "reason": reason, "tags": list(tags),
                "state": state}
        if reconciled:
            data["reconciled"] = True
        return {"type": kind, "id": f"{self.host}:{key}:{n}:{kind}", "data": data}

    def _commit(self, events: list[dict], updates: dict) -> None:
        if events:
            self.ctx.emit_many(events)
        if updates:
            self.ctx.state.update({self.prefix + k: v for k, v in updates.items()})
            self.records.update(updates)


def _kinds(before: str | None, after: str | None) -> list[str]:
    kind = transition(before, after)
    if kind is None:
        return []
    if kind == "vm.defined" and after == ON:
        return ["vm.defined", "vm.started"]
    return [kind]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
