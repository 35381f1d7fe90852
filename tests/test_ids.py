"""Event and run ids: 16 hex characters, unique, ordered by creation time."""

from __future__ import annotations

import os
import re
import threading
import time

from taskengine_core.ids import new_id


def test_ids_are_short_hex_and_unique_across_threads():
    made: list[list[str]] = [[] for _ in range(4)]

    def make(out):
        out.extend(new_id() for _ in range(50_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for out in made for i in out]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids[:1000])
    assert len(set(ids)) == len(ids) == 200_000


def test_later_ids_sort_later():
    """What keeps SQLite appending to the end of the unique index instead of all over it."""
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    assert first < second
    assert int(second[:11], 16) - int(first[:11], 16) >= 2  # the millisecond prefix


def test_a_forked_child_does_not_repeat_its_parents_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    parent = new_id()
    os.waitpid(pid, 0)
    child = os.read(read, 16).decode()
    os.close(read)
    # without a reseed both would take the same next counter value (a 1 in 2**20 chance with it)
    assert child[11:] != parent[11:]
    assert len(child) == 16
