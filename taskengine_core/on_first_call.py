"""Functions a plugin registers without importing their code.

Every command that checks rules loads every plugin, so a plugin's module should be cheap to
import. ``on_first_call("my_plugin.action", "run")`` is a function that imports
``my_plugin.action`` the first time it is called and from then on calls its ``run`` with the
same arguments: register it as the action (trigger, settings check, ...) instead of importing
the action's module at the top of the plugin.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def on_first_call(module: str, name: str, doc: str | None = None) -> Callable[..., Any]:
    """A function that calls ``module``'s ``name``, importing ``module`` on its first call.
    ``doc``: its docstring (the registry takes an action's description from it when the
    registration gives none). An import error is raised by each call, as the call would."""
    found: list[Callable[..., Any]] = []

    def call(*args, **kwargs):
        if not found:
            found.append(getattr(importlib.import_module(module), name))
        return found[0](*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__module__ = module
    call.__doc__ = doc
    return call
