"""The core's own hook implementations. Built-in first-result hooks are ``trylast``."""

from __future__ import annotations

from taskengine_core.hookspecs import hookimpl
from taskengine_core.secrets import resolve_builtin


@hookimpl(trylast=True)
def resolve_secret(scheme: str, reference: str) -> str | None:
    return resolve_builtin(scheme, reference)
