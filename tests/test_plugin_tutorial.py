"""docs/plugins.md, followed word for word: its shell blocks run in order in one bash, from a
fresh virtual environment to `taskengine plugins` listing the new plugin.

Only the first block (make a venv, `pip install taskengine-core` from PyPI) is done the offline
way: a fresh venv that sees the environment the tests run in (tests/venvs.py), with the
`taskengine` and `pytest` commands pip would have put in its bin/. Each `pip install` of the
tutorial runs isolated from user configuration, with no index and no build isolation."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.venvs import make_venv

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT_MARK = "<!-- plugin tutorial: environment -->"


def tutorial_blocks() -> tuple[str, list[str]]:
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    environment = re.search(re.escape(ENVIRONMENT_MARK) + r"\n```sh\n(.*?)```", text, re.S)
    assert environment, "docs/plugins.md lost its environment block"
    rest = text[environment.end():]
    return environment.group(1), re.findall(r"^```sh\n(.*?)^```", rest, re.S | re.M)


def test_the_blocks_are_the_steps_a_reader_pastes():
    environment, blocks = tutorial_blocks()
    assert "python3 -m venv ~/greeter-env && . ~/greeter-env/bin/activate" in environment
    assert "pip install taskengine-core" in environment
    assert any("pytest" in b.split() for b in blocks) and "taskengine plugins" in blocks[-1]


def test_following_docs_plugins_md_gives_a_tested_installed_plugin(tmp_path):
    _, blocks = tutorial_blocks()
    home = tmp_path / "reader"
    home.mkdir()
    checkout = tmp_path / "taskengine"
    shutil.copytree(ROOT / "contrib", checkout / "contrib",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    # step 1, offline: the venv, and the commands taskengine-core and pytest would install
    venv = home / "greeter-env"
    python = make_venv(venv)
    for command, module in (("taskengine", "taskengine_core"), ("pytest", "pytest")):
        script = venv / "bin" / command
        script.write_text(f"#!/bin/sh\nexec '{python}' -m {module} \"$@\"\n")
        script.chmod(0o755)
    prelude = (f". '{venv}/bin/activate'\n"
               # what pip install does here: offline, with the setuptools already installed
               "pip() { if [ \"$1\" = install ]; then shift; set -- install --no-index --no-build-isolation \"$@\"; fi;\n"
               "        python -m pip --isolated --disable-pip-version-check \"$@\"; }\n")
    script = "set -euo pipefail\n" + prelude + "\n".join(blocks)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TASKENGINE_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), TASKENGINE_HOME=str(home / ".taskengine"),
               TASKENGINE_DB=str(home / "taskengine.db"))
    result = subprocess.run(["bash", "-c", script], cwd=checkout, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    passed = re.search(r"(\d+) passed", out)
    assert passed and int(passed.group(1)) >= 6 and " failed" not in out, out[-2000:]
    assert "skipped" not in out  # installed, so the entry-point test ran too
    assert re.search(r"^greeter\s+taskengine-greeter\s+0\.1\.0\s+ok\s+greeter\.hello", out, re.M), out[-2000:]
    assert "plugin greeter: taskengine-greeter 0.1.0" in out
    assert re.search(r"^[1-9]\d*$", out.rstrip().splitlines()[-1])  # the schema names greeter.hello
