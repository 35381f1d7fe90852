"""``apply`` skips the work an earlier apply already did, and never an error (issue 15).

Files unchanged since the last apply (same paths, same text, same validation key, nothing else
changed the configuration since) are not read at all; objects unchanged since it skip the
per-object checks they passed then; references between objects are always checked; and a
changed object, a changed setting or other checking code (validation key) means a full check,
each error reported with FILE:LINE. On SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from taskengine_core import apply as apply_module
from taskengine_core.apply import apply_config, apply_paths, known_specs
from taskengine_core.errors import RuleFileError
from taskengine_core.plugins import get_plugin_manager
from taskengine_core.recurrence import compiled
from taskengine_core.rules import loader
from taskengine_core.rules.validate import Config, Definition, load_config
from taskengine_core.store import config as stored
from taskengine_core.store import open_store

RULES = """
settings:
  timezone: Europe/Berlin
schedules:
  nightly: {every: day, at: "02:00"}
  weekly: {every: week, days: [mon], at: "06:00"}
tasks:
  backup:
    action: command.run
    with: {argv: [echo, backup]}
    schedules: [nightly, weekly]
"""


@pytest.fixture
def registry():
    return get_plugin_manager().registry()


@pytest.fixture
def opener(db_target):
    """``open_store(create)`` as the CLI hands it to ``apply_paths``: one store, opened once."""
    opened = []

    def open_(create: bool):
        if not opened:
            opened.append(open_store(db_target, create=create))
        return opened[0]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def reads(monkeypatch):
    """How many rule files were parsed, and how many schedules were checked semantically."""
    counts = {"files": 0, "schedules": 0}
    load_document, check = loader.load_document, compiled.check_schedule

    def counting_load(path):
        counts["files"] += 1
        return load_document(path)

    def counting_check(*args, **kwargs):
        counts["schedules"] += 1
        return check(*args, **kwargs)

    monkeypatch.setattr("taskengine_core.rules.validate.load_document", counting_load)
    monkeypatch.setattr("taskengine_core.apply_delta.load_document", counting_load)  # the few-files shortcut
    monkeypatch.setattr("taskengine_core.recurrence.check_schedule", counting_check)
    return counts


def test_an_unchanged_file_is_not_read_and_is_reported_unchanged(opener, registry, write_rules, reads):
    path = write_rules(RULES)
    first = apply_paths([path], registry, opener)
    assert first.counts()["created"] == 4 and reads["files"] == 1
    again = apply_paths([path], registry, opener)
    assert again.changes == [] and reads["files"] == 1  # not parsed, not diffed
    assert again.summary() == "no changes: the database already matches the rule files"
    audit_rows = opener(False).conn.execute("SELECT count(*) FROM audit").fetchone()[0]
    assert audit_rows == 4


def test_a_change_elsewhere_or_another_file_set_means_reading_again(opener, registry, write_rules, reads):
    path = write_rules(RULES)
    extra = write_rules("schedules:\n  hourly: {every: hour}\n", "extra.yaml")
    apply_paths([path, extra], registry, opener)
    store = opener(False)
    with store.write() as db:  # what `tasks disable` does: the configuration changed since
        stored.set_enabled(db.conn, "task", "backup", False, "2026-01-01T00:00:00.000000Z")
        stored.bump_generation(db.conn)
    assert apply_paths([path, extra], registry, opener).changes == []
    assert reads["files"] == 4  # read again, found unchanged
    assert apply_paths([path, extra], registry, opener).changes == [] and reads["files"] == 4
    dropped = apply_paths([path], registry, opener)  # the same file, without the other
    assert [(c.action, c.name) for c in dropped.changes] == [("deleted", "hourly")]
    path.write_text(path.read_text().replace('"06:00"', '"07:00"'))
    edited = apply_paths([path], registry, opener)
    assert [(c.action, c.name) for c in edited.changes] == [("updated", "weekly")]


def test_unchanged_objects_skip_their_checks_and_changed_ones_do_not(opener, registry, write_rules, reads):
    path = write_rules(RULES)
    apply_paths([path], registry, opener)
    assert reads["schedules"] == 2
    path.write_text(path.read_text().replace('"02:00"', '"02:30"'))
    result = apply_paths([path], registry, opener)
    assert [(c.action, c.name) for c in result.changes] == [("updated", "nightly")]
    assert reads["schedules"] == 3  # only the changed schedule was checked again


def test_a_changed_schedule_is_checked_and_its_error_reported_with_file_and_line(opener, registry, write_rules):
    path = write_rules(RULES)
    apply_paths([path], registry, opener)
    path.write_text(path.read_text().replace('{every: week, days: [mon], at: "06:00"}',
                                             '{every: year, months: [feb], day_of_month: 30}'))
    with pytest.raises(RuleFileError) as caught:
        apply_paths([path], registry, opener)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.path) == (str(path), 5, "schedules.weekly.day_of_month")
    assert "never occurs: this schedule can never fire" in problem.message
    store = opener(False)
    assert json.loads(stored.object_spec(store.conn, "schedule", "weekly"))["every"] == "week"  # nothing written


def test_references_are_checked_even_when_every_object_is_unchanged(opener, registry, write_rules):
    path = write_rules(RULES)
    apply_paths([path], registry, opener)
    path.write_text(path.read_text().replace('  weekly: {every: week, days: [mon], at: "06:00"}\n', ""))
    with pytest.raises(RuleFileError) as caught:
        apply_paths([path], registry, opener)
    (problem,) = caught.value.problems
    assert (problem.line, problem.path) == (9, "tasks.backup.schedules[1]")
    assert "refers to schedule 'weekly', which is not defined" in problem.message


def test_a_spec_stored_without_checks_is_checked_in_full(opener, registry, write_rules):
    """A configuration applied without ``load_config`` (a hand-built ``Config``) records no
    validation key: the same bad spec in a file is then reported, not taken as checked."""
    bad = {"every": "year", "months": ["feb"], "day_of_month": 30}
    path = write_rules("schedules:\n  leap: {every: year, months: [feb], day_of_month: 30}\n")
    good = write_rules("schedules:\n  ok: {every: day}\n", "good.yaml")
    apply_paths([good], registry, opener)  # records the validation key
    config = Config()
    config.objects["schedules"]["leap"] = Definition("schedules", "leap", bad, str(path), None)
    apply_config(opener(True), config)
    assert known_specs(opener(False), registry).specs == {}
    with pytest.raises(RuleFileError) as caught:
        apply_paths([path], registry, opener)
    assert [(p.line, p.path) for p in caught.value.problems] == [(2, "schedules.leap.day_of_month")]


def test_another_validation_key_or_changed_settings_check_everything_again(
        opener, registry, write_rules, reads, monkeypatch):
    path = write_rules(RULES)
    apply_paths([path], registry, opener)
    path.write_text(path.read_text().replace("Europe/Berlin", "Asia/Tokyo"))
    apply_paths([path], registry, opener)
    assert reads["schedules"] == 4  # the time zone they are checked in changed
    monkeypatch.setattr(apply_module, "validation_key", lambda registry: "other checking code")
    path.write_text(path.read_text() + "# a comment\n")
    assert apply_paths([path], registry, opener).changes == []
    assert reads["schedules"] == 6


def test_schedules_are_checked_in_the_zone_set_anywhere(registry, write_rules, monkeypatch):
    """The engine runs every schedule in the final ``timezone`` setting; checking does too,
    whichever file (or place in a file) defines it."""
    import taskengine_core.recurrence as recurrence

    first = write_rules("schedules:\n  s: {every: day, at: '02:30'}\n", "a.yaml")
    second = write_rules("settings: {timezone: Pacific/Apia}\n", "b.yaml")
    seen, original = [], recurrence.check_schedule

    def recording(spec, zone, **kwargs):
        seen.append(zone)
        return original(spec, zone, **kwargs)

    monkeypatch.setattr(recurrence, "check_schedule", recording)
    load_config([first, second], registry)
    assert seen == ["Pacific/Apia"]


def test_applied_marks_round_trip(db_target):
    store = open_store(db_target)
    try:
        assert stored.applied_marks(store.conn) == {}
        with store.write() as db:
            stored.set_applied_marks(db.conn, "k1", '{"files": "f", "generation": 1}')
            stored.set_applied_marks(db.conn, "k2", "")
        assert stored.applied_marks(store.conn) == {"validated_with": "k2", "applied_files": ""}
    finally:
        store.close()


def test_cli_apply_twice_and_an_invalid_file_creates_no_database(run_cli, write_rules, tmp_path):
    path = write_rules(RULES)
    first = run_cli("apply", path)
    assert first.exit_code == 0 and "created schedule nightly" in first.stdout
    again = run_cli("apply", path)
    assert again.exit_code == 0 and again.stdout == ""
    assert "no changes: the database already matches the rule files" in again.stderr
    bad = write_rules("schedules:\n  s: {every: day, start: '2026-02-01', end: '2026-01-01'}\n", "bad.yaml")
    fresh = tmp_path / "fresh.db"
    result = run_cli("--db", fresh, "apply", bad)
    assert result.exit_code == 1
    assert f"{bad}:2:" in result.stderr and "schedules.s.end" in result.stderr
    assert not fresh.exists()


def test_one_changed_file_among_several_is_the_only_one_read(opener, registry, write_rules, reads):
    """Objects of the unchanged files come from the database (they are what those files held);
    references to them, duplicates with them and moves between files stay right."""
    main = write_rules(RULES, "main.yaml")
    other = write_rules("schedules:\n  hourly: {every: hour}\n", "other.yaml")
    third = write_rules("events:\n  login: {on: user.login, tasks: [backup]}\n", "third.yaml")
    apply_paths([main, other, third], registry, opener)
    assert reads["files"] == 3
    other.write_text("schedules:\n  hourly: {every: 2 hours}\n")
    result = apply_paths([main, other, third], registry, opener)
    assert [(c.action, c.name) for c in result.changes] == [("updated", "hourly")]
    assert reads["files"] == 4 and reads["schedules"] == 4  # other.yaml alone, its schedule alone
    other.write_text("schedules:\n  hourly: {every: 2 hours}\n  nightly: {every: day}\n")
    with pytest.raises(RuleFileError) as caught:  # nightly is still in main.yaml, unread
        apply_paths([main, other, third], registry, opener)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == (str(other), 3)
    assert problem.message.startswith(f"schedule 'nightly' is already defined in {main}:4;")
    # nightly moves from main.yaml to other.yaml, unchanged: then main.yaml changes again
    other.write_text("schedules:\n  hourly: {every: 2 hours}\n  nightly: {every: day, at: \"02:00\"}\n")
    main.write_text(main.read_text().replace('  nightly: {every: day, at: "02:00"}\n', ""))
    assert apply_paths([main, other, third], registry, opener).changes == []
    main.write_text(main.read_text().replace('"06:00"', '"06:30"'))
    moved = apply_paths([main, other, third], registry, opener)
    assert [(c.action, c.name) for c in moved.changes] == [("updated", "weekly")]
    third.write_text("events:\n  login: {on: user.login, tasks: [backupp]}\n")
    with pytest.raises(RuleFileError) as caught:
        apply_paths([main, other, third], registry, opener)
    assert "did you mean 'backup'?" in caught.value.problems[0].message


def test_a_tasks_secret_scan_still_sees_references_outside_its_parameters(registry, write_rules):
    from taskengine_core.rules.validate import check_paths

    path = write_rules("""
        tasks:
          t:
            action: command.run
            description: "${nosuch:x}"
            with: {argv: [echo], env: {DB_PASSWORD: hunter2}}
    """)
    _, problems = check_paths([path], registry)
    assert sorted((p.path, p.message.split(":")[0]) for p in problems) == [
        ("tasks.t.description", "malformed secret reference '${nosuch"),
        ("tasks.t.with.env.DB_PASSWORD", "a secret must be a reference such as ${env"),
    ]


def test_a_change_by_hand_that_bumps_nothing_still_means_reading_again(opener, registry, write_rules, reads):
    path = write_rules(RULES)
    apply_paths([path], registry, opener)
    store = opener(False)
    with store.write() as db:  # no generation bump: only the change log's trigger sees it
        stored.delete_objects(db.conn, "schedule", ["weekly"])
    result = apply_paths([path], registry, opener)
    assert reads["files"] == 2
    assert [(c.action, c.name) for c in result.changes] == [("created", "weekly")]
