"""The three actions: ``updates.check``, ``updates.download``, ``updates.install``.

Each asks its source for the pending list first, so every run's output says what was pending
(name, installed, candidate, size where known). ``updates.check`` emits ``update.available``
only when the pending set differs from the one it saw last (kept in the plugin's durable
state), so a weekly check does not repeat itself.
"""

from __future__ import annotations

from taskengine_core.clock import Clock, to_iso
from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError

from .pending import Pending, as_list, fingerprint, scope_key
from .schema import PARAMS_SCHEMA, options_for

EVENT_SOURCE = "updates"
_validator = None


def source_for(params: dict, ctx: ActionContext):
    _check(params)
    try:
        source, options = options_for(params, ctx.settings or {})
    except ValueError as exc:
        raise ActionError(f"updates: {exc}", retryable=False) from None
    if source == "apt":
        from .apt import AptSource

        return AptSource(options, ctx)
    if source == "pypi":
        from .pypi import PypiSource

        return PypiSource(options, ctx)
    from .vergeos import VergeosSource

    return VergeosSource(options, ctx)


def check_updates(params: dict, ctx: ActionContext) -> dict:
    """Refresh the source and list pending updates; emit update.available when the set changed."""
    source = source_for(params, ctx)
    if source.options.get("refresh", True):
        source.refresh()
    pending = source.pending()
    key = scope_key(source.name, source.identity)
    now = fingerprint(pending)
    changed = ctx.state is None or ctx.state.get(key) != now
    event_id = None
    if changed and pending:
        event_id = ctx.emit("update.available", {"source": source.name, "packages": as_list(pending),
                                                 "count": len(pending)}, source=EVENT_SOURCE)
    if ctx.state is not None and changed:
        ctx.state.set(key, now)  # after the emit: a crash in between reports the set again
    return {"source": source.name, "packages": as_list(pending), "count": len(pending),
            "changed": changed, "event": event_id}


def download_updates(params: dict, ctx: ActionContext) -> dict:
    """Download (not install) the pending updates; emit update.downloaded."""
    source = source_for(params, ctx)
    if source.options.get("refresh", False):
        source.refresh()  # off by default: it follows a check, which refreshed
    pending = source.pending()
    if not pending:
        return {"source": source.name, "packages": [], "count": 0, "event": None}
    source.download(pending)
    data = {"source": source.name, "packages": as_list(pending), "count": len(pending)}
    event_id = ctx.emit("update.downloaded", data, source=EVENT_SOURCE)
    return {**data, "event": event_id}


def install_updates(params: dict, ctx: ActionContext) -> dict:
    """Install the pending updates; emit update.completed with the result, failed ones too."""
    source = source_for(params, ctx)
    clock = Clock()
    if source.options.get("refresh", True):
        source.refresh()  # install what the repository has now, not what a stale list says
    pending = source.pending()
    if not pending:
        return {"source": source.name, "packages": [], "count": 0, "result": "nothing to install",
                "event": None}
    started = to_iso(clock.now())
    try:
        source.install(pending)
    except ActionError as exc:
        _completed(ctx, source.name, pending, started, to_iso(clock.now()), "failed", str(exc))
        raise
    finished = to_iso(clock.now())
    data, event_id = _completed(ctx, source.name, pending, started, finished, "succeeded")
    return {**data, "event": event_id}


def _completed(ctx: ActionContext, source: str, pending: list[Pending], started: str,
               finished: str, result: str, error: str | None = None) -> tuple[dict, str]:
    data = {"source": source, "packages": as_list(pending), "count": len(pending),
            "started": started, "finished": finished, "result": result}
    if error is not None:
        data["error"] = error
    return data, ctx.emit("update.completed", data, source=EVENT_SOURCE)


def _check(params) -> None:
    """The engine validates before calling; this keeps direct callers honest too."""
    global _validator
    if _validator is None:
        from jsonschema import Draft202012Validator

        _validator = Draft202012Validator(PARAMS_SCHEMA)
    errors = list(_validator.iter_errors(params))
    if errors:
        from jsonschema.exceptions import best_match

        error = best_match(errors)
        where = "/".join(str(p) for p in error.absolute_path) or "(parameters)"
        raise ActionError(f"updates: {where}: {error.message}", retryable=False)
