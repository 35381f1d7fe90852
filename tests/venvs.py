"""Throwaway virtual environments for tests that run pip, offline.

``python -m venv --system-site-packages`` would show the new environment the *base* interpreter's
packages, not those of the environment the tests run in (a venv made by ``scripts/test``, say):
pip, setuptools and taskengine's dependencies may all be missing there. So the new environment
gets no pip of its own and a ``.pth`` file that adds this interpreter's site directories after
its own: it sees exactly what the tests see, and anything installed into it comes first.
"""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path


def site_dirs() -> list[str]:
    """The site directories of the interpreter running the tests, in its order."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        dirs.append(site.getusersitepackages())
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in dirs:
            dirs.append(path)
    return [d for d in dirs if Path(d).is_dir()]


def make_venv(path: Path, *, process_pth: bool = True) -> Path:
    """Create a venv at ``path`` that sees this interpreter's packages; returns its python.

    :param process_pth: add this interpreter's site directories with ``site.addsitedir``, so
        their ``.pth`` files run too (an editable install of taskengine is one). ``False`` adds
        them as plain paths: an editable taskengine stays invisible, while its dependencies
        (ordinary installs) are importable.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    own_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    if process_pth:
        lines = [f"import site; site.addsitedir({d!r})" for d in site_dirs()]
    else:
        lines = site_dirs()
    (Path(own_site) / "_tests_outer_environment.pth").write_text("\n".join(lines) + "\n")
    return python


def pip(python: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """pip in the venv of ``python``, isolated from the user's pip configuration and from
    PIP_* variables, and with no package index: everything comes from local files."""
    return subprocess.run([str(python), "-m", "pip", "--isolated", "--disable-pip-version-check",
                           *args], capture_output=True, text=True, **kwargs)
