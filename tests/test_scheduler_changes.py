"""A running engine's scheduler picks up a changed configuration by reading only the schedules
the change log names (issue 15), and ends up exactly where a full ``Scheduler.load`` would."""

from __future__ import annotations

import random
import re

import pytest

from taskengine_core import schedule_loading
from taskengine_core.apply import apply_config
from taskengine_core.catalog import set_enabled
from taskengine_core.clock import to_iso
from taskengine_core.model import load_runtime, refresh_runtime
from taskengine_core.rules.validate import load_config
from taskengine_core.scheduler import Scheduler
from taskengine_core.store import config, open_store, slots
from tests import plugins_for_tests
from tests.backends import db_path  # noqa: F401  (every test on SQLite and on PostgreSQL)
from tests.conftest import FakeClock

START = "2026-03-01T12:00:00+00:00"


@pytest.fixture
def setup(tmp_path, db_path):
    """``(store, apply(text), clock)``: rule files applied through the real loader."""
    registry = plugins_for_tests.manager().registry()
    store = open_store(db_path)
    path = tmp_path / "rules.yaml"

    def apply(text):
        path.write_text(text)
        apply_config(store, load_config([path], registry))

    yield store, apply, FakeClock(START)
    store.close()


@pytest.fixture
def reads(monkeypatch):
    """Which schedules each read of schedule rows asked for (None: all of them)."""
    asked = []
    real = slots.schedules_with_state

    def spy(conn, names=None):
        asked.append(None if names is None else list(names))
        return real(conn, names)

    monkeypatch.setattr(slots, "schedules_with_state", spy)
    return asked


def rules(times: dict[str, str], links: dict[str, list[str]], zone: str = "UTC") -> str:
    lines = [f"settings: {{timezone: {zone}}}", "schedules:"]
    lines += [f'  {name}: {{every: day, at: "{at}"}}' for name, at in times.items()]
    lines.append("tasks:")
    for task, linked in links.items():
        lines.append(f"  {task}: {{action: test.record, schedules: [{', '.join(linked)}]}}")
    return "\n".join(lines) + "\n"


def state(scheduler: Scheduler) -> tuple[dict, dict]:
    """What decides what the scheduler fires: each schedule's entry, its next fire time; and
    the heap's live entries are exactly those next fire times."""
    live = {entry for entry in scheduler._heap if not scheduler._stale(entry)}
    assert live == {(when.timestamp(), name) for name, when in scheduler._next.items()}
    entries = {name: (s.enabled, s.definition.spec, s.definition.digest, s.catch_up, s.max_lateness, s.tasks)
               for name, s in scheduler._schedules.items()}
    return entries, dict(scheduler._next)


def persisted(scheduler: Scheduler) -> None:
    """Each schedule's stored state is what the scheduler holds: its definition's hash and its
    next fire time (what an engine starting, or another full load, would read back)."""
    stored = {name: (digest, next_fire) for name, digest, next_fire in scheduler.store.conn.execute(
        "SELECT schedule, spec_hash, next_fire FROM schedule_state").fetchall()}
    held = {name: (s.definition.digest, to_iso(scheduler._next[name]) if name in scheduler._next else None)
            for name, s in scheduler._schedules.items()}
    assert {name: stored.get(name) for name in held} == held


def fresh_state(store, clock) -> tuple[dict, dict]:
    scheduler = Scheduler(store, clock)
    scheduler.load(load_runtime(store))
    return state(scheduler)


def test_one_changed_schedule_is_read_alone_and_the_rest_keep_their_entries(setup, reads):
    store, apply, clock = setup
    times = {f"s{i}": f"{i % 24:02d}:{i % 60:02d}" for i in range(50)}
    apply(rules(times, {"t": ["s1", "s2"], "u": ["s3"]}))
    scheduler = Scheduler(store, clock)
    runtime = load_runtime(store)
    scheduler.tick(runtime)
    assert reads == [None]
    before = dict(scheduler._schedules)
    apply(rules({**times, "s7": "23:59"}, {"t": ["s1", "s2"], "u": ["s3"]}))
    runtime = refresh_runtime(store, runtime)
    scheduler.tick(runtime)  # the engine loop's next step
    assert reads == [None, ["s7"]]
    persisted(scheduler)
    assert scheduler._next["s7"] == clock.now().replace(hour=23, minute=59)
    assert all(scheduler._schedules[n] is before[n] for n in before if n != "s7")
    assert state(scheduler) == fresh_state(store, clock)
    assert scheduler.generation == runtime.generation


