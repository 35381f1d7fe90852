"""Meta-tests that keep the docs honest: every hook and every CLI command is documented, the
generated rule-file reference is current, and the plugin template and the example plugin really
install and pass their own tests."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from taskengine_core import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONTRIB = ROOT / "contrib"


def load_doc_script(name: str):
    """Import docs/<name>.py (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def section(text: str, heading_re: str) -> str | None:
    """The Markdown section under the first heading matching ``heading_re``, up to the next
    heading of the same or a higher level."""
    match = re.search(rf"^(#+) {heading_re}\s*$", text, re.M)
    if match is None:
        return None
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


# -- hooks ------------------------------------------------------------------------------------

HOOKSPECS = sorted(name for name, obj in vars(hookspecs).items()
                   if callable(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec"))


def test_hookspecs_are_found():
    assert {"register_actions", "resolve_secret", "run_finished"} <= set(HOOKSPECS)


@pytest.mark.parametrize("name", HOOKSPECS)
def test_every_hook_is_documented_with_its_arguments(name):
    text = (DOCS / "hooks.md").read_text(encoding="utf-8")
    body = section(text, rf"`{name}`")
    assert body is not None, f"docs/hooks.md has no heading `{name}`"
    spec = getattr(hookspecs, name)
    for argument in inspect.signature(spec).parameters:
        assert f"`{argument}`" in body, f"docs/hooks.md: {name} does not document `{argument}`"
    opts = getattr(spec, f"{hookspecs.PROJECT}_spec")
    if opts.get("firstresult"):
        assert "first result" in body.lower(), f"docs/hooks.md: {name} is firstresult; say so"


# -- CLI --------------------------------------------------------------------------------------


def cli_commands():
    """(path, option flags) of every command, lazily loaded groups and plugin commands included."""
    gen = load_doc_script("gen_cli_reference")
    out = []
    for ctx, command in gen.walk():
        flags = [opt for p in command.get_params(ctx)
                 if isinstance(p, click.Option) and not p.hidden and "--help" not in p.opts
                 for opt in p.opts]
        out.append((ctx.command_path, flags))
    return out


def test_every_cli_command_and_option_is_in_cli_md():
    commands = cli_commands()
    paths = [path for path, _ in commands]
    # the walk reaches lazily loaded groups and their subcommands
    assert {"taskengine logs prune", "taskengine tasks run", "taskengine run"} <= set(paths)
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = []
    for path, flags in commands:
        body = section(text, re.escape(f"`{path}`"))
        if body is None:
            missing.append(path)
            continue
        missing += [f"{path} {flag}" for flag in flags if flag not in body]
    assert not missing, ("docs/cli.md lacks " + ", ".join(missing)
                         + ": run python docs/gen_cli_reference.py")


# -- rule-file reference ----------------------------------------------------------------------


def test_rule_reference_is_up_to_date():
    gen = load_doc_script("gen_rule_reference")
    expected = gen.render(gen.builtin_registry())
    actual = (DOCS / "rule-reference.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/rule-reference.md is stale: run python docs/gen_rule_reference.py"
    for action in ("command.run", "email.send", "webhook.send"):
        assert f"`{action}`" in actual


def test_complete_example_in_rule_files_md_validates():
    from taskengine_core.rules.validate import check_paths

    text = (DOCS / "rule-files.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- tests/test_docs.py validates[^\n]*\n```yaml\n(.*?)```", text, re.S)
    assert match, "docs/rule-files.md lost its complete example"
    gen = load_doc_script("gen_rule_reference")
    path = Path(os.environ["TASKENGINE_HOME"]) / "example.yaml"
    path.write_text(match.group(1), encoding="utf-8")
    config, problems = check_paths([path], gen.builtin_registry())
    assert problems == []
    assert all(config.objects[s] for s in ("schedules", "webhooks", "tasks", "events"))


# -- links ------------------------------------------------------------------------------------


def test_relative_links_in_docs_point_to_existing_files():
    broken = []
    for page in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.name} -> {target}")
    assert not broken


# -- systemd unit -----------------------------------------------------------------------------


def test_systemd_unit_stops_gracefully_before_systemd_kills():
    unit = dict(line.split("=", 1) for line in (CONTRIB / "taskengine.service").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    assert "run --rules /etc/taskengine/rules --listen 127.0.0.1:8080" in unit["ExecStart"]
    grace = float(re.search(r"--grace (\d+(?:\.\d+)?)", unit["ExecStart"]).group(1))
    assert unit["KillSignal"] == "SIGTERM" and unit["Restart"] == "on-failure"
    assert float(unit["TimeoutStopSec"]) > grace


# -- plugin packages --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed_contrib(tmp_path_factory):
    """contrib/plugin-template and contrib/example-plugin, installed with pip into one folder.

    How: ``pip install --no-deps --no-build-isolation --target DIR``. --no-build-isolation uses
    the setuptools already installed (the test extra requires it) instead of downloading one,
    so this works offline; --no-deps skips ``taskengine`` itself, which is installed already.
    Each package is copied first because pip builds in the source tree (build/, *.egg-info):
    the repository stays clean. The result is a real installation with a real .dist-info and
    entry_points.txt, found only by processes that put DIR on PYTHONPATH.
    """
    work = tmp_path_factory.mktemp("contrib")
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache")
    copies = [shutil.copytree(CONTRIB / name, work / name, ignore=ignore)
              for name in ("plugin-template", "example-plugin")]
    site = work / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), *map(str, copies)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return work, site


def subprocess_env(site: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    env.pop("TASKENGINE_DISABLE_PLUGINS", None)
    return env


def test_installed_plugins_are_found_through_the_entry_point_group(installed_contrib):
    _, site = installed_contrib
    code = ("import json\n"
            "from taskengine_core.plugins import get_plugin_manager\n"
            "actions = get_plugin_manager().registry().actions\n"
            "print(json.dumps({n: [i.plugin.name, i.plugin.distribution, i.plugin.version]"
            " for n, i in actions.items()}))")
    result = subprocess.run([sys.executable, "-c", code], env=subprocess_env(site), cwd=site,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    actions = json.loads(result.stdout)
    assert actions["myplugin.hello"] == ["myplugin", "taskengine-myplugin", "0.1.0"]
    assert actions["file.append"] == ["file", "taskengine-file-log", "0.1.0"]
    assert "warning" not in result.stderr.lower()


def test_installed_plugin_packages_pass_their_own_tests(installed_contrib):
    work, site = installed_contrib
    # cwd is the install folder, so the tests import the installed packages, not the copies
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         str(work / "plugin-template" / "tests"), str(work / "example-plugin" / "tests")],
        env=subprocess_env(site), cwd=site, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    # installed, so the entry-point tests ran instead of skipping
    assert "skipped" not in result.stdout, result.stdout[-2000:]
    passed = re.search(r"\b(\d+) passed\b", result.stdout)
    assert passed and int(passed.group(1)) >= 10, result.stdout[-500:]
