"""The plugin system: every hook, the register callback, entry points, broken and blocked plugins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from taskengine_core.errors import RegistrationError
from taskengine_core.hookspecs import hookimpl
from taskengine_core.plugins import PluginLoadWarning, get_plugin_manager
from tests import plugins_for_tests

FIXTURES = Path(__file__).parent / "fixtures"


def pip_install(folder: Path, target: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(folder)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def installed_plugins(tmp_path_factory) -> Path:
    """The example and the broken plugin, really installed with pip into one folder."""
    target = tmp_path_factory.mktemp("site")
    pip_install(FIXTURES / "example_plugin", target)
    pip_install(FIXTURES / "broken_plugin", target)
    return target


@pytest.fixture
def with_installed(installed_plugins, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_plugins))
    yield installed_plugins
    for name in [m for m in sys.modules if m.startswith("taskengine_example")]:
        del sys.modules[name]


class Everything:
    """A plugin implementing every registration hook once."""

    __name__ = "everything"

    @hookimpl
    def register_actions(self, register):
        register("every.act", lambda params, ctx: {"ok": True}, schema={"type": "object"},
                 description="does everything")

    @hookimpl
    def register_triggers(self, register):
        def source(ctx):
            ctx.emit("every.tick", {"n": 1})
            ctx.stopping.wait(5)

        register("every", source, schema={"type": "object"})

    @hookimpl
    def register_notifiers(self, register):
        register("every.notify", lambda message, settings: None)

    @hookimpl
    def register_settings(self, register):
        register("every", {"type": "object", "properties": {"level": {"type": "integer"}},
                           "additionalProperties": False})

    @hookimpl
    def register_commands(self, cli):
        @cli.command("every-hello")
        def hello():
            """Say hello from a plugin command."""
            click.echo("hello from every")

    @hookimpl
    def resolve_secret(self, scheme, reference):
        return f"vault-value-of-{reference}" if scheme == "vault" else None

    started: list = []
    stopping: list = []
    finished: list = []

    @hookimpl
    def engine_started(self, engine):
        Everything.started.append(engine.deliveries)  # plugin API 2: no database path

    @hookimpl
    def engine_stopping(self, engine):
        Everything.stopping.append(engine.deliveries)

    @hookimpl
    def run_finished(self, run):
        Everything.finished.append((run.task, run.status))


def test_register_actions():
    registry = get_plugin_manager(extra_plugins=[Everything()]).registry()
    item = registry.actions["every.act"]
    assert (item.plugin.name, item.description, item.schema) == ("everything", "does everything", {"type": "object"})
    assert registry.actions["command.run"].plugin.distribution == "taskengine-core"


def test_register_triggers():
    assert "every" in get_plugin_manager(extra_plugins=[Everything()]).registry().triggers


def test_register_notifiers():
    assert "every.notify" in get_plugin_manager(extra_plugins=[Everything()]).registry().notifiers


def test_register_settings(run_cli, write_rules):
    registry = get_plugin_manager(extra_plugins=[Everything()]).registry()
    assert registry.settings["every"].schema["properties"] == {"level": {"type": "integer"}}
    from taskengine_core.rules.validate import check_paths

    _, problems = check_paths([write_rules("settings: {every: {level: high}}\n")], registry)
    assert [p.message for p in problems] == ["expected an integer, got a string 'high'"]


def test_register_commands(with_installed, run_cli):
    result = run_cli("hello")
    assert result.stdout == "hello from taskengine-example\n"
    assert "hello" in run_cli("--help").stdout


def test_resolve_secret(monkeypatch):
    from taskengine_core.secrets import SecretResolver

    manager = get_plugin_manager(extra_plugins=[Everything()])
    resolver = SecretResolver(manager.hook)
    monkeypatch.setenv("PLAIN", "from-env")
    assert resolver.resolve({"a": "${vault:db/pass}", "b": "x-${env:PLAIN}"}) == {
        "a": "vault-value-of-db/pass", "b": "x-from-env"}
    assert resolver.redactor("leak vault-value-of-db/pass") == "leak ********"


def test_engine_started_and_engine_stopping_and_run_finished(applied, db_path):
    from taskengine_core.engine import Engine

    manager = get_plugin_manager(extra_plugins=[Everything()])
    applied("tasks:\n  t: {action: every.act}\nevents:\n  e: {on: go, tasks: [t]}\n", manager=manager)
    Everything.started.clear(), Everything.stopping.clear(), Everything.finished.clear()
    engine = Engine(db_path, manager=manager)
    engine.start()
    engine.emit("go")
    import time

    deadline = time.monotonic() + 10
    while not Everything.finished and time.monotonic() < deadline:
        time.sleep(0.02)
    engine.stop(5)
    assert Everything.started == [engine.deliveries] and Everything.stopping == [engine.deliveries]
    assert Everything.finished == [("t", "succeeded")]


def test_a_source_runs_only_when_its_settings_section_exists(applied, db_path):
    import sqlite3
    import time

    from taskengine_core.engine import Engine

    manager = get_plugin_manager(extra_plugins=[Everything()])
    applied("settings: {every: {level: 1}}\n", manager=manager)
    engine = Engine(db_path, manager=manager)
    engine.start()
    deadline = time.monotonic() + 10
    conn = sqlite3.connect(db_path)
    while time.monotonic() < deadline and not conn.execute("SELECT 1 FROM events WHERE type='every.tick'").fetchone():
        time.sleep(0.02)
    engine.stop(1)
    assert conn.execute("SELECT source FROM events WHERE type = 'every.tick'").fetchone() == ("every",)


def test_duplicate_names_are_refused_loudly():
    class Copycat:
        __name__ = "copycat"

        @hookimpl
        def register_actions(self, register):
            register("command.run", lambda p, c: None)

    with pytest.warns(PluginLoadWarning) as caught:
        registry = get_plugin_manager(extra_plugins=[Copycat()]).registry()
    # the first PluginLoadWarning: a ResourceWarning of an earlier test's connection, collected
    # meanwhile, may come first
    message = str(next(w.message for w in caught if issubclass(w.category, PluginLoadWarning)))
    assert "action 'command.run' from plugin copycat ((not installed) ) is already registered by plugin command (taskengine" in message
    assert registry.actions["command.run"].plugin.name == "command"


def test_register_rejects_bad_items():
    from taskengine_core.registry import PluginInfo, Registry

    register = Registry().callable_registrar("action", PluginInfo("p", "d", "1"))
    with pytest.raises(RegistrationError, match="name must be a non-empty string without spaces"):
        register("has space", lambda p, c: None)
    with pytest.raises(RegistrationError, match="expected a callable"):
        register("x.y", None)
    with pytest.raises(RegistrationError, match="invalid JSON Schema"):
        register("x.z", lambda p, c: None, schema={"type": "nonsense"})


def test_each_call_builds_a_fresh_manager():
    first, second = get_plugin_manager(), get_plugin_manager()
    assert first.pm is not second.pm and first.registry() is not second.registry()


def test_installed_example_plugin_is_listed_and_validates(with_installed, run_cli, write_rules):
    listed = json.loads(run_cli("plugins", "--json").stdout)
    by_name = {p["name"]: p for p in listed}
    assert by_name["example"]["distribution"] == "taskengine-example"
    assert by_name["example"]["version"] == "1.2.3"
    assert by_name["example"]["actions"] == ["example.greet"]
    assert by_name["example"]["settings"] == ["example"]
    assert by_name["command"]["actions"] == ["command.run"]
    assert by_name["command"]["distribution"] == "taskengine-core"
    good = write_rules("tasks:\n  hi: {action: example.greet, with: {name: ops}}\n")
    assert run_cli("validate", good).exit_code == 0
    bad = write_rules("tasks:\n  hi: {action: example.greet, with: {name: ops, times: 0}}\n", "bad.yaml")
    result = run_cli("validate", bad)
    assert (f"{bad}:2:49  tasks.hi.with.times  expected a number at least 1, got an integer 0"
            in result.stderr.splitlines())
    version = run_cli("--version").stdout
    assert "plugin example: taskengine-example 1.2.3" in version


def test_installed_example_plugin_runs(with_installed, run_cli, write_rules):
    run_cli("apply", write_rules("settings: {example: {greeting: hej}}\ntasks:\n  hi: {action: example.greet, with: {name: ops}}\n"))
    result = run_cli("tasks", "run", "hi", "--json")
    assert json.loads(result.stdout)["output"] == {"greeting": "hej, ops"}


def test_a_broken_plugin_is_reported_by_name_and_the_cli_works(with_installed, run_cli, write_rules):
    result = run_cli("plugins", "--json")
    assert result.exit_code == 0
    assert ("warning: plugin 'broken' from distribution 'taskengine-broken' failed to load: "
            "ModuleNotFoundError: No module named 'taskengine_no_such_module'. Remove it with "
            "'taskengine uninstall taskengine-broken' or skip it with TASKENGINE_DISABLE_PLUGINS=broken") in result.stderr
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    assert listed["broken"]["status"].startswith("broken: ModuleNotFoundError")
    assert run_cli("validate", write_rules("tasks:\n  a: {action: command.run, with: {argv: [x]}}\n")).exit_code == 0


def test_disabled_plugins_are_not_loaded(with_installed, run_cli, monkeypatch):
    monkeypatch.setenv("TASKENGINE_DISABLE_PLUGINS", "broken, example")
    result = run_cli("plugins", "--json")
    assert result.stderr == ""
    names = {p["name"] for p in json.loads(result.stdout)}
    assert "example" not in names and "broken" not in names and "command" in names


def test_plugins_table_and_all(run_cli):
    table = run_cli("plugins").stdout.splitlines()
    assert table[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "ACTIONS", "TRIGGERS", "NOTIFIERS"]
    assert any(line.startswith("command ") for line in table)
    assert "core" in {p["name"] for p in json.loads(run_cli("plugins", "--all", "--json").stdout)}


def test_every_package_is_listed_in_setup_cfg():
    import configparser

    root = Path(__file__).parent.parent
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "taskengine_core").rglob("__init__.py")}
    mapped = dict(line.split(" = ") for line in config["options"]["package_dir"].strip().splitlines())
    assert found <= listed, f"add to setup.cfg packages: {sorted(found - listed)}"
    for package, folder in mapped.items():
        assert (root / folder / "__init__.py").exists() and package in listed


def test_validate_accepts_secret_schemes_a_plugin_resolves(write_rules):
    from taskengine_core.rules.validate import check_paths

    path = write_rules("tasks:\n  a: {action: command.run, with: {argv: [x], env: {P: '${vault:db/pass}'}}}\n")
    _, without = check_paths([path], get_plugin_manager().registry())
    assert [p.message for p in without] == [
        "malformed secret reference '${vault:db/pass}': expected ${env:NAME} or ${file:PATH}"]
    _, with_plugin = check_paths([path], get_plugin_manager(extra_plugins=[Everything()]).registry())
    assert with_plugin == []