def test_relinking_and_disabling_read_the_schedules_concerned(setup, reads):
    store, apply, clock = setup
    times = {"a": "13:00", "b": "14:00", "c": "15:00"}
    apply(rules(times, {"t": ["a", "b"], "u": ["c"]}))
    scheduler = Scheduler(store, clock)
    runtime = load_runtime(store)
    scheduler.tick(runtime)
    apply(rules(times, {"t": ["a"], "u": ["b", "c"]}))  # b moves from t to u
    set_enabled(store, "schedule", "c", False)
    runtime = refresh_runtime(store, runtime)
    scheduler.tick(runtime)
    assert reads[-1] == ["b", "c"]
    assert scheduler._schedules["b"].tasks == ("u",) and scheduler._schedules["c"].enabled is False
    assert state(scheduler) == fresh_state(store, clock)


def test_a_task_deleted_by_hand_takes_its_links_along(setup, reads):
    store, apply, clock = setup
    apply(rules({"a": "13:00", "b": "14:00"}, {"t": ["a"], "u": ["a", "b"]}))
    scheduler = Scheduler(store, clock)
    runtime = load_runtime(store)
    scheduler.tick(runtime)
    with store.write() as db:  # ON DELETE CASCADE removes u's links: the triggers log them too
        db.conn.execute("DELETE FROM tasks WHERE name = 'u'")
        config.bump_generation(db.conn)
    scheduler.tick(refresh_runtime(store, runtime))
    assert reads[-1] == ["a", "b"]
    assert scheduler._schedules["a"].tasks == ("t",) and scheduler._schedules["b"].tasks == ()
    assert state(scheduler) == fresh_state(store, clock)


def fired(store, now) -> set[str]:
    return {name for (name,) in store.conn.execute(
        "SELECT DISTINCT schedule FROM schedule_slots WHERE claimed_at = ?", (to_iso(now),)).fetchall()}


def test_a_moved_or_deleted_schedule_never_fires_at_its_old_time(setup):
    store, apply, clock = setup
    apply(rules({"later": "13:00", "earlier": "15:00", "gone": "13:00"}, {"t": ["later", "earlier", "gone"]}))
    scheduler = Scheduler(store, clock)
    runtime = load_runtime(store)
    scheduler.tick(runtime)
    apply(rules({"later": "15:00", "earlier": "13:00"}, {"t": ["later", "earlier"]}))
    runtime = refresh_runtime(store, runtime)
    assert scheduler.tick(runtime) == 0
    assert len(scheduler._heap) > len(scheduler._next)  # the old entries are still there, stale
    clock.advance(3600 + 60)  # 13:01
    assert scheduler.next_due_in() == 0
    assert scheduler.tick(runtime) == 1 and fired(store, clock.now()) == {"earlier"}
    clock.advance(2 * 3600)  # 15:01: "earlier" is not due again, "later" is
    assert scheduler.tick(runtime) == 1 and fired(store, clock.now()) == {"later"}
    clock.advance(21 * 3600)  # 12:01 the next day: nothing was due in between
    assert scheduler.tick(runtime) == 0
    assert scheduler.next_due_in() == 59 * 60
    assert store.conn.execute("SELECT count(*) FROM schedule_slots").fetchone()[0] == 2
    assert state(scheduler) == fresh_state(store, clock)


@pytest.mark.parametrize("why", ["timezone", "pruned", "too many"])
def test_a_full_load_when_only_that_will_do(setup, reads, monkeypatch, why):
    store, apply, clock = setup
    times = {"a": "13:00", "b": "14:00", "c": "15:00"}
    apply(rules(times, {"t": ["a", "b", "c"]}))
    scheduler = Scheduler(store, clock)
    runtime = load_runtime(store)
    scheduler.tick(runtime)
    if why == "timezone":  # every schedule without its own zone changes meaning
        apply(rules(times, {"t": ["a", "b", "c"]}, zone="Europe/Berlin"))
    elif why == "pruned":
        apply(rules({**times, "a": "13:30"}, {"t": ["a", "b", "c"]}))
        with store.write() as db:
            db.conn.execute("UPDATE meta SET value = '999999' WHERE key = 'config_changes_pruned_through'")
    else:
        monkeypatch.setattr(schedule_loading, "FULL_RELOAD_AT", 1)
        apply(rules({**times, "a": "13:30", "b": "14:30"}, {"t": ["a", "b", "c"]}))
    scheduler.tick(refresh_runtime(store, runtime))
    assert reads == [None, None]
    assert state(scheduler) == fresh_state(store, clock)


SPECS = [
    '{{every: day, at: "{hh}:{mm}"}}',
    '{{every: day, at: "{hh}:{mm}", timezone: America/Chicago, catch_up: all}}',
    '{{every: 2 hours, catch_up: skip}}',
    '{{cron: "{mm} */3 * * *", max_lateness: 1h}}',
    '{{every: week, days: [mon, fri], at: "{hh}:{mm}"}}',
    '{{once: "2026-03-0{d}T{hh}:{mm}"}}',
]


