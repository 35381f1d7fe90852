"""The dashboard as a part of the ingress' aiohttp application: routes under ``/ui``, the sign-in
pages, and the checks every request passes (session, role, CSRF, Origin)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from taskengine_core.ui import access
from taskengine_core.ui.render import Renderer

log = logging.getLogger("taskengine.ui")
STATIC = Path(__file__).parent / "static"
SESSION_KEY = web.RequestKey("taskengine_session", access.Session)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request the dashboard will not carry out; nothing was changed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class Dashboard:
    """Everything the pages share: the engine, the tokens, the sessions and the renderer."""

    def __init__(self, engine, tokens: access.Tokens, *, secure: bool = False,
                 session_seconds: float = access.DEFAULT_SESSION_SECONDS) -> None:
        self.engine = engine
        self.tokens = tokens
        self.secure = secure
        self.sessions = access.Sessions(session_seconds)
        self.renderer = Renderer(engine)

    # -- wiring into the application ---------------------------------------------------------

    def install(self, app: web.Application) -> None:
        from taskengine_core.ui.pages import all_routes

        app.middlewares.append(self._middleware)
        app.router.add_get("/ui/login", self._login_page)
        app.router.add_post("/ui/login", self._login)
        app.router.add_post("/ui/logout", self._logout)
        app.router.add_static("/ui/static/", STATIC, append_version=False)
        for method, path, handler in all_routes(self):
            app.router.add_route(method, path, handler)

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        path = request.path
        if not (path == "/ui" or path.startswith("/ui/")):
            return await handler(request)
        try:
            if not (path in ("/ui/login",) or path.startswith("/ui/static/")):
                session = self.sessions.get(request.cookies.get(access.COOKIE))
                if session is None:
                    if request.method == "GET":
                        target = request.path_qs if request.path != "/ui/logout" else "/ui"
                        raise web.HTTPSeeOther(f"/ui/login?next={quote(target, safe='')}")
                    raise Refused(401, "you are not signed in (or your session expired); sign in again")
                request[SESSION_KEY] = session
                if request.method not in ("GET", "HEAD"):
                    await self._check_change(request, session)
            elif request.method == "POST":
                self._check_origin(request)
            response = await handler(request)
        except Refused as refused:
            log.warning("dashboard refused %s %s: %s", request.method, path, refused.reason)
            response = await self._refusal(request, refused)
        except web.HTTPException:
            raise
        except Exception:  # noqa: BLE001 - a page's bug is logged; the engine goes on
            log.exception("dashboard page %s failed", path)
            response = web.Response(status=500, text="this page failed; the error is in the engine's log",
                                    content_type="text/plain")
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    async def _check_change(self, request: web.Request, session: access.Session) -> None:
        self._check_origin(request)
        given = request.headers.get("X-CSRF-Token")
        if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            given = (await request.post()).get("csrf")
        if not access.csrf_ok(session, given if isinstance(given, str) else None):
            raise Refused(403, "the request has no valid CSRF token; reload the page and try again")

    def _check_origin(self, request: web.Request) -> None:
        problem = access.origin_problem(request.headers.get("Origin"), request.scheme, request.host)
        if problem:
            raise Refused(403, f"{problem}; changes are accepted only from the dashboard's own pages")

    async def _refusal(self, request: web.Request, refused: Refused) -> web.Response:
        if request.headers.get("HX-Request"):
            return web.Response(status=refused.status, text=refused.reason,
                                headers={"HX-Reswap": "none", "HX-Trigger": "refused"})
        html = await self.render_page(request, "refused.html", {"reason": refused.reason,
                                                                "status": refused.status})
        html.set_status(refused.status)
        return html

    # -- sign-in -----------------------------------------------------------------------------

    async def _login_page(self, request: web.Request) -> web.Response:
        return self._html(self.renderer.page("login.html", {"next": _safe_next(request.query.get("next")),
                                                            "error": None, "session": None}))

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        target = _safe_next(form.get("next"))
        grant = self.tokens.grant(form.get("token") if isinstance(form.get("token"), str) else None)
        error = None
        if grant is None:
            error = "that token is not valid"
        elif grant.role == access.EMIT_ROLE:
            error = f"the token {grant.name!r} may only emit events; it cannot sign in"
        if error:
            log.warning("dashboard sign-in refused from %s: %s", request.remote, error)
            response = self._html(self.renderer.page("login.html", {"next": target, "error": error,
                                                                    "session": None}))
            response.set_status(401 if grant is None else 403)
            return response
        session = self.sessions.open(grant)
        log.info("dashboard: %s signed in (%s)", grant.actor, grant.role)
        response = web.HTTPSeeOther(target)
        response.set_cookie(access.COOKIE, session.id, httponly=True, samesite="Strict", path="/ui",
                            max_age=int(self.sessions.lifetime), secure=self.secure)
        raise response

    async def _logout(self, request: web.Request) -> web.Response:
        self.sessions.close(request.cookies.get(access.COOKIE))
        response = web.HTTPSeeOther("/ui/login")
        response.del_cookie(access.COOKIE, path="/ui")
        raise response

    # -- what pages use ----------------------------------------------------------------------

    @staticmethod
    def session(request: web.Request) -> access.Session:
        return request[SESSION_KEY]

    def require(self, request: web.Request, role: str) -> access.Grant:
        grant = self.session(request).grant
        if not grant.allows(role):
            raise Refused(403, f"the token {grant.name!r} is a {grant.role}; this needs {role}")
        return grant

    async def query(self, func: Callable[..., Any], *args, **kwargs) -> Any:
        """Run a store read (or write) in a worker thread, on that thread's own connection."""
        def call():
            return func(self.engine._thread_store(), *args, **kwargs)

        return await asyncio.to_thread(call)

    async def render_page(self, request: web.Request, template: str, context: dict) -> web.Response:
        session = request.get(SESSION_KEY)
        context = {**context, "session": session, "path": request.path}
        html = await asyncio.to_thread(self.renderer.page, template, context)
        return self._html(html)

    async def render_fragment(self, request: web.Request, template: str, context: dict) -> web.Response:
        context = {**context, "session": request.get(SESSION_KEY), "path": request.path}
        return self._html(await asyncio.to_thread(self.renderer.page, template, context))

    @staticmethod
    def _html(text: str) -> web.Response:
        return web.Response(text=text, content_type="text/html", charset="utf-8")


def _safe_next(target: Any) -> str:
    """Only a path of this dashboard: never another site (an open redirect)."""
    if isinstance(target, str) and target.startswith("/ui") and not target.startswith("//") \
            and "\\" not in target and "\n" not in target and "\r" not in target:
        return target
    return "/ui"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
