"""Identifiers for events and runs: short, unique, safe to type, and in the order they were made.

An id is 20 hex characters: 44 bits of milliseconds since 1970, 16 bits naming the process (random,
drawn again after a fork), and a 20-bit counter that starts at a random value. Ids made later sort
later, so SQLite appends each new one to the end of its unique index instead of dirtying a random
page of it per row (a commit of 16 events writes half as much). Within one process the counter
keeps ids of the same millisecond apart, even when the clock steps back (its ids then repeat a
millisecond, with other counter values); two processes would have to draw the same 16 bits and
meet in the same millisecond with the same counter value.
"""

from __future__ import annotations

import itertools
import os
import random
import time

_COUNTER_MASK = (1 << 20) - 1
_MS_MASK = (1 << 44) - 1


def _draw() -> tuple[str, itertools.count]:
    rng = random.SystemRandom()
    return f"{rng.getrandbits(16):04x}", itertools.count(rng.getrandbits(20))


_process, _next = _draw()  # next() on the counter is atomic under the GIL: threads need no lock


def _reseed() -> None:  # a forked child would otherwise repeat its parent's ids
    global _process, _next
    _process, _next = _draw()


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """20 hex characters, ordered by creation time."""
    return f"{(time.time_ns() // 1_000_000) & _MS_MASK:011x}{_process}{next(_next) & _COUNTER_MASK:05x}"


def new_ids(n: int) -> list[str]:
    """``n`` ids as :func:`new_id` makes them, with one clock read and one format of the time."""
    prefix = f"{(time.time_ns() // 1_000_000) & _MS_MASK:011x}{_process}"
    return [f"{prefix}{next(_next) & _COUNTER_MASK:05x}" for _ in range(n)]
