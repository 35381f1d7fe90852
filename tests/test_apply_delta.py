"""``apply`` of a few changed files among many (taskengine_core/apply_delta.py) gives exactly
what the whole ``apply`` gives: the same changes, the same rows, the same error messages.

Two databases follow the same random edits of a directory of rule files: one applied with the
shortcut, one with it turned off. After every edit both must report the same result and hold
the same configuration. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from taskengine_core import apply as apply_module
from taskengine_core import apply_delta
from taskengine_core.apply import apply_paths
from taskengine_core.errors import RuleFileError
from taskengine_core.plugins import get_plugin_manager
from taskengine_core.store import config as stored
from taskengine_core.store import open_store

KINDS = ("schedule", "webhook", "event", "task")


@pytest.fixture
def registry():
    return get_plugin_manager().registry()


@pytest.fixture(params=["sqlite", "postgresql"])
def two_targets(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "delta.db"), str(tmp_path / "whole.db")
    server = request.getfixturevalue("postgres_server")
    return server.create_database(), server.create_database()


@pytest.fixture
def shortcut_calls(monkeypatch):
    """How many applies the shortcut made itself (not stepping aside)."""
    made = []
    real = apply_delta.try_apply

    def counting(*args, **kwargs):
        result = real(*args, **kwargs)
        made.append(result is not None)
        return result

    monkeypatch.setattr(apply_delta, "try_apply", counting)
    return made


class Rules:
    """A directory of rule files as Python data: schedules over three files, webhooks, tasks
    in two files, event rules, settings in their own file."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.files: dict[str, dict] = {
            "settings.yaml": {"settings": {"timezone": "Europe/Berlin"}},
            "sched-a.yaml": {"schedules": {}}, "sched-b.yaml": {"schedules": {}},
            "sched-c.yaml": {"schedules": {}},
            "hooks.yaml": {"webhooks": {}},
            "tasks-a.yaml": {"tasks": {}}, "tasks-b.yaml": {"tasks": {}},
            "events.yaml": {"events": {}},
        }
        for n in range(30):
            self.section(rng.choice(["sched-a.yaml", "sched-b.yaml", "sched-c.yaml"]), "schedules")[f"s{n}"] = self.schedule()
        for n in range(3):
            self.section("hooks.yaml", "webhooks")[f"w{n}"] = {"url": f"http://127.0.0.1:9/{n}"}
        for n in range(8):
            self.section(rng.choice(["tasks-a.yaml", "tasks-b.yaml"]), "tasks")[f"t{n}"] = self.task()
        for n in range(3):
            self.section("events.yaml", "events")[f"e{n}"] = self.event()

    def section(self, file: str, section: str) -> dict:
        return self.files[file].setdefault(section, {})

    def names(self, section: str) -> list[str]:
        return sorted(n for data in self.files.values() for n in (data.get(section) or {}))

    def where(self, section: str, name: str) -> str:
        return next(f for f, data in self.files.items() if name in (data.get(section) or {}))

    def schedule(self) -> dict:
        return {"every": "day", "at": f"{self.rng.randrange(24):02d}:{self.rng.randrange(60):02d}"}

    def task(self) -> dict:
        schedules = self.rng.sample(self.names("schedules"), self.rng.randrange(0, 4))
        if self.rng.random() < 0.3 and self.names("webhooks"):
            spec = {"action": "webhook.send", "with": {"webhook": self.rng.choice(self.names("webhooks")),
                                                       "payload": {"n": self.rng.randrange(9)}}}
        else:
            spec = {"action": "command.run", "with": {"argv": ["echo", str(self.rng.randrange(99))]}}
        if schedules:
            spec["schedules"] = schedules
        if self.rng.random() < 0.2 and self.names("events"):
            spec["events"] = [self.rng.choice(self.names("events"))]
        return spec

    def event(self) -> dict:
        return {"on": f"demo.{self.rng.randrange(3)}",
                "tasks": self.rng.sample(self.names("tasks"), min(2, len(self.names("tasks"))))}

    def write(self, directory: Path) -> None:
        for name, data in self.files.items():
            (directory / name).write_text(json.dumps(data, indent=1) if name.endswith(".json")
                                          else _yaml(data))

    # -- edits: each changes one or two files; some make the rules invalid -----------------

    def edit(self) -> str:
        rng = self.rng
        kind = rng.choice(["retime", "retime", "add", "remove", "move", "relink", "retask",
                           "remove_task", "reevent", "rehook", "remove_hook", "duplicate", "settings",
                           "comment", "break"])
        schedules = self.names("schedules")
        if kind == "retime":
            name = rng.choice(schedules)
            self.section(self.where("schedules", name), "schedules")[name] = self.schedule()
        elif kind == "add":
            self.section(rng.choice(["sched-a.yaml", "sched-b.yaml", "sched-c.yaml"]), "schedules")[
                f"s{rng.randrange(100, 999)}"] = self.schedule()
        elif kind == "remove":  # may leave a task naming it: an error
            name = rng.choice(schedules)
            del self.files[self.where("schedules", name)]["schedules"][name]
        elif kind == "move":
            name = rng.choice(schedules)
            spec = self.files[self.where("schedules", name)]["schedules"].pop(name)
            self.section(rng.choice(["sched-a.yaml", "sched-b.yaml", "sched-c.yaml"]), "schedules")[name] = spec
        elif kind == "relink":
            name = rng.choice(self.names("tasks"))
            task = self.files[self.where("tasks", name)]["tasks"][name]
            task["schedules"] = rng.sample(schedules, rng.randrange(0, 4))
        elif kind == "retask":
            name = rng.choice(self.names("tasks") + [f"t{rng.randrange(10, 20)}"])
            file = self.where("tasks", name) if name in self.names("tasks") else rng.choice(["tasks-a.yaml", "tasks-b.yaml"])
            self.section(file, "tasks")[name] = self.task()
        elif kind == "remove_task":  # may leave an event rule naming it: an error
            name = rng.choice(self.names("tasks"))
            del self.files[self.where("tasks", name)]["tasks"][name]
        elif kind == "reevent":
            name = rng.choice(self.names("events") + ["e9"])
            self.section("events.yaml", "events")[name] = self.event()
        elif kind == "rehook":
            self.section("hooks.yaml", "webhooks")[f"w{rng.randrange(5)}"] = {"url": f"http://127.0.0.1:9/{rng.randrange(9)}"}
        elif kind == "remove_hook" and self.names("webhooks"):
            del self.files["hooks.yaml"]["webhooks"][rng.choice(self.names("webhooks"))]
        elif kind == "duplicate":  # the same schedule name in two files: an error
            name = rng.choice(schedules)
            other = next(f for f in ("sched-a.yaml", "sched-b.yaml", "sched-c.yaml") if f != self.where("schedules", name))
            self.section(other, "schedules")[name] = self.schedule()
        elif kind == "settings":
            self.files["settings.yaml"]["settings"]["timezone"] = rng.choice(["UTC", "Europe/Berlin", "Asia/Tokyo"])
        elif kind == "break":  # a name the schema refuses: an error in a changed file
            self.section("sched-c.yaml", "schedules")["bad name!"] = self.schedule()
        elif kind == "comment":
            self.files["sched-b.yaml"]["# note"] = None  # written as a comment line, see _yaml
        return kind


