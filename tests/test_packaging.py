"""What PyPI users get: the sdist and wheel build, pass ``twine check``, and the wheel installed
into a fresh virtual environment runs ``taskengine --version`` and validates the shipped rules
(a module or data file left out of the wheel fails here, not on a user's machine)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from taskengine_core import DISTRIBUTION, __version__
from tests.venvs import make_venv, pip

ROOT = Path(__file__).resolve().parent.parent
# what the source tree has that a build must not see (or must not be slowed down by)
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".hypothesis", "*.db", "*.db-wal", "*.db-shm")


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``python -m build`` on a copy of the source tree: the sdist, then the wheel built from
    that sdist (so the sdist must hold everything the wheel needs). No build isolation: the
    setuptools already installed builds it, offline."""
    work = tmp_path_factory.mktemp("build")
    source = shutil.copytree(ROOT, work / "source", ignore=_NOT_SOURCE)
    out = work / "dist"
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                             str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {dist}, found {found}"
    return found[0]


def test_sdist_and_wheel_are_named_after_the_distribution(dist):
    stem = DISTRIBUTION.replace("-", "_")
    assert _one(dist, "*.whl").name == f"{stem}-{__version__}-py3-none-any.whl"
    assert _one(dist, "*.tar.gz").name == f"{stem}-{__version__}.tar.gz"


def test_twine_check_passes(dist):
    result = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                             *map(str, sorted(dist.iterdir()))], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_metadata_keeps_the_command_and_the_entry_point_group(dist):
    with zipfile.ZipFile(_one(dist, "*.whl")) as wheel:
        info = f"{DISTRIBUTION.replace('-', '_')}-{__version__}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        names = wheel.namelist()
    assert f"Name: {DISTRIBUTION}\n" in metadata
    assert "[console_scripts]\ntaskengine = taskengine_core.cli:main" in entry_points
    group = re.search(r"^\[taskengine\]\n((?:.+\n?)*)", entry_points, re.M).group(1).splitlines()
    assert {"command = taskengine_command", "vm = taskengine_vm", "logwatch = taskengine_logwatch"} <= set(group)
    assert "pytest11" in entry_points  # the plugin authors' testing kit
    # no bare top-level "plugins" (or "tests") package
    assert not [n for n in names if n.split("/")[0] in ("plugins", "tests")]


@pytest.fixture(scope="module")
def wheel_venv(dist, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed. Its dependencies come from the environment the
    tests run in, as plain paths: an editable taskengine there stays invisible, so every
    taskengine module imported below comes from the wheel."""
    venv = tmp_path_factory.mktemp("wheel") / "venv"
    python = make_venv(venv, process_pth=False)
    result = pip(python, "install", "--no-deps", "--no-index", str(_one(dist, "*.whl")), timeout=300)
    assert result.returncode == 0, result.stderr
    return venv


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess:
    # cwd outside the source tree, so nothing is imported from the checkout
    return subprocess.run([str(venv / "bin" / "taskengine"), *args], capture_output=True, text=True,
                          cwd=venv, timeout=120)


def test_the_installed_wheel_runs_version(wheel_venv):
    result = _run(wheel_venv, "--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{DISTRIBUTION} {__version__}"
    assert f"  plugin command: {DISTRIBUTION} {__version__}" in lines
    where = subprocess.run([str(wheel_venv / "bin" / "python"), "-c",
                            "import taskengine_core, taskengine_command; "
                            "print(taskengine_core.__file__); print(taskengine_command.__file__)"],
                           capture_output=True, text=True, cwd=wheel_venv, check=True).stdout.split()
    assert all(Path(p).is_relative_to(wheel_venv) for p in where), where


def test_every_module_of_the_installed_wheel_imports(wheel_venv):
    """A subpackage left out of setup.cfg's packages is missing from the wheel: its import fails."""
    code = ("import importlib, pkgutil, taskengine_core\n"
            "names = [m.name for m in pkgutil.walk_packages(taskengine_core.__path__, 'taskengine_core.')\n"
            "         if not m.name.endswith('__main__')]\n"
            "for name in names:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except ModuleNotFoundError as exc:\n"
            "        if exc.name != 'psycopg':\n            raise\n"  # the [postgres] extra's modules
            "print(len(names))")
    result = subprocess.run([str(wheel_venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                            cwd=wheel_venv, timeout=120)
    assert result.returncode == 0, result.stderr
    source = [p for p in (ROOT / "taskengine_core").rglob("*.py") if p.name != "__main__.py"]
    assert int(result.stdout) == len(source) - 1  # every module but taskengine_core/__init__.py


def test_the_installed_wheel_validates_the_shipped_rules(wheel_venv, tmp_path):
    result = _run(wheel_venv, "--db", str(tmp_path / "t.db"), "validate", str(ROOT / "rules"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_set_up_uses_a_virtual_environment():
    """Debian 12 and Ubuntu 24.04 refuse ``pip install`` into the system Python (PEP 668)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", setup, re.S)
    assert commands[0].strip() == ("python3 -m venv .venv && .venv/bin/pip install . && "
                                   ".venv/bin/taskengine run --rules rules/ --listen 127.0.0.1:8080")
    assert commands[1].strip() == "./scripts/test"
    assert "if [ ! -x .venv/bin/python ]" in (ROOT / "scripts" / "test").read_text()
