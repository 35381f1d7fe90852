"""taskengine plugin ``myplugin``: the action ``myplugin.hello`` and the ``settings.myplugin``
section.

taskengine imports this module (through the entry point in setup.cfg) every time it starts,
``taskengine --help`` included. Keep it light: hook implementations and schemas only; heavy
libraries are imported inside the functions that need them (see ``action.py``).
"""

from __future__ import annotations

from taskengine_core.hookspecs import hookimpl

from .action import hello
from .schema import PARAMS_SCHEMA, SETTINGS_SCHEMA

__all__ = ["hello", "register_actions", "register_settings"]


@hookimpl
def register_actions(register) -> None:
    register(
        "myplugin.hello",
        hello,
        schema=PARAMS_SCHEMA,
        description="Greet someone (a template for real actions).",
        # True only if running the action twice has the same effect as running it once: the
        # engine then re-runs an attempt that a crash interrupted. Sending, appending,
        # creating: False.
        idempotent=True,
    )


@hookimpl
def register_settings(register) -> None:
    # Actions named "myplugin.*" receive this section (secrets resolved) as ctx.settings.
    register("myplugin", SETTINGS_SCHEMA, description="defaults for myplugin.hello")
