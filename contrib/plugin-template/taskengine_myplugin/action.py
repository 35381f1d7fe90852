"""The ``myplugin.hello`` action."""

from __future__ import annotations

from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError


def hello(params: dict, ctx: ActionContext) -> dict:
    """Greet ``params["name"]``; returns ``{"message": ...}``.

    ``params`` are the task's ``with:`` values, templates already rendered, secret references
    already resolved, checked against PARAMS_SCHEMA. ``ctx.settings`` is ``settings.myplugin``.
    Return JSON-serialisable data (it is stored as the run's output) or raise ActionError.
    """
    # Import heavy libraries here, not at the top of the module: taskengine imports every
    # plugin on every start, and `taskengine --help` should stay fast.
    import unicodedata

    name = unicodedata.normalize("NFC", params["name"]).strip()
    if not name:
        # retryable=False: another attempt cannot fix bad input. Network or server trouble
        # would be retryable=True (the default): the task's retry policy decides how often.
        raise ActionError("myplugin.hello: 'name' is empty after rendering", retryable=False)
    # Long-running actions should watch ctx.cancelled (a threading.Event, set on timeout,
    # cancellation and shutdown) and ctx.time_left(). Never log or return secret values.
    greeting = params.get("greeting") or ctx.settings.get("greeting", "Hello")
    return {"message": f"{greeting}, {name}!"}
