"""Built-in plugin: ``logwatch``, events from log files and systemd's journal.

``settings.logwatch`` lists files (each with built-in pattern bundles and/or its own rules) and
optionally the journal. A line that matches becomes an event whose data are the pattern's named
groups plus ``source`` (the file, or ``journal``) and ``line``.

* :mod:`.patterns`: the bundles ``sshd``, ``useradd`` and ``pam``, anchored to the whole line;
* :mod:`.engine`: RE2, so matching time is linear in the line's length;
* :mod:`.rules`: user rules, and what ``validate`` checks about them;
* :mod:`.follower`: one file across rotation, truncation, partial lines and restarts;
* :mod:`.journal`: the journal through ``journalctl``, by cursor;
* :mod:`.source`: the thread that ties them together.
"""

from __future__ import annotations

from taskengine_core.hookspecs import hookimpl
from taskengine_core.on_first_call import on_first_call

from .schema import SETTINGS_SCHEMA

__all__ = ["SETTINGS_SCHEMA", "register_settings", "register_triggers"]


_run = on_first_call(f"{__name__}.source", "run_source",
                     "Follow log files and the journal; emit an event for each line a pattern matches.")
_check = on_first_call(f"{__name__}.rules", "check_settings")


@hookimpl
def register_triggers(register) -> None:
    # each engine watches the logs of the machine it runs on
    register("logwatch", _run, schema=SETTINGS_SCHEMA, runs_on="every_node",
             description="Events from log files and the journal (sshd, useradd, pam, your own rules)")


@hookimpl
def register_settings(register) -> None:
    register("logwatch", SETTINGS_SCHEMA, check=_check,
             description="Log files and journal to watch, with built-in bundles and your own rules")
