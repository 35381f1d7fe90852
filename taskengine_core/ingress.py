"""The HTTP ingress: ``POST /events`` and ``GET /healthz`` on aiohttp, in its own thread.

An event is acknowledged (202) only after it is committed. Concurrent requests are committed
together (:mod:`taskengine_core.group_commit`), so durability costs one transaction per batch,
not per request.
Rejected requests (401, 413, 415, 400, 422, 429) write nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import os
import threading
import time

from aiohttp import web

from taskengine_core import __version__
from taskengine_core.errors import EventError, TaskEngineError
from taskengine_core.events import Event, check_values, event_from_json
from taskengine_core.group_commit import GroupCommit

log = logging.getLogger("taskengine.ingress")
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_RATE = 1000.0  # events per second per client address, burst of twice that
BODY_TIMEOUT = 30.0  # seconds a client gets to send its body
MAX_DEPTH = 64  # nesting levels of an event's data
TOKEN_ENV = "TASKENGINE_INGRESS_TOKEN"


class IngressConfigError(TaskEngineError):
    """The ingress cannot start as configured."""


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise IngressConfigError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _RateLimiter:
    """A token bucket per client address."""

    def __init__(self, rate: float) -> None:
        self.rate, self.burst = rate, max(1.0, rate * 2)
        self._buckets: dict[str, tuple[float, float]] = {}

    def retry_after(self, client: str) -> float:
        """0 when the request may pass, else seconds until it could."""
        now = time.monotonic()
        if len(self._buckets) > 10_000:  # forget clients whose bucket has refilled
            full = now - self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if v[1] > full}
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[client] = (tokens - 1, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1 - tokens) / self.rate


class Ingress:
    def __init__(self, engine, listen: str, *, token: str | None = None, ui: bool = False) -> None:
        settings = engine.runtime.settings.get("ingress") or {}
        self.engine = engine
        self.host, self.port = parse_listen(listen)
        token = token or os.environ.get(TOKEN_ENV) or (
            engine.secrets.resolve(settings["token"]) if settings.get("token") else None)
        if not token and not is_loopback(self.host):
            raise IngressConfigError(
                f"refusing to listen on {self.host} without a token: set {TOKEN_ENV} or "
                "settings.ingress.token, or listen on 127.0.0.1")
        self._token = token.encode() if token else None
        self.max_body = int(settings.get("max_body", DEFAULT_MAX_BODY))
        self.limiter = _RateLimiter(float(settings.get("rate", DEFAULT_RATE)))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self.address = f"{self.host}:{self.port}"
        self.ui = ui  # serve the dashboard (/ui) and /metrics on this listener
        self.attached = None  # what taskengine_core.ui.attach gave, once serving

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="taskengine-ingress", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise IngressConfigError(f"cannot listen on {self.host}:{self.port}: {self._error or 'timed out'}")

    def stop(self) -> None:
        """Stop accepting; requests already received are committed and answered first."""
        if self._loop is not None and self._stop_event is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._stop_event.set)
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self._commits = GroupCommit(asyncio.get_running_loop(),
                                    lambda events: self.engine.emit_many(events, checked=True))
        runner = await self._start_site()
        self._ready.set()
        await self._stop_event.wait()
        await runner.cleanup()  # waits for in-flight handlers, whose events are committed first
        await self._commits.flush()
        if self.attached is not None:
            self.attached.close()

    async def _start_site(self) -> web.AppRunner:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/events", self._post_event)
        app.router.add_get("/healthz", self._healthz)
        if self.ui:
            from taskengine_core.ui import attach

            self.attached = attach(self.engine, app, loopback=is_loopback(self.host), ingress_token=self._token)
        # lingering_time=0: a body we refused unread is not drained; the connection is closed.
        runner = web.AppRunner(app, access_log=None, lingering_time=0, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        if runner.addresses:  # the real port when 0 was asked
            self.port = runner.addresses[0][1]
            self.address = f"{self.host}:{self.port}"
        return runner

    # -- handlers ------------------------------------------------------------------------------

    async def _post_event(self, request: web.Request) -> web.Response:
        response = await self._accept(request)
        if not request.content.at_eof():
            response.force_close()  # say so: the rest of the body will not be read
        return response

    async def _accept(self, request: web.Request) -> web.Response:
        if self._token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            given_bytes = given.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer" or not (hmac.compare_digest(given_bytes, self._token)
                                                  or self._may_emit(given)):
                return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        if wait := self.limiter.retry_after(request.remote or "?"):
            return _error(429, "too many events; slow down", {"Retry-After": str(max(1, math.ceil(wait)))})
        if request.content_length is not None and request.content_length > self.max_body:
            return _error(413, f"body larger than {self.max_body} bytes")
        if request.content_type != "application/json":
            return _error(415, "expected Content-Type: application/json")
        try:
            if request.content.is_eof():  # the usual small event: all here, no timer needed
                raw = await request.read()
            else:
                async with asyncio.timeout(BODY_TIMEOUT):
                    raw = await request.read()  # raises once more than client_max_size has arrived
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {self.max_body} bytes")
        except TimeoutError:
            return _error(408, f"body not received within {BODY_TIMEOUT:g}s")
        try:
            body = _JSON.decode(raw.decode("utf-8"))  # UTF-8 only, as RFC 8259 asks
        except ValueError as exc:
            return _error(400, f"body is not valid JSON: {str(exc)[:200]}")
        except RecursionError:
            return _error(400, "body is not valid JSON: nested too deeply")
        event, rejection = _check_event(body, deep=raw.count(b"{") + raw.count(b"[") > MAX_DEPTH,
                                        escapes=b"\\ud" in raw or b"\\uD" in raw)
        if rejection is not None:
            return rejection
        try:
            event_id = await self._commits.add(event)
        except TaskEngineError as exc:
            return _error(503, f"event not stored: {exc}")
        return web.Response(body=b'{"id": "%s"}' % event_id.encode(), status=202,
                            content_type="application/json")

    def _may_emit(self, given: str) -> bool:
        """A dashboard token whose role may post events (emit, operator, admin; not viewer)."""
        if self.attached is None:
            return False
        grant = self.attached.emit_grant(given)
        return grant is not None and grant.role in ("emit", "operator", "admin")

    async def _healthz(self, request: web.Request) -> web.Response:
        counts = await asyncio.to_thread(self._counts)
        return web.json_response({"status": "ok", "version": __version__, **counts})

    def _counts(self) -> dict:
        store = self.engine._thread_store()
        inbox = store.conn.execute("SELECT count(*) FROM events WHERE processed_at IS NULL").fetchone()[0]
        pending, running = store.conn.execute(
            "SELECT sum(status = 'pending'), sum(status = 'running') FROM runs").fetchone()
        return {"inbox": inbox, "runs_pending": pending or 0, "runs_running": running or 0}


def _check_event(body, *, deep: bool = True, escapes: bool = True) -> tuple[Event | None, web.Response | None]:
    """The event to store, or the 422 response saying which field is wrong. ``deep``: the body
    may nest too deeply; ``escapes``: it may spell a lone surrogate (``\\ud800``)."""
    if isinstance(body, dict) and "type" not in body:  # name the missing field, not its parent
        return None, _error(422, "invalid event: type: missing; every event needs a type such as "
                            "user.login", field="type")
    try:
        event = event_from_json(body, default_source="http")
        if escapes:
            check_values(body)
    except EventError as exc:
        return None, _error(422, str(exc), field=exc.field)
    except (ValueError, OverflowError):  # valid RFC 3339 that Python's datetime cannot hold
        return None, _error(422, f"invalid event: time: cannot read {body['time']!r}; expected a "
                            "date-time such as 2026-01-31T10:00:00Z, years 1 to 9999", field="time")
    if deep and _nested_deeper(event.data, MAX_DEPTH):  # would break whoever recurses through it later
        return None, _error(422, f"invalid event: data: nested more than {MAX_DEPTH} levels deep",
                            field="data")
    return event, None


def _nested_deeper(value, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return False


def _not_a_number(name: str):
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    if math.isfinite(value := float(text)):
        return value
    raise ValueError(f"number {text[:20]} is out of range")


_JSON = json.JSONDecoder(parse_constant=_not_a_number, parse_float=_finite_float)


def _error(status: int, message: str, headers: dict | None = None, field: str | None = None) -> web.Response:
    body = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)