def _yaml(data: dict) -> str:
    """Flow-style YAML, one object per line (JSON is YAML); a '# note' key becomes a comment."""
    lines = []
    for section, body in data.items():
        if section == "# note":
            lines.append(f"# edited {random.random()}")
            continue
        lines.append(f"{section}:")
        for name, spec in (body or {}).items():
            lines.append(f"  {name}: {json.dumps(spec)}")
    return "\n".join(lines) + "\n"


def snapshot(target: str) -> dict:
    store = open_store(target, create=False)
    try:
        with stored.snapshot(store) as conn:
            return {
                "objects": {kind: sorted(stored.object_specs_and_files(conn, kind)) for kind in KINDS},
                "settings": sorted(stored.settings_and_files(conn)),
                "links": {table: sorted(stored.link_pairs(conn, table)) for table in stored.LINKS},
                "enabled": {kind: sorted((r["name"], bool(r["enabled"])) for r in stored.object_rows(conn, kind))
                            for kind in KINDS},
                "applied": json.loads(stored.applied_marks(conn).get("applied_files") or "{}").get("each"),
                "counts": json.loads(stored.applied_marks(conn).get("applied_files") or "{}").get("counts"),
            }
    finally:
        store.close()


def apply_with(target: str, directory: Path, registry, shortcut: bool, monkeypatch) -> tuple:
    monkeypatch.setattr(apply_module, "DELTA_APPLY", shortcut)
    opened = []

    def opener(create: bool):
        if not opened:
            opened.append(open_store(target, create=create))
        return opened[0]

    try:
        result = apply_paths([str(directory)], registry, opener, source="test")
        return ("ok", sorted((c.action, c.kind, c.name, json.dumps(c.changes, sort_keys=True))
                             for c in result.changes))
    except RuleFileError as exc:
        return ("error", str(exc))
    finally:
        for store in opened:
            store.close()


