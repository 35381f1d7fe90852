"""The executor's record of a run it has claimed, from the claim until its outcome is written."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from taskengine_core.runs import Claimed


@dataclass
class InFlight:
    """A run this executor has claimed: queued for a worker, running, or abandoned (timed out,
    or cut off at stop) while its thread may still run."""

    run: Claimed
    # the action's ``ctx.cancelled``: made (under the executor's lock) when a worker takes the
    # run or when it is cancelled before that, not by the loop thread for every claimed run
    cancelled: threading.Event | None = None
    deadline: float | None = None
    abandoned: str | None = None  # why its result no longer counts: "timeout" or "stop"
    replaced: bool = False  # a new worker took the place of this entry's stuck thread
    # the action has returned; made (under the executor's lock) when the entry is abandoned, the
    # only case anyone waits for it: two Events per run were a tenth of a burst's claiming time
    returned: threading.Event | None = None
    started: bool = False  # a worker has taken it (else it waits in the queue, claimed ahead)
    reported: bool = False  # its outcome is in _done (or _unwritten): it can no longer time out

    def cancel_event(self) -> threading.Event:
        """The run's cancel flag, made when first needed (call under the executor's lock)."""
        if self.cancelled is None:
            self.cancelled = threading.Event()
        return self.cancelled

    def cancel(self) -> None:
        """Tell the action to stop (under the executor's lock); one not started yet sees the
        flag already set when a worker takes it."""
        self.cancel_event().set()
