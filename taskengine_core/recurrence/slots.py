"""Wall-clock slot sources with a small look-ahead cache.

The scheduler asks for the next fire once per fire, with ever later times. Generating slots
one at a time from dateutil or croniter costs tens of microseconds each; generating a chunk
of them and answering from it with a bisect makes the typical call a couple of microseconds.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime


class ChunkedSlots:
    """Subclasses implement ``generate(w, k, end)``: up to ``k`` ascending slots > ``w``, and
    whether that is all of them (nothing more exists, or the next would be after ``end``)."""

    chunk_size = 32

    def __init__(self, end: datetime | None = None):
        self.end = end
        # (lo, slots, complete): slots are exactly all slots in (lo, slots[-1]], or in (lo, ∞)
        # when complete. One tuple, replaced whole, so readers on other threads see a
        # consistent chunk.
        self._chunk: tuple[datetime, list[datetime], bool] | None = None

    def first_after(self, w: datetime) -> datetime | None:
        chunk = self._chunk
        if chunk is not None:
            lo, slots, complete = chunk
            if lo <= w and (complete or (slots and w < slots[-1])):
                i = bisect_right(slots, w)
                return slots[i] if i < len(slots) else None
        slots, complete = self.generate(w, self.chunk_size, self.end)
        self._chunk = (w, slots, complete)
        return slots[0] if slots else None

    def generate(self, w: datetime, k: int, end: datetime | None) -> tuple[list[datetime], bool]:
        raise NotImplementedError

