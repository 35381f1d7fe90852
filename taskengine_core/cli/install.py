"""``taskengine install`` / ``uninstall``: plugins are pip packages in taskengine's environment."""

from __future__ import annotations

import subprocess
import sys

import click

# options click does not know (``--no-index``, ``--find-links DIR``, ``--isolated``, ...) are
# handed to pip as they are, in their place
_PASS_ON = {"ignore_unknown_options": True}


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args])
    if result.returncode:
        raise SystemExit(result.returncode)


@click.command(context_settings=_PASS_ON)
@click.argument("packages", nargs=-1, type=click.UNPROCESSED)
@click.option("-U", "--upgrade", is_flag=True, help="Upgrade packages that are already installed.")
@click.option("-e", "--editable", metavar="PATH", multiple=True,
              help="Install a plugin from a source folder, editable (repeatable).")
def install(packages: tuple[str, ...], upgrade: bool, editable: tuple[str, ...]) -> None:
    """Install plugins (or anything else) with pip into the environment taskengine runs in.
    Then see 'taskengine plugins'. Other pip options (--no-index, --find-links DIR, ...) are
    passed on to pip."""
    if not any(not p.startswith("-") for p in packages) and not editable:
        raise click.UsageError("name a package to install, or a source folder with -e PATH")
    args = ["install", *(["--upgrade"] if upgrade else []), *packages]
    for path in editable:
        args += ["--editable", path]
    _pip(*args)


@click.command(context_settings=_PASS_ON)
@click.argument("packages", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def uninstall(packages: tuple[str, ...], yes: bool) -> None:
    """Uninstall plugins with pip from the environment taskengine runs in. Other pip options
    are passed on to pip."""
    _pip("uninstall", *(["--yes"] if yes else []), *packages)