@pytest.mark.parametrize("seed", range(4))
def test_the_shortcut_gives_what_the_whole_apply_gives(seed, two_targets, registry, tmp_path, monkeypatch,
                                                       shortcut_calls):
    rng = random.Random(seed)
    rules = Rules(rng)
    directory = tmp_path / "rules"
    directory.mkdir()
    rules.write(directory)
    delta_db, whole_db = two_targets
    for step in range(25):
        before = {name: json.dumps(data, sort_keys=True) for name, data in rules.files.items()}
        if step:
            kind = rules.edit()
            rules.write(directory)
        else:
            kind = "first"
        by_shortcut = apply_with(delta_db, directory, registry, True, monkeypatch)
        whole = apply_with(whole_db, directory, registry, False, monkeypatch)
        assert by_shortcut == whole, f"step {step} ({kind})"
        assert snapshot(delta_db) == snapshot(whole_db), f"step {step} ({kind})"
        if whole[0] == "error":  # put the rules back as they were, as a user fixing the error would
            rules.files = {name: json.loads(text) for name, text in before.items()}
            rules.write(directory)
            for path in directory.iterdir():
                if path.name not in rules.files:
                    path.unlink()
    print(f"shortcut applied {sum(shortcut_calls)} of {len(shortcut_calls)}")
    assert sum(shortcut_calls) >= 5, "the shortcut hardly ever applied anything"


def test_one_changed_schedule_is_applied_reading_only_its_file(db_target, registry, tmp_path, monkeypatch,
                                                              shortcut_calls):
    directory = tmp_path / "rules"
    directory.mkdir()
    for part in range(5):
        (directory / f"part-{part}.yaml").write_text("schedules:\n" + "".join(
            f'  s{part}-{n}: {{every: day, at: "0{n % 10}:00"}}\n' for n in range(20)))
    (directory / "tasks.yaml").write_text("tasks:\n  t:\n    action: command.run\n    with: {argv: [echo]}\n"
                                          "    schedules: [s0-0, s4-19]\n")
    assert apply_with(db_target, directory, registry, True, monkeypatch)[0] == "ok"
    parsed = []
    real = apply_delta.load_document
    monkeypatch.setattr(apply_delta, "load_document", lambda path: parsed.append(path.name) or real(path))
    edited = (directory / "part-0.yaml").read_text().replace('s0-0: {every: day, at: "00:00"}',
                                                             's0-0: {every: day, at: "00:30"}')
    (directory / "part-0.yaml").write_text(edited)
    outcome = apply_with(db_target, directory, registry, True, monkeypatch)
    assert outcome == ("ok", [("updated", "schedule", "s0-0", json.dumps(
        {"at": {"from": "00:00", "to": "00:30"}}, sort_keys=True))])
    assert shortcut_calls == [True] and parsed == ["part-0.yaml"]  # the first apply: no database yet
    assert ("t", "s0-0") in snapshot(db_target)["links"]["task_schedules"]


