"""``taskengine install`` / ``uninstall``: plugins are pip packages in taskengine's environment."""

from __future__ import annotations

import subprocess
import sys

import click


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args])
    if result.returncode:
        raise SystemExit(result.returncode)


@click.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("-U", "--upgrade", is_flag=True, help="Upgrade packages that are already installed.")
@click.option("-e", "--editable", metavar="PATH", multiple=True, help="Install a plugin from a source folder, editable.")
def install(packages: tuple[str, ...], upgrade: bool, editable: tuple[str, ...]) -> None:
    """Install plugins (or anything else) with pip into the environment taskengine runs in.
    Then see 'taskengine plugins'."""
    args = ["install", *(["--upgrade"] if upgrade else []), *packages]
    for path in editable:
        args += ["--editable", path]
    _pip(*args)


@click.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def uninstall(packages: tuple[str, ...], yes: bool) -> None:
    """Uninstall plugins with pip from the environment taskengine runs in."""
    _pip("uninstall", *(["--yes"] if yes else []), *packages)
