"""Claiming ahead: while attempts are quick, an executor step claims more runs than there are
free workers (they wait in this process's queue), so a burst of due runs costs one commit per
few hundred runs instead of one per ``workers``. The queue is kept short enough that its last
run is expected to start within :data:`PREFETCH_WAIT` seconds, judged by the recent attempts'
mean duration; slow attempts turn it off. Runs still waiting at stop go back to pending."""

from __future__ import annotations

PREFETCH_WAIT = 0.05
PREFETCH_MAX = 512
_FINISHED = ("succeeded", "failed", "cancelled")


class ClaimPace:
    def __init__(self) -> None:
        self.mean: float | None = None  # recent attempts' mean duration (s)

    def learn(self, outcomes) -> None:
        durations = [o.duration for o in outcomes if o.status in _FINISHED]
        if durations:
            mean = sum(durations) / len(durations)
            self.mean = mean if self.mean is None else 0.5 * self.mean + 0.5 * mean

    def ahead(self, workers: int) -> int:
        """How many runs beyond the free workers a step may claim: none until attempts have
        shown how long they take, then as many as start within PREFETCH_WAIT."""
        if self.mean is None:
            return 0
        return min(PREFETCH_MAX, int(workers * PREFETCH_WAIT / max(self.mean, 1e-5)))