def test_an_error_in_a_changed_file_is_reported_by_the_whole_apply_and_nothing_changes(
        db_target, registry, tmp_path, monkeypatch, shortcut_calls):
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "a.yaml").write_text('schedules:\n  nightly: {every: day, at: "02:00"}\n')
    (directory / "b.yaml").write_text("tasks:\n  t:\n    action: command.run\n    with: {argv: [echo]}\n"
                                      "    schedules: [nightly]\n")
    apply_with(db_target, directory, registry, True, monkeypatch)
    before = snapshot(db_target)
    (directory / "a.yaml").write_text('schedules:\n  nightly2: {every: day, at: "02:00"}\n')  # t names nightly
    outcome = apply_with(db_target, directory, registry, True, monkeypatch)
    assert outcome[0] == "error"
    assert "b.yaml:5:" in outcome[1] and "task 't' refers to schedule 'nightly', which is not defined" in outcome[1]
    assert snapshot(db_target) == before
    assert shortcut_calls == [False]  # stepped aside for the whole apply


def part(directory: Path, names: list[str]) -> None:
    (directory / "part-0.yaml").write_text("schedules:\n" + "".join(
        f'  {name}: {{every: day, at: "0{ord(name[0]) % 10}:00"}}\n' for name in names))


def schedule_names(target: str) -> list[str]:
    return sorted(name for name, _, _ in snapshot(target)["objects"]["schedule"])


def test_objects_added_then_removed_over_several_shortcut_applies_are_all_seen(db_target, registry, tmp_path,
                                                                             monkeypatch, shortcut_calls):
    """A changed file's old objects are found by the names it defines now, and the number the
    last apply recorded tells whether one is missing: that number must follow every apply."""
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "other.yaml").write_text('schedules:\n  keep: {every: day, at: "05:00"}\n')
    part(directory, ["a", "b", "c"])
    apply_with(db_target, directory, registry, True, monkeypatch)
    part(directory, ["a", "b", "c", "d"])  # one more: the recorded number must grow
    assert apply_with(db_target, directory, registry, True, monkeypatch)[1][0][:3] == ("created", "schedule", "d")
    part(directory, ["a", "b", "d"])  # c removed: 3 of the 4 recorded found by name
    outcome = apply_with(db_target, directory, registry, True, monkeypatch)
    assert [c[:3] for c in outcome[1]] == [("deleted", "schedule", "c")]
    part(directory, ["a", "b", "e"])  # d renamed to e in one edit
    outcome = apply_with(db_target, directory, registry, True, monkeypatch)
    assert sorted(c[:3] for c in outcome[1]) == [("created", "schedule", "e"), ("deleted", "schedule", "d")]
    assert schedule_names(db_target) == ["a", "b", "e", "keep"]
    assert shortcut_calls == [True, True, True]  # the first apply: no database yet
    assert recorded_counts(db_target) == {str(directory / "other.yaml"): {"schedules": 1}, str(directory / "part-0.yaml"): {"schedules": 3}}


def recorded_counts(target: str) -> dict:
    store = open_store(target, create=False)
    try:
        with stored.snapshot(store) as conn:
            return json.loads(stored.applied_marks(conn)["applied_files"]).get("counts")
    finally:
        store.close()