def random_rules(rng: random.Random, zone: str) -> str:
    names = [f"s{i}" for i in range(24) if rng.random() < 0.8]
    lines = [f"settings: {{timezone: {zone}}}", "schedules:"]
    for name in names:
        spec = rng.choice(SPECS).format(hh=f"{rng.randrange(24):02d}", mm=f"{rng.randrange(60):02d}",
                                        d=rng.randrange(1, 6))
        lines.append(f"  {name}: {spec}")
    lines.append("tasks:")
    for t in range(5):
        if rng.random() < 0.8:
            linked = ", ".join(rng.sample(names, min(len(names), rng.randrange(6))))
            lines.append(f"  t{t}: {{action: test.record, schedules: [{linked}]}}")
    return "\n".join(lines) + "\n"


def test_random_changes_leave_the_scheduler_as_a_full_load_would(setup, monkeypatch):
    """Applies that create, change, delete and relink schedules, toggles, the time zone now and
    then, and time passing with slots firing in between: after each step the running
    scheduler's entries, next fire times and heap agree with a fresh load, and what it fires is
    what the fresh load had due."""
    store, apply, clock = setup
    full_loads = []
    real_load = schedule_loading.load_all
    monkeypatch.setattr(Scheduler, "load", lambda self, runtime: full_loads.append(1) or real_load(self, runtime))
    rng = random.Random(15)
    zone = "UTC"
    text = random_rules(rng, zone)
    apply(text)
    runtime = load_runtime(store)
    scheduler = Scheduler(store, clock)
    scheduler.tick(runtime)
    zone_changes = 0
    for step in range(30):
        zone_changed = rng.random() < 0.1
        if zone_changed:
            zone_changes += 1
            zone = "Europe/Berlin" if zone == "UTC" else "UTC"
            text = random_rules(rng, zone)
        elif rng.random() < 0.7:
            text = random_rules(rng, zone) if rng.random() < 0.3 else "\n".join(
                line if not line.startswith("  s") or rng.random() < 0.8 else
                line.split(":")[0] + ": " + rng.choice(SPECS).format(hh="07", mm="30", d=4)
                for line in text.splitlines()) + "\n"
        apply(text)
        names = re.findall(r"^  (s\d+):", text, re.M)
        for name in rng.sample(names, min(len(names), rng.randrange(3))):
            set_enabled(store, "schedule", name, rng.random() < 0.5)
        loads = len(full_loads)
        runtime = refresh_runtime(store, runtime)
        scheduler.refresh(runtime)
        assert len(full_loads) == loads + zone_changed, step  # only a new time zone loads everything
        persisted(scheduler)
        assert state(scheduler) == fresh_state(store, clock), step
        clock.advance(rng.choice([0, 600, 3600, 4 * 3600, 26 * 3600]))
        due = {name for name, when in fresh_scheduler_next(store, clock).items() if when <= clock.now()}
        claimed = slot_rows(store)
        scheduler.tick(runtime)
        assert {name for name, _ in slot_rows(store) - claimed} == due, step
        persisted(scheduler)
        assert state(scheduler) == fresh_state(store, clock), step
    assert 0 < zone_changes < 10


def slot_rows(store) -> set[tuple[str, str]]:
    return set(map(tuple, store.conn.execute("SELECT schedule, due FROM schedule_slots").fetchall()))


def fresh_scheduler_next(store, clock) -> dict:
    scheduler = Scheduler(store, clock)
    scheduler.load(load_runtime(store))
    return scheduler._next


def test_the_change_log_is_read_through_its_key_on_postgresql(postgres_url):
    """Right after a large apply PostgreSQL has no statistics on the change log yet; the read of
    what changed since a seq must still walk the key's index, not the whole log (it cost 14 ms
    of a 20 ms pickup at 100,000 schedules)."""
    store = open_store(postgres_url)
    with store.write() as db:
        db.conn.execute("INSERT INTO schedules (name, spec, enabled, created_at, updated_at) "
                        "SELECT 's' || g, '{}', 1, 't', 't' FROM generate_series(1, 20000) g")
    last = config.last_change(store.conn)
    statements = []

    class Recording:  # the store's connection, noting what it is asked to run
        dialect = store.conn.dialect

        def execute(self, sql, params=()):
            statements.append((sql, params))
            return store.conn.execute(sql, params)

    assert config.changes_since(Recording(), last - 1, 2001) == ({("schedule", "s20000")}, last)
    [(sql, params)] = [(sql, params) for sql, params in statements if "FROM config_changes WHERE" in sql]
    plan = "\n".join(row[0] for row in store.conn.execute("EXPLAIN " + sql, params))
    assert "config_changes_pkey" in plan and "Seq Scan" not in plan, plan
    store.close()
