"""The runtime's store functions (inbox, runs, attempts, decisions, slots, throttles), on SQLite
and on PostgreSQL; and on PostgreSQL, several connections claiming at once: no event, run or
slot is claimed twice, and a task limited to one run never has two running."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from taskengine_core.clock import to_iso
from taskengine_core.model import RetryPolicy, Runtime, TaskConfig
from taskengine_core.rule_index import RuleIndex
from taskengine_core.runs import claim_due, find_orphans
from taskengine_core.store import attempts, inbox, open_store, runs, slots, throttles
from taskengine_core.store.decisions import insert_decisions

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
T = to_iso(NOW)


@pytest.fixture
def store(db_target):
    store = open_store(db_target)
    yield store
    store.close()


def _event_row(n: int, *, data: dict | None = None, type_: str = "go") -> tuple:
    return (f"ev{n}", type_, "test", None, json.dumps(data if data is not None else {"n": n}), T, T, None, None)


def _run_row(run_id: str, task: str = "t", *, not_before: str = T, params=None) -> tuple:
    return (run_id, task, "pending", "event", None, None, None, None, params, not_before, T, 1, 0)


def _runtime(**concurrency: str) -> Runtime:
    tasks = {name: TaskConfig(name, "noop", {}, concurrency=policy, retry=RetryPolicy())
             for name, policy in concurrency.items()}
    return Runtime(generation=1, tasks=tasks, rules=RuleIndex([]), settings={})


def _unprocessed(store) -> list[str]:
    return [r[0] for r in store.conn.execute("SELECT id FROM events WHERE processed_at IS NULL ORDER BY seq")]


# -- inbox ---------------------------------------------------------------------------------------


def test_the_inbox_reads_events_exactly_and_marks_only_those_claimed(store):
    data = {"big": 2**70, "text": 'q"uo\\te Zoë 東京 \u2028', "nested": {"a": [1, None, True, 0.1]}}
    with store.write() as db:
        inbox.insert(db.conn, [_event_row(1, data=data), _event_row(2), _event_row(3)])
    assert inbox.waiting(store.conn)
    with store.write() as db:
        waiting = inbox.claim_waiting(db.conn, 2)
        assert [t for _, t, _ in waiting] == ["go", "go"]
        seqs = [seq for seq, _, _ in waiting]
        events = inbox.read_events(db.conn, seqs)
        assert [e["id"] for e in events] == ["ev1", "ev2"]
        assert events[0]["data"] == data and type(events[0]["data"]["big"]) is int
        assert (events[1]["source"], events[1]["source_id"], events[1]["time"]) == ("test", None, T)
        # only the seqs given: ev3, never read, stays waiting (no "up to the last seq")
        assert inbox.mark_processed(db.conn, [seqs[1]], T) == 1
    assert _unprocessed(store) == ["ev1", "ev3"]
    with store.write() as db:
        assert inbox.mark_processed(db.conn, [s for s, _, _ in inbox.claim_waiting(db.conn, 10)], T) == 2
    assert not inbox.waiting(store.conn)
    assert inbox.exists(store.conn, "ev2") and not inbox.exists(store.conn, "nope")
    assert inbox.load(store.conn, "ev2")[:3] == ("ev2", "go", "test")


def test_duplicates_are_found_by_source_and_id_within_the_window(store):
    with store.write() as db:
        inbox.insert(db.conn, [("a", "go", "src", "k1", "{}", T, T, None, None),
                               ("b", "go", "src", "k1", "{}", T, T, T, "a"),
                               ("c", "go", "other", "k1", "{}", T, to_iso(NOW - timedelta(days=2)), None, None)])
        inbox.insert_internal(db.conn, [("d", "task.started", "taskengine", "{}", T, T)])
    found = inbox.originals(store.conn, [("src", "k1"), ("other", "k1"), ("src", "none")],
                            to_iso(NOW - timedelta(days=1)))
    assert found == {("src", "k1"): "a"}


# -- runs ----------------------------------------------------------------------------------------


def test_a_run_is_started_once_and_finished_only_at_its_attempt(store):
    with store.write() as db:
        runs.insert(db.conn, [_run_row("r1"), _run_row("r2", not_before=to_iso(NOW + timedelta(hours=1)))])
    assert runs.next_due(store.conn) == T
    assert runs.anything_due(store.conn, T) and runs.anything_due(store.conn, T, "r1")
    assert not runs.anything_due(store.conn, T, "r2")
    with store.write() as db:
        assert [row[0] for row in runs.due(db.conn, T, 10)] == ["r1"]
        assert runs.start(db.conn, ["r1", "r2"], T, "me", T) == {"r1", "r2"}
        assert runs.start(db.conn, ["r1"], T, "other", T) == set()  # no longer pending
    assert runs.status(store.conn, "r1") == "running" and runs.status(store.conn, "nope") is None
    assert runs.running_counts(store.conn) == {"t": 2}
    assert runs.running_counts(store.conn, ["t", "u"]) == {"t": 2} and runs.running_counts(store.conn, []) == {}
    with store.write() as db:
        attempts.insert(db.conn, [("r1", 1, T, T, "succeeded", None, None, '"ok"', 0.5, "p", "1.0")])
        attempts.insert(db.conn, [("r1", 1, T, T, "failed", "doubled", None, None, 0.5, "p", "1.0")])
        assert runs.finish(db.conn, [("r1", 2, "failed", "late", None, 1, None, None, False)], T) == set()
        assert runs.finish(db.conn, [("r1", 1, "succeeded", None, '"ok"', 0.5, "p", "1.0", False),
                                     ("nope", 1, "failed", None, None, 0, None, None, True)], T) == {"r1"}
        assert runs.finish(db.conn, [("r1", 1, "failed", "doubled", None, 1, None, None, True)], T) == set()
        assert runs.retry(db.conn, "r2", 1, T, "again")
        assert not runs.retry(db.conn, "r2", 1, T, "again")  # pending now, not running
    assert [r[0] for r in store.conn.execute("SELECT outcome FROM attempts WHERE run_id = 'r1'")] == ["succeeded"]
    assert store.conn.execute("SELECT status, output, attention FROM runs WHERE id = 'r1'").fetchone() == (
        "succeeded", '"ok"', 0)
    assert store.conn.execute("SELECT status, error, lease_owner FROM runs WHERE id = 'r2'").fetchone() == (
        "pending", "again", None)


def test_skip_cancel_and_replace_change_only_the_runs_they_should(store):
    with store.write() as db:
        runs.insert(db.conn, [_run_row(f"r{i}") for i in range(5)])
        runs.start(db.conn, ["r0", "r1"], T, "me", T)
        runs.skip(db.conn, [("r2", "busy"), ("r0", "not pending")], T)
        runs.cancel(db.conn, [("r3", "gone")], T)
        assert sorted(runs.request_cancel(db.conn, "t", {"r1"})) == ["r0"]
        assert runs.request_cancel(db.conn, "t", set()) == ["r1"]
    rows = dict(store.conn.execute("SELECT id, status FROM runs").fetchall())
    assert rows == {"r0": "running", "r1": "running", "r2": "skipped", "r3": "cancelled", "r4": "pending"}
    assert sorted(runs.cancel_requested(store.conn, "me")) == ["r0", "r1"]
    assert runs.cancel_requested(store.conn, "someone else") == []
    with store.write() as db:
        excluded = runs.due(db.conn, T, 10, exclude_tasks=["t"])
    assert excluded == []


def test_leases_are_renewed_and_expired_ones_recovered(store):
    later = NOW + timedelta(minutes=5)
    with store.write() as db:
        runs.insert(db.conn, [_run_row("mine"), _run_row("theirs"), _run_row("fresh")])
        runs.start(db.conn, ["mine"], T, "me", T)
        runs.start(db.conn, ["theirs"], T, "gone:1:x:1", T)
        runs.start(db.conn, ["fresh"], T, "alive-elsewhere", to_iso(later + timedelta(minutes=1)))
        assert runs.renew_leases(db.conn, "me", to_iso(later + timedelta(minutes=1))) == 1
        expired = [row[0] for row in runs.claim_expired(db.conn, "me", to_iso(later))]
    assert expired == ["theirs"]
    assert sorted(r[0] for r in runs.running_of_others(store.conn, "me")) == ["fresh", "theirs"]
    with store.write() as db:
        assert runs.interrupt(db.conn, "theirs", T, "interrupted")
        assert not runs.interrupt(db.conn, "theirs", T, "interrupted")


def test_on_postgresql_recovery_goes_by_the_lease_not_the_pid(postgres_url):
    """A run whose owner is a dead process of this host but whose lease is still valid is left
    alone on PostgreSQL (the owner's name may not mean this machine); once it expires, it is recovered."""
    store = open_store(postgres_url)
    dead_owner = "host-of-another-container:999999:x:1"
    with store.write() as db:
        runs.insert(db.conn, [_run_row("r")])
        runs.start(db.conn, ["r"], T, dead_owner, to_iso(NOW + timedelta(seconds=60)))
        assert find_orphans(db.conn, NOW, "me", 60) == []
        assert [o[0] for o in find_orphans(db.conn, NOW + timedelta(seconds=61), "me", 60)] == ["r"]
    store.close()


def test_retire_tasks_marks_each_task_once(store):
    with store.write() as db:  # a task row as apply writes it (config is another module's)
        db.conn.execute("INSERT INTO tasks (name, spec, enabled, file, created_at, updated_at, action) "
                        "VALUES ('once', '{}', 1, 'rules.yaml', ?, ?, 'noop')", (T, T))
        runs.retire_tasks(db.conn, ["once"], T)
        runs.retire_tasks(db.conn, ["once"], "2030-01-01T00:00:00Z")
    assert store.conn.execute("SELECT retired_at FROM tasks").fetchall() == [(T,)]


def test_decisions_name_only_their_columns(store):
    with store.write() as db:
        insert_decisions(db.conn, ("time", "decision", "reason", "task"), [(T, "skipped", "why", "t")])
        with pytest.raises(ValueError, match="not a column"):
            insert_decisions(db.conn, ("time", "decision); DROP TABLE runs; --"), [(T, "x")])
    assert store.conn.execute("SELECT decision, reason, task FROM decisions").fetchall() == [("skipped", "why", "t")]


# -- claim_due -----------------------------------------------------------------------------------


def test_claim_due_honours_the_concurrency_policies(store):
    runtime = _runtime(q="queue", s="skip", r="replace", p="parallel")
    with store.write() as db:
        runs.insert(db.conn, [_run_row(f"{task}{i}", task) for task in "qsrp" for i in range(3)])
        claimed, to_cancel = claim_due(db.conn, runtime, NOW, "me", 60, 100)
    assert sorted(c.id for c in claimed) == ["p0", "p1", "p2", "q0", "r2", "s0"]
    assert to_cancel == []
    rows = dict(store.conn.execute("SELECT id, status FROM runs").fetchall())
    assert [rows[f"s{i}"] for i in range(3)] == ["running", "skipped", "skipped"]
    assert [rows[f"r{i}"] for i in range(3)] == ["cancelled", "cancelled", "running"]
    assert [rows[f"q{i}"] for i in range(3)] == ["running", "pending", "pending"]
    with store.write() as db:  # q is busy: its waiting runs are not even read
        assert claim_due(db.conn, runtime, NOW, "me", 60, 100) == ([], [])


# -- schedule slots and throttles ----------------------------------------------------------------


def test_a_slot_is_won_once(store):
    claims = [("every-minute", to_iso(NOW + timedelta(minutes=i)), "fired", T, "") for i in range(3)]
    with store.write() as db:
        assert slots.claim(db.conn, claims[:2]) == {(c[0], c[1]) for c in claims[:2]}
        assert slots.claim(db.conn, claims) == {(claims[2][0], claims[2][1])}
        assert slots.claim(db.conn, []) == set()
    assert store.conn.execute("SELECT count(*) FROM schedule_slots").fetchone()[0] == 3


def test_schedule_state_is_saved_and_advanced(store):
    with store.write() as db:
        slots.save_states(db.conn, [("s", "hash1", T, T)])
        slots.save_states(db.conn, [("s", "hash2", T, T)])
        slots.advance(db.conn, [("2026-03-01T12:01:00Z", T, T, "s")])
    assert store.conn.execute("SELECT spec_hash, next_fire, last_slot FROM schedule_state").fetchall() == [
        ("hash2", "2026-03-01T12:01:00Z", T)]


def test_throttle_windows_are_kept_per_rule_and_key(store):
    with store.write() as db:
        assert throttles.until(db.conn, "rule", '["a"]') is None
        throttles.save(db.conn, [("rule", '["a"]', T), ("rule", '["b"]', T)])
        throttles.save(db.conn, [("rule", '["a"]', "2030-01-01T00:00:00Z")])
    assert throttles.until(store.conn, "rule", '["a"]') == "2030-01-01T00:00:00Z"
    assert throttles.until(store.conn, "rule", '["b"]') == T


# -- several writers (PostgreSQL) ----------------------------------------------------------------


def _together(count: int, work) -> list:
    """Run ``work(i)`` on ``count`` threads started at once; their results (errors re-raised)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_concurrent_evaluators_claim_disjoint_events(postgres_url):
    store = open_store(postgres_url)
    with store.write() as db:
        inbox.insert(db.conn, [_event_row(i) for i in range(200)])
    stores = [open_store(postgres_url, migrate=False) for _ in range(4)]

    def evaluate(i):
        seen = []
        while True:
            with stores[i].write() as db:
                seqs = [s for s, _, _ in inbox.claim_waiting(db.conn, 7)]
                if not seqs:
                    return seen
                seen += [e["id"] for e in inbox.read_events(db.conn, seqs)]
                assert inbox.mark_processed(db.conn, seqs, T) == len(seqs)

    batches = _together(4, evaluate)
    every = [eid for batch in batches for eid in batch]
    assert sorted(every) == sorted(f"ev{i}" for i in range(200))  # each exactly once
    assert not inbox.waiting(store.conn)


def test_concurrent_claimers_never_share_a_run_nor_exceed_a_limit_of_one(postgres_url):
    store = open_store(postgres_url)
    runtime = _runtime(one="queue", skipper="skip", many="parallel")
    with store.write() as db:
        runs.insert(db.conn, [_run_row(f"{task}-{i:03}", task) for task in ("one", "skipper", "many")
                              for i in range(60)])
    stores = [open_store(postgres_url, migrate=False) for _ in range(4)]

    def claim(i):
        got = []
        for _ in range(20):
            with stores[i].write() as db:
                claimed, _ = claim_due(db.conn, runtime, NOW, f"node{i}", 60, 5)
            got += [c.id for c in claimed]
        return got

    claimed = [run_id for got in _together(4, claim) for run_id in got]
    assert len(claimed) == len(set(claimed))  # no run claimed twice
    running = runs.running_counts(store.conn)
    assert running["one"] == 1 and running["skipper"] == 1
    assert running["many"] == 60
    assert sum(1 for run_id in claimed if run_id.startswith("one-")) == 1
    owners = store.conn.execute("SELECT count(DISTINCT lease_owner) FROM runs WHERE status = 'running'").fetchone()[0]
    assert owners >= 1


def test_concurrent_schedulers_win_each_slot_once(postgres_url):
    store = open_store(postgres_url)
    claims = [(f"s{n}", to_iso(NOW + timedelta(minutes=m)), "fired", T, "") for n in range(50) for m in range(4)]
    stores = [open_store(postgres_url, migrate=False) for _ in range(4)]

    def claim(i):
        won = set()
        for start in range(0, len(claims), 25):  # each node in batches, in its own order
            batch = claims[start:start + 25] if i % 2 else claims[::-1][start:start + 25]
            with stores[i].write() as db:
                won |= slots.claim(db.conn, batch)
        return won

    results = _together(4, claim)
    every = [key for won in results for key in won]
    assert len(every) == len(set(every)) == len(claims)
    assert store.conn.execute("SELECT count(*) FROM schedule_slots").fetchone()[0] == len(claims)


def test_concurrent_recovery_takes_each_expired_run_once(postgres_url):
    store = open_store(postgres_url)
    with store.write() as db:
        runs.insert(db.conn, [_run_row(f"r{i}") for i in range(40)])
        runs.start(db.conn, [f"r{i}" for i in range(40)], T, "dead-node", T)
    stores = [open_store(postgres_url, migrate=False) for _ in range(4)]

    def recover(i):
        with stores[i].write() as db:
            found = [row[0] for row in find_orphans(db.conn, NOW + timedelta(seconds=1), f"node{i}", 60)]
            for run_id in found:
                assert runs.interrupt(db.conn, run_id, T, "interrupted")
            return found

    found = [run_id for got in _together(4, recover) for run_id in got]
    assert sorted(found) == sorted(f"r{i}" for i in range(40)) and len(found) == len(set(found))


def test_an_event_committed_late_with_a_lower_seq_is_still_evaluated(postgres_url):
    """Two writers: one node's ingress has taken seq 1 but not committed yet; another's event
    (seq 2) is committed and claimed for evaluation; seq 1 commits before the evaluation marks
    its batch. It must stay waiting, not be marked processed unseen (what the watermark
    ``seq <= 2`` did: at READ COMMITTED the marking statement sees the new row)."""
    from taskengine_core.evaluator import Evaluator

    store, slow = open_store(postgres_url), open_store(postgres_url, migrate=False)
    slow_write = slow.write()
    inbox.insert(slow_write.__enter__().conn, [_event_row(1)])  # seq 1, not committed yet
    with store.write() as db:
        inbox.insert(db.conn, [_event_row(2)])
    with store.write() as db:
        seqs = [seq for seq, _, _ in inbox.claim_waiting(db.conn, 100)]
        assert [e["id"] for e in inbox.read_events(db.conn, seqs)] == ["ev2"]
        slow_write.__exit__(None, None, None)  # seq 1 commits now
        inbox.mark_processed(db.conn, seqs, T)
    assert _unprocessed(store) == ["ev1"]
    assert Evaluator().process_pending(store, _runtime()) == 1
    assert _unprocessed(store) == []


def test_the_health_read_has_a_connection_of_its_own_on_either_backend(store, db_target):
    from taskengine_core.holds import current_pause
    from taskengine_core.store.health_queries import health_counts, open_reader, read_errors

    with store.write() as db:
        inbox.insert(db.conn, [_event_row(1)])
        runs.insert(db.conn, [_run_row("due"), _run_row("later", not_before=to_iso(NOW + timedelta(hours=1)))])
        runs.start(db.conn, ["later"], T, "me", T)
    reader = open_reader(db_target, 1.0)
    try:
        counts = health_counts(reader, T)
        assert current_pause(reader, NOW) is None
    finally:
        reader.close()
    assert counts == {"inbox": 1, "runs_pending": 1, "runs_running": 1, "oldest_waiting_event": T, "run_due": True}
    with pytest.raises(read_errors()):
        open_reader(str(db_target) + "-missing" if "://" not in str(db_target) else str(db_target) + "_missing", 1.0)


def test_holds_on_either_backend_and_a_pause_ends_once(store):
    from taskengine_core.store import holds

    with store.write() as db:
        runs.insert(db.conn, [_run_row("a"), _run_row("b")])
        assert holds.write_pause(db.conn, {"since": T, "until": None, "reason": "x", "by": "me"})
        assert holds.read_pause(db.conn)["by"] == "me"
        assert [r[0] for r in holds.due_runs(db.conn, T, 10)] == ["a", "b"]
        assert holds.defer_run(db.conn, "a", "2030-01-01T00:00:00Z")
        assert holds.skip_run(db.conn, "b", T, "blackout")
        assert not holds.skip_run(db.conn, "b", T, "blackout")
        assert holds.write_pause(db.conn, None)
        assert not holds.write_pause(db.conn, None)  # ended already: the second engine does nothing
    assert holds.read_pause(store.conn) is None
    assert dict(store.conn.execute("SELECT id, status FROM runs").fetchall()) == {"a": "pending", "b": "skipped"}


def test_two_engines_storing_the_same_source_id_at_once_keep_one_original(postgres_url):
    """Each node's ingress looks for an earlier event with the same (source, id) and stores its
    own as a duplicate if there is one; at the same moment on two nodes, one of them must see
    the other's."""
    from taskengine_core.events import Event, insert_events

    stores = [open_store(postgres_url) for _ in range(4)]

    def store_event(i):
        return insert_events(stores[i], [Event("go", {"n": i}, source="hook", source_id="delivery-1")])

    _together(4, store_event)
    rows = stores[0].conn.execute("SELECT duplicate_of IS NULL, processed_at IS NULL FROM events").fetchall()
    assert sorted(rows) == [(False, False)] * 3 + [(True, True)]  # one original; three duplicates, processed


def test_throttle_windows_are_read_in_one_query(store):
    with store.write() as db:
        throttles.save(db.conn, [("r", '["a"]', T), ("r", '["b"]', T), ("other", '["a"]', T)])
        found = throttles.lock_and_read(db.conn, [("r", '["a"]'), ("r", '["c"]'), ("other", '["a"]')])
    assert found == {("r", '["a"]'): T, ("other", '["a"]'): T}
    assert throttles.lock_and_read(store.conn, []) == {}


def test_a_second_engine_waits_for_the_first_ones_throttle_window(postgres_url):
    """Two engines evaluate events of the same throttled rule and key at once: the second reads
    the window only after the first committed it, so the rule fires once."""
    first, second = open_store(postgres_url), open_store(postgres_url, migrate=False)
    window = ("rule", '["k"]')
    locked, read = threading.Event(), []

    def other_engine():
        locked.wait(10)
        with second.write() as db:
            read.append(throttles.lock_and_read(db.conn, [window]))

    thread = threading.Thread(target=other_engine)
    thread.start()
    with first.write() as db:
        assert throttles.lock_and_read(db.conn, [window]) == {}
        locked.set()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for this transaction
        throttles.save(db.conn, [(*window, "2030-01-01T00:00:00Z")])
    thread.join(10)
    assert read == [{window: "2030-01-01T00:00:00Z"}]


def test_a_deadlock_or_lock_timeout_on_postgresql_keeps_the_outcomes_to_write_again(postgres_url):
    """What another engine causes (a deadlock PostgreSQL broke, a lock wait that timed out) is
    not the outcomes' fault: they are written again as they are, output included."""
    from taskengine_core.errors import transient as _transient

    a, b = open_store(postgres_url), open_store(postgres_url, migrate=False)
    with a.write() as db:
        runs.insert(db.conn, [_run_row("x"), _run_row("y")])
    errors = []
    barrier = threading.Barrier(2)

    def update(store, first, second):
        try:
            with store.write() as db:
                db.conn.execute("UPDATE runs SET error = 'a' WHERE id = ?", (first,))
                barrier.wait()
                db.conn.execute("UPDATE runs SET error = 'b' WHERE id = ?", (second,))
        except Exception as exc:  # noqa: BLE001 - the one PostgreSQL chose
            errors.append(exc)

    threads = [threading.Thread(target=update, args=(a, "x", "y")), threading.Thread(target=update, args=(b, "y", "x"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1 and "deadlock" in str(errors[0])
    assert _transient(errors[0])
    with a.write() as db:
        db.conn.execute("SELECT id FROM runs WHERE id = 'x' FOR UPDATE")
        b.waits = False
        with pytest.raises(Exception) as busy:
            with b.write() as other:
                other.conn.execute("UPDATE runs SET error = 'c' WHERE id = 'x'")
    assert _transient(busy.value)
    assert not _transient(ValueError("cannot bind"))


def test_the_lease_period_comes_from_the_environment_or_the_backend(monkeypatch):
    from taskengine_core.engine import LEASE_ENV, lease_seconds
    from taskengine_core.errors import TaskEngineError

    monkeypatch.delenv(LEASE_ENV, raising=False)
    assert (lease_seconds(True), lease_seconds(False)) == (30.0, 60.0)
    monkeypatch.setenv(LEASE_ENV, "2.5")
    assert lease_seconds(True) == lease_seconds(False) == 2.5
    for bad in ("soon", "0", "nan", "1e9"):
        monkeypatch.setenv(LEASE_ENV, bad)
        with pytest.raises(TaskEngineError, match=f"{LEASE_ENV}=.*expected seconds between 1 and 86400"):
            lease_seconds(True)