def test_a_mark_without_numbers_from_an_older_version_is_counted_once(db_target, registry, tmp_path,
                                                                     monkeypatch, shortcut_calls):
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "other.yaml").write_text('schedules:\n  keep: {every: day, at: "05:00"}\n')
    part(directory, ["a", "b", "c"])
    apply_with(db_target, directory, registry, True, monkeypatch)
    store = open_store(db_target, create=False)
    try:
        with store.write() as db:  # what an apply before the numbers were recorded left
            marks = stored.applied_marks(db.conn)
            applied = json.loads(marks["applied_files"])
            del applied["counts"]
            stored.set_applied_marks(db.conn, marks["validated_with"], json.dumps(applied))
    finally:
        store.close()
    part(directory, ["a", "d"])
    outcome = apply_with(db_target, directory, registry, True, monkeypatch)
    assert sorted(c[:3] for c in outcome[1]) == [("created", "schedule", "d"), ("deleted", "schedule", "b"),
                                                ("deleted", "schedule", "c")]
    assert shortcut_calls == [True] and schedule_names(db_target) == ["a", "d", "keep"]
    assert recorded_counts(db_target) == {str(directory / "other.yaml"): {"schedules": 1},
                                          str(directory / "part-0.yaml"): {"schedules": 2}}


def test_files_are_recorded_under_the_path_resolve_gives(tmp_path, monkeypatch):
    """``fingerprint.absolute`` (os.path.realpath, made once per apply) names a file exactly as
    ``Path.resolve()`` did before it: marks written by earlier versions still match."""
    from taskengine_core.rules.fingerprint import absolute

    real = tmp_path / "real"
    real.mkdir()
    (real / "a.yaml").write_text("schedules: {}\n")
    (tmp_path / "linked").symlink_to(real)
    (real / "b.yaml").symlink_to(real / "a.yaml")
    monkeypatch.chdir(tmp_path)
    memo: dict = {}
    for path in ["linked/a.yaml", "real/../linked/b.yaml", str(real / "a.yaml"), "./real//b.yaml"]:
        assert absolute(path, memo) == absolute(Path(path)) == str(Path(path).resolve())
    assert set(memo.values()) == {str(real / "a.yaml")}


@pytest.mark.parametrize("data", [b"schedules: {}\n", b"a: 1\r\nb: 2\r\n", b"a: 1\rb: 2\n", "t: \u00e9t\u00e9\n".encode(),
                                  b"\xef\xbb\xbfa: 1\n", b""])
def test_a_files_digest_is_of_the_text_the_loader_reads(tmp_path, data):
    """ASCII files are digested as read (no decoding); any other is decoded first, its line
    ends translated as the loader's reading does: the digests equal the text's."""
    from taskengine_core.rules.fingerprint import read_digest, text_digest

    path = tmp_path / "r.yaml"
    path.write_bytes(data)
    assert read_digest(path) == text_digest(path.read_text(encoding="utf-8"))


def test_a_file_that_is_not_utf8_has_no_digest(tmp_path):
    from taskengine_core.rules.fingerprint import read_digest

    (tmp_path / "r.yaml").write_bytes(b"a: \xff\n")
    assert read_digest(tmp_path / "r.yaml") is None and read_digest(tmp_path / "missing.yaml") is None


def test_a_checker_makes_only_the_section_checks_it_uses(registry, tmp_path):
    """Checking schedules alone (one edited schedule file) makes neither the event rules'
    check (conditions, RE2) nor the settings' (every plugin's section): they are made on first
    use, and make the same verdicts as the checks made all at once."""
    from taskengine_core.rules.loader import load_document
    from taskengine_core.rules.schema import section_schemas
    from taskengine_core.rules.schema_check import SchemaCheck
    from taskengine_core.rules.validate import RuleChecker

    path = tmp_path / "s.yaml"
    path.write_text('schedules:\n  ok: {every: day, at: "01:00"}\n  bad: {every: day, at: "25:00"}\n')
    checker = RuleChecker(registry)
    checker.add_document(load_document(path)[0])
    checker.finish_objects()
    assert set(checker.validators) == {"schedules"}
    assert [p.path for p in checker.problems] == ["schedules.bad.at"]
    for section, schema in section_schemas(registry).items():
        assert checker.validators[section].schema == SchemaCheck(schema).schema
    with pytest.raises(KeyError):
        checker.validators["nonsense"]
