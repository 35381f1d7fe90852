"""Event and run ids: 20 hex characters, unique, ordered by creation time."""

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
    assert all(re.fullmatch(r"[0-9a-f]{20}", i) for i in ids[:1000])
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
    child = os.read(read, 20).decode()
    os.close(read)
    # without a reseed both would name the same process and take the same next counter value
    assert child[11:15] != parent[11:15] or child[15:] != parent[15:]
    assert len(child) == 20


def test_two_processes_writing_fast_make_no_common_id(tmp_path):
    """Counters that start apart drift past each other when two processes make ids at different
    rates; the process part keeps them apart then."""
    import subprocess
    import sys

    script = ("import sys\nfrom taskengine_core.ids import new_id\n"
              "sys.stdout.write('\\n'.join(new_id() for _ in range(int(sys.argv[1]))))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)], stdout=subprocess.PIPE, text=True)
             for n in (400_000, 150_000)]
    made = [set(p.communicate()[0].split()) for p in procs]
    assert len(made[0]) == 400_000 and len(made[1]) == 150_000
    assert not made[0] & made[1]


def test_new_ids_are_new_ids_made_in_one_go():
    from taskengine_core.ids import new_id, new_ids

    before = new_id()
    batch = new_ids(1000)
    after = new_id()
    assert len(set(batch)) == 1000 and all(re.fullmatch(r"[0-9a-f]{20}", i) for i in batch)
    assert before not in batch and after not in batch
    assert {i[11:15] for i in [before, *batch, after]} == {before[11:15]}  # one process
    assert before[:11] <= batch[0][:11] <= batch[-1][:11] <= after[:11]  # the time leads
    assert new_ids(0) == []
