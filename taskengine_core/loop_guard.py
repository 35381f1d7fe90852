"""What keeps a failing loop from flooding its log and burning a core: exponential backoff
between failed steps, a log line once per interval (not once per failure), and a heartbeat
(the time of the last step that completed) that ``/healthz`` reads.

A full disk, a deleted database or a plugin that raises on every pass would otherwise make the
engine loop retry at once, forever: hundreds of tracebacks a second.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

FIRST_BACKOFF = 0.2  # seconds after the first failure
MAX_BACKOFF = 30.0
LOG_EVERY = 60.0  # seconds between log lines about the same run of failures


class LoopGuard:
    def __init__(self, name: str, logger: logging.Logger, *, first: float = FIRST_BACKOFF,
                 cap: float = MAX_BACKOFF, log_every: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.log = name, logger
        self.first, self.cap, self.log_every, self.clock = first, cap, log_every, clock
        self._lock = threading.Lock()
        self.last_success: float = clock()  # the heartbeat: when a step last completed
        self.failures = 0  # in a row
        self.last_error: str | None = None
        self._logged_at: float | None = None
        self._unlogged = 0  # failures since the last log line

    def succeeded(self) -> None:
        with self._lock:
            self.last_success = self.clock()
            if not self.failures:
                return
            failures, self.failures, self.last_error = self.failures, 0, None
            self._logged_at, self._unlogged = None, 0
        self.log.warning("%s recovered after %d failed step(s)", self.name, failures)

    def failed(self, exc: BaseException) -> float:
        """Record a failed step; returns the seconds to wait before the next one. The first
        failure of a run is logged with its traceback, later ones once per interval."""
        now = self.clock()
        with self._lock:
            self.failures += 1
            self.last_error = _describe(exc)
            wait = min(self.cap, self.first * 2 ** min(self.failures - 1, 30))
            first = self._logged_at is None
            due = first or now - self._logged_at >= self.log_every
            if due:
                unlogged, self._unlogged, self._logged_at = self._unlogged, 0, now
            else:
                self._unlogged += 1
        if first:
            self.log.error("%s failed: %s; retrying in %.1fs (backing off up to %gs, logging "
                           "once every %gs while it keeps failing)", self.name, self.last_error,
                           wait, self.cap, self.log_every, exc_info=exc)
        elif due:
            self.log.error("%s still failing: %d failure(s) in a row (%d not logged since the "
                           "last line); last error: %s; next try in %.1fs", self.name,
                           self.failures, unlogged, self.last_error, wait)
        return wait

    def stalled_for(self) -> float:
        """Seconds since a step last completed."""
        return max(0.0, self.clock() - self.last_success)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__module__.startswith("taskengine") else f"{type(exc).__name__}: {text}"
