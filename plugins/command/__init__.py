"""Built-in plugin: ``command.run`` runs a program, without a shell unless one is asked for.

The program runs in its own process group; on timeout (the smaller of ``timeout`` and the task's
time limit) or cancellation the whole group gets SIGTERM, then SIGKILL two seconds later, so
grandchildren die too. stdout and stderr keep their last ``max_output`` bytes each.
"""

from __future__ import annotations

from taskengine_core.hookspecs import hookimpl
from taskengine_core.on_first_call import on_first_call

from .schema import SCHEMA

__all__ = ["SCHEMA", "register_actions", "run_command"]

# the action module (subprocess, the process-group machinery) is imported on the first run, not
# by every CLI start that loads the plugin
run_command = on_first_call(f"{__name__}.action", "run_command",
                            "Run the program ``params`` describe (:func:`.action.run_command`).")


@hookimpl
def register_actions(register) -> None:
    register(
        "command.run",
        run_command,
        schema=SCHEMA,
        description="Run a program (argv, no shell) or a shell command line; capture its output.",
        idempotent=False,  # a command may have side effects: never re-run after a crash
    )
