"""Identifiers for events and runs: short, unique, safe to type, and in the order they were made.

An id is 16 hex characters: 44 bits of milliseconds since 1970, then 20 bits of a counter that
starts at a random value in each process. Ids made later sort later, so SQLite appends each new
one to the end of its unique index instead of dirtying a random page of it per row (a commit of
16 events writes half as much). Within one process two ids of the same millisecond differ in
the counter; two processes collide only if their counters meet within the same millisecond.
"""

from __future__ import annotations

import itertools
import os
import random
import time

_COUNTER_BITS = 20
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1
_MS_MASK = (1 << 44) - 1


def _counter() -> itertools.count:
    return itertools.count(random.SystemRandom().getrandbits(_COUNTER_BITS))


_next = _counter()  # next() on it is atomic under the GIL: threads need no lock


def _reseed() -> None:  # a forked child would otherwise repeat its parent's ids
    global _next
    _next = _counter()


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """16 hex characters, ordered by creation time."""
    return f"{(time.time_ns() // 1_000_000) & _MS_MASK:011x}{next(_next) & _COUNTER_MASK:05x}"
