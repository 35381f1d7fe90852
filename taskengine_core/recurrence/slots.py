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
    whether that is all of them (nothing more exists, or the next would be after ``end``).

    The chunk starts small and doubles while queries keep walking forward past it (the
    scheduler's pattern); a query elsewhere (``schedules next --after``, tests) resets it, so
    random access does not pay for a long look-ahead it will not use.
    """

    min_chunk, max_chunk = 4, 64

    def __init__(self, end: datetime | None = None):
        self.end = end
        # (lo, slots, complete): slots are exactly all slots in (lo, slots[-1]], or in (lo, ∞)
        # when complete. One tuple, replaced whole, so readers on other threads see a
        # consistent chunk.
        self._chunk: tuple[datetime, list[datetime], bool] | None = None
        self._size = self.min_chunk

    def first_after(self, w: datetime) -> datetime | None:
        chunk = self._chunk
        if chunk is not None:
            lo, slots, complete = chunk
            if lo <= w and (complete or (slots and w < slots[-1])):
                i = bisect_right(slots, w)
                return slots[i] if i < len(slots) else None
            walking = slots and slots[-1] <= w <= slots[-1] + (slots[-1] - lo)
            self._size = min(self._size * 2, self.max_chunk) if walking else self.min_chunk
        slots, complete = self.generate(w, self._size, self.end)
        self._chunk = (w, slots, complete)
        return slots[0] if slots else None

    def generate(self, w: datetime, k: int, end: datetime | None) -> tuple[list[datetime], bool]:
        raise NotImplementedError



def take_after(slots, w: datetime, k: int, end: datetime | None) -> tuple[list[datetime], bool]:
    """Up to ``k`` distinct slots > ``w`` from an ascending iterable, and whether that is all."""
    out: list[datetime] = []
    try:
        for slot in slots:
            if slot <= w or (out and slot == out[-1]):
                continue
            if end is not None and slot > end:
                return out, True
            out.append(slot)
            if len(out) >= k:
                return out, False
    except OverflowError:  # walked past year 9999
        pass
    return out, True
