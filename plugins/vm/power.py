"""The ``vm.power`` action: read each target's state, act only where it differs, wait for the
result, force (or fail) what ignores a graceful shutdown, and report every target.

Targets are acted on together: every shutdown is sent, then all are waited for at once, so
200 VMs take one timeout, not 200.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from taskengine_core.context import ActionContext
from taskengine_core.durations import format_duration, parse_duration
from taskengine_core.errors import ActionError

from .hosts import backend, pick_host
from .model import CRASHED, OFF, ON, PAUSED, VmError, VmInfo
from .schema import DEFAULT_TIMEOUT
from .targets import describe, select

# wanted state -> (state after, {state before: first operation}); a state missing from the
# mapping is refused with a reason from _REFUSALS
_PLANS: dict[str, tuple[str, dict[str, str | None]]] = {
    "on": (ON, {ON: None, OFF: "start", CRASHED: "start", PAUSED: "resume"}),
    "off": (OFF, {OFF: None, ON: "shutdown", CRASHED: "destroy"}),
    "kill": (OFF, {OFF: None, ON: "destroy", PAUSED: "destroy", CRASHED: "destroy"}),
    "reboot": (ON, {ON: "reboot"}),
    "reset": (ON, {ON: "reset", PAUSED: "reset", CRASHED: "reset"}),
    "suspend": (PAUSED, {PAUSED: None, ON: "suspend"}),
    "resume": (ON, {ON: None, PAUSED: "resume"}),
}
_DONE = {"start": "powered on", "shutdown": "shut down", "destroy": "forced off",
         "reboot": "rebooted", "reset": "reset", "suspend": "suspended", "resume": "resumed"}
FORCE_GRACE = 30.0  # seconds a forced stop may take to show


@dataclass
class Target:
    vm: VmInfo
    before: str
    op: str | None = None
    after: str | None = None
    note: str = ""
    error: VmError | None = None
    forced: bool = False

    def report(self) -> dict:
        out = {"host": self.vm.host, "vm": self.vm.name, "before": self.before,
               "after": self.after, "changed": self.after is not None and self.op is not None
               and self.error is None, "note": self.note}
        if self.vm.kind != "vm":
            out["kind"] = self.vm.kind
        if self.forced:
            out["forced"] = True
        if self.error is not None:
            out["error"] = str(self.error)
        return out


def power(params: dict, ctx: ActionContext) -> dict:
    """Bring the VMs a task names to ``params['state']``; see the module docstring."""
    wanted = params["state"]
    try:
        host = pick_host(ctx.settings, params.get("host"))
        be = backend(host, ctx.settings["hosts"][host])
        vms = select(be, host, params)
        if getattr(be, "coarse_listing", False):  # the listing cannot tell paused from running
            exact = be.refresh(vms)
            for vm in vms:
                vm.state = exact.get(vm.key) or vm.state
    except VmError as exc:
        raise ActionError(f"vm.power {describe(params)}: {exc}", retryable=exc.retryable) from None
    timeout = parse_duration(params.get("timeout", DEFAULT_TIMEOUT))
    left = ctx.time_left()
    if left is not None:  # leave the force and the report room inside the task's own timeout
        timeout = min(timeout, left * 0.8)
    targets = [Target(vm, vm.state) for vm in vms]
    _Run(be, wanted, params.get("force", False), timeout, ctx).drive(targets)
    output = {"state": wanted, "host": host, "targets": [t.report() for t in targets],
              "changed": sum(1 for t in targets if t.report()["changed"]),
              "failed": sum(1 for t in targets if t.error is not None)}
    failed = [t for t in targets if t.error is not None]
    if failed:
        first = "; ".join(str(t.error) for t in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise ActionError(f"vm.power {wanted}: {len(failed)} of {len(targets)} failed: {first}{more}",
                          retryable=any(t.error.retryable for t in failed), output=output)
    return output


class _Run:
    def __init__(self, be, wanted: str, force: bool, timeout: float, ctx: ActionContext) -> None:
        self.be, self.wanted, self.force, self.timeout, self.ctx = be, wanted, force, timeout, ctx
        self.goal, self.plan = _PLANS[wanted]

    def drive(self, targets: list[Target]) -> None:
        for t in targets:
            self._start(t)
        acting = [t for t in targets if t.op is not None and t.error is None]
        self._wait(acting, self.timeout)
        late = [t for t in acting if t.after != self.goal and t.error is None]
        if late and self.wanted == "off":
            self._force_or_fail(late)
        for t in late:
            if t.error is None and t.after != self.goal:
                t.error = VmError(f"VM {t.vm.name!r} on host {t.vm.host!r} is {t.after} "
                                  f"{format_duration(self.timeout)} after {t.op}, not {self.goal}; "
                                  f"look at its console or the hypervisor's log", retryable=True)

    def _start(self, t: Target) -> None:
        where = f"{t.vm.kind if t.vm.kind != 'vm' else 'VM'} {t.vm.name!r} on host {t.vm.host!r}"
        if t.before == self.goal and self.plan.get(t.before, "x") is None:
            t.after, t.note = t.before, f"already {t.before}"
            return
        if self.wanted == "off" and t.before == PAUSED:
            if not self.force:
                t.after = t.before
                t.error = VmError(f"{where} is paused, so it cannot see an ACPI shutdown; resume "
                                  f"it first, or use force: true or state: kill")
                return
            op = "destroy"
        elif t.before not in self.plan:
            t.after = t.before
            t.error = VmError(f"{where} is {t.before}, so {self.wanted} does not apply"
                              + _advice(self.wanted, t.before))
            return
        else:
            op = self.plan[t.before]
        t.op = op
        self._act(t, op)

    def _act(self, t: Target, op: str) -> None:
        try:
            self.be.act(t.vm, op, timeout=self.timeout)
        except VmError as exc:
            t.error, t.after = exc, t.before
            return
        t.note = _DONE[op]

    def _wait(self, pending: list[Target], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        delay = getattr(self.be, "poll_first", 0.02)
        while pending:
            try:
                states = self.be.refresh([t.vm for t in pending])
            except VmError as exc:
                for t in pending:
                    t.error = VmError(f"VM {t.vm.name!r} (after {t.op}): {exc}", retryable=exc.retryable)
                return
            still = []
            for t in pending:
                state = states.get(t.vm.key)
                if state is None:
                    t.error = VmError(f"VM {t.vm.name!r} vanished from host {t.vm.host!r} during "
                                      f"the run (after {t.op}); it was undefined or deleted meanwhile")
                    continue
                t.after = state
                if state != self.goal:
                    still.append(t)
            pending = still
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                return
            if self.ctx.cancelled.wait(min(delay, remaining)):
                raise ActionError("vm.power was cancelled while waiting for the VMs", retryable=False,
                                  output=None)
            delay = min(delay * 2, getattr(self.be, "poll_max", 1.0))

    def _force_or_fail(self, late: list[Target]) -> None:
        waited = format_duration(self.timeout)
        if not self.force:
            for t in late:
                t.note = f"shutdown sent; still {t.after} after {waited}"
                t.error = VmError(
                    f"VM {t.vm.name!r} on host {t.vm.host!r} did not shut down within {waited} "
                    f"(it is still {t.after}; the guest may ignore ACPI: check acpid or the guest "
                    f"agent); set force: true to power it off after the timeout, or raise timeout")
            return
        forced = []
        for t in late:
            if t.vm.kind == "tenant":
                t.error = VmError(f"tenant {t.vm.name!r} on host {t.vm.host!r} did not power off "
                                  f"within {waited}, and VergeOS cannot kill a tenant through "
                                  f"tenant_actions; power off its nodes in the VergeOS UI")
                continue
            t.op, t.forced = "destroy", True
            self._act(t, "destroy")
            if t.error is None:
                t.note = f"forced off after {waited} (the guest ignored the shutdown)"
                forced.append(t)
        self._wait(forced, FORCE_GRACE)


def _advice(wanted: str, state: str) -> str:
    if state == OFF and wanted in ("reboot", "reset", "suspend", "resume"):
        return "; use state: on to start it"
    if state == PAUSED and wanted in ("reboot", "suspend"):
        return "; use state: resume first"
    return f"; wait until it settles (it is {state}) and run the task again"
