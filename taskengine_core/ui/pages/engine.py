"""Engine-wide holds from the dashboard: pause every run (admins only) and resume. Events are
still accepted and evaluated while paused; runs wait. Both are audited under the token's name."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from taskengine_core.ui.app import Refused


def routes(dash):
    async def pause(request):
        grant = dash.require(request, "admin")
        form = await request.post()
        reason = str(form.get("reason") or "")[:500]
        until = _until(form.get("for"), dash.engine.clock.now())

        def write(store):
            from taskengine_core import holds

            with store.write() as db:
                return holds.pause(db.conn, dash.engine.clock.now(), until=until, reason=reason,
                                   actor=grant.actor, source="ui")

        await dash.query(write)
        dash.engine.wake.set()
        raise web.HTTPSeeOther("/ui")

    async def resume(request):
        grant = dash.require(request, "admin")

        def write(store):
            from taskengine_core import holds

            with store.write() as db:
                return holds.resume(db.conn, dash.engine.clock.now(), actor=grant.actor, source="ui")

        if await dash.query(write) is None:
            raise Refused(409, "the engine is not paused")
        dash.engine.wake.set()
        raise web.HTTPSeeOther("/ui")

    return [("POST", "/ui/pause", pause), ("POST", "/ui/resume", resume)]


def _until(text, now):
    """``for``: a duration such as 2h; empty for a pause until resumed."""
    if not isinstance(text, str) or not text.strip():
        return None
    from taskengine_core.durations import parse_duration

    try:
        seconds = parse_duration(text.strip())
    except (ValueError, TypeError) as exc:
        raise Refused(400, f"cannot read the duration {text[:40]!r} ({exc}); write 30m, 2h or 1d; "
                           "nothing was paused") from None
    if seconds <= 0:
        raise Refused(400, "the duration must be more than 0; nothing was paused")
    return now + timedelta(seconds=seconds)
