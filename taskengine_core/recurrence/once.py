"""One-shot schedules: a single local date-time."""

from __future__ import annotations

from datetime import datetime

from .slots import ChunkedSlots


class OnceSlots(ChunkedSlots):
    def __init__(self, at: datetime):
        super().__init__()
        self.at = at

    def generate(self, w, k, end):
        return ([self.at] if self.at > w else []), True
