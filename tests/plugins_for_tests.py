"""In-process plugins for engine tests: actions that misbehave in each way a plugin can."""

from __future__ import annotations

import threading
import time

from taskengine_core.errors import ActionError
from taskengine_core.hookspecs import hookimpl

CALLS: list[dict] = []
_lock = threading.Lock()


def record(params, ctx):
    """Remember the call; succeed."""
    with _lock:
        CALLS.append({"params": params, "run_id": ctx.run_id, "attempt": ctx.attempt, "event": ctx.event})
    return {"ok": True, "params": params}


def explode(params, ctx):
    raise RuntimeError("kaboom from the plugin")


def garbage(params, ctx):
    return object()


def hang(params, ctx):
    time.sleep(params.get("seconds", 60))  # ignores ctx.cancelled on purpose
    return {"woke": True}


def flaky(params, ctx):
    if ctx.attempt < params.get("succeed_on", 2):
        raise ActionError(f"transient failure on attempt {ctx.attempt}", retryable=True)
    return {"attempt": ctx.attempt}


def undecodable(params, ctx):
    """Fails naming a file whose name is not UTF-8 (read with surrogateescape, as os does)."""
    raise RuntimeError("cannot open " + b"caf\xe9.txt".decode("utf-8", "surrogateescape"))


def fatal(params, ctx):
    raise ActionError("permanent failure", retryable=False)


class TestActions:
    """Registered as a plugin object (not installed)."""

    __name__ = "test-actions"

    @hookimpl
    def register_actions(self, register):
        open_schema = {"type": "object"}
        register("test.record", record, schema=open_schema, idempotent=True)
        register("test.explode", explode, schema=open_schema)
        register("test.garbage", garbage, schema=open_schema)
        register("test.hang", hang, schema=open_schema)
        register("test.flaky", flaky, schema=open_schema, idempotent=True)
        register("test.fatal", fatal, schema=open_schema)
        register("test.undecodable", undecodable, schema=open_schema)
        register("test.sticky", record, schema=open_schema, idempotent=False)


def manager():
    from taskengine_core.plugins import get_plugin_manager

    return get_plugin_manager(extra_plugins=[TestActions()])
