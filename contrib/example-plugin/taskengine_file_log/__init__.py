"""taskengine plugin ``file``: the action ``file.append`` and the ``settings.file`` section."""

from __future__ import annotations

from taskengine_core.hookspecs import hookimpl

from .action import append_line
from .schema import PARAMS_SCHEMA, SETTINGS_SCHEMA

__all__ = ["append_line", "register_actions", "register_settings"]


@hookimpl
def register_actions(register) -> None:
    register(
        "file.append",
        append_line,
        schema=PARAMS_SCHEMA,
        description="Append one line (a template) to a file.",
        idempotent=False,  # a re-run after a crash would append the line a second time
    )


@hookimpl
def register_settings(register) -> None:
    register("file", SETTINGS_SCHEMA, description="where file.append may write")
