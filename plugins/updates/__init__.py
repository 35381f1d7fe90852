"""Built-in plugin: ``updates.check``, ``updates.download`` and ``updates.install`` for three
sources: ``apt`` (apt-get as a process), ``pypi`` (a simple index against one Python
environment) and ``vergeos`` (the VergeOS update API).

Events: ``update.available {source, packages, count}`` when a check finds a pending set it has
not reported before; ``update.downloaded {source, packages, count}``; ``update.completed
{source, packages, count, started, finished, result}`` after an install (``result`` is
``succeeded`` or ``failed``, with ``error``). Each package is ``{name, installed, candidate,
size}``.
"""

from __future__ import annotations

from taskengine_core.hookspecs import hookimpl
from taskengine_core.on_first_call import on_first_call

from .schema import PARAMS_SCHEMA, SETTINGS_SCHEMA

__all__ = ["PARAMS_SCHEMA", "SETTINGS_SCHEMA", "register_actions", "register_settings"]


@hookimpl
def register_settings(register) -> None:
    register("updates", SETTINGS_SCHEMA,
             description="Defaults of the update sources (apt, pypi, vergeos)")


@hookimpl
def register_actions(register) -> None:
    # the action module (sources, version parsing) is imported when an action runs, not by
    # every CLI start that loads the plugin
    _check, _download, _install = (on_first_call(f"{__name__}.action", name)
                                   for name in ("check_updates", "download_updates", "install_updates"))
    register("updates.check", _check, schema=PARAMS_SCHEMA, idempotent=True,
             description="List pending updates (apt, PyPI index, VergeOS); emit "
                         "update.available when the set changed.")
    register("updates.download", _download, schema=PARAMS_SCHEMA, idempotent=True,
             description="Download pending updates without installing; emit update.downloaded.")
    register("updates.install", _install, schema=PARAMS_SCHEMA, idempotent=False,
             description="Install pending updates; emit update.completed with the result.")
