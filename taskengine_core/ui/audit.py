"""Every change made in the dashboard lands in the audit log under the token's name (``ui:NAME``)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from taskengine_core.ui.access import Grant

SOURCE = "ui"


async def audited(dash, grant: Grant, action: str, kind: str, name: str, changes: dict,
                  do: Callable[[], Any]) -> Any:
    """Carry out ``do`` (in a worker thread), then record it; returns what ``do`` returned."""

    def call():
        from taskengine_core.clock import to_iso
        from taskengine_core.store import audit

        result = do()
        with dash.engine._thread_store().write() as db:
            audit.record(db.conn, [(action, kind, name, dash.renderer.masked(changes))],
                         to_iso(dash.engine.clock.now()), actor=grant.actor, source=SOURCE)
        return result

    return await asyncio.to_thread(call)
