"""The HTTP ingress: ``POST /events`` and ``GET /healthz`` on aiohttp, in its own thread.

An event is acknowledged (202) only after it is committed. Concurrent requests are committed
together (:mod:`taskengine_core.group_commit`), so durability costs one transaction per batch,
not per request.
Rejected requests (401, 413, 415, 400, 422, 429) write nothing. Floods of connections are
held off by :mod:`taskengine_core.ingress_guard`; ``/healthz`` is :mod:`taskengine_core.health`.
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
from aiohttp.web_protocol import RequestPayloadError

from taskengine_core.errors import EventError, TaskEngineError
from taskengine_core.events import MAX_DATA_DEPTH, Event, check_values, event_from_json, nested_deeper
from taskengine_core.group_commit import GroupCommit
from taskengine_core.health import DEFAULT_STALL_AFTER, HealthCheck
from taskengine_core.ingress_guard import (DEFAULT_HEADER_TIMEOUT, ConnectionGuard, GuardedServer,
                                           IntervalLog, default_max_connections)

log = logging.getLogger("taskengine.ingress")
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_RATE = 1000.0  # events per second per client address, burst of twice that
BODY_TIMEOUT = 30.0  # seconds a client gets to send its body (settings.ingress.body_timeout)
MAX_DEPTH = MAX_DATA_DEPTH  # nesting levels of an event's data
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
        if token:  # however it was given, it is a secret: never in a log line
            engine.secrets.redactor.add(token)
            engine.secrets.redactor.add(repr(token.encode("utf-8", "surrogateescape"))[2:-1])
        self.max_body = int(settings.get("max_body", DEFAULT_MAX_BODY))
        self.limiter = _RateLimiter(float(settings.get("rate", DEFAULT_RATE)))
        self._body_timeout = settings.get("body_timeout")  # else BODY_TIMEOUT, read when used
        self.header_timeout = float(settings.get("header_timeout", DEFAULT_HEADER_TIMEOUT))
        self.max_connections = int(settings.get("max_connections") or default_max_connections())
        self.health = HealthCheck(engine, stall_after=float(settings.get("stall_after", DEFAULT_STALL_AFTER)))
        self.guard: ConnectionGuard | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self.address = f"{self.host}:{self.port}"
        self.ui = ui  # serve the dashboard (/ui) and /metrics on this listener
        self.attached = None  # what taskengine_core.ui.attach gave, once serving
        self._ui_app: web.Application | None = None

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
        # This thread's commits never wait for a lock held elsewhere: a busy batch is handed to
        # a worker thread, so that the loop (and /healthz) keeps answering meanwhile.
        self.engine._thread_store().waits = False
        self._commits = GroupCommit(asyncio.get_running_loop(),
                                    lambda events: self.engine.emit_many(events, checked=True))
        events = IntervalLog(self.max_connections, self.header_timeout)
        self.guard = ConnectionGuard(max_connections=self.max_connections,
                                     header_timeout=self.header_timeout, events=events)
        runner = await self._start_site()
        events.start()
        self._ready.set()
        await self._stop_event.wait()
        await runner.cleanup()  # waits for in-flight handlers, whose events are committed first
        await self._commits.flush()
        events.stop()
        self.health.close()
        if self.attached is not None:
            self.attached.close()

    async def _start_site(self) -> web.BaseRunner:
        loop = asyncio.get_running_loop()

        def make_request(message, payload, protocol, writer, task):
            # web.Request (not BaseRequest): the dashboard's application routes it
            return web.Request(message, payload, protocol, writer, task, loop,
                               client_max_size=self.max_body)

        if self.ui:
            self._ui_app = await self._dashboard_app()
        # lingering_time=0: a body we refused unread is not drained; the connection is closed.
        # keepalive_timeout: aiohttp's own idle limit, the same as the guard's.
        server = GuardedServer(self._dispatch, guard=self.guard, request_factory=make_request,
                               access_log=None, lingering_time=0,
                               keepalive_timeout=self.header_timeout)
        runner = web.ServerRunner(server, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        if runner.addresses:  # the real port when 0 was asked
            self.port = runner.addresses[0][1]
            self.address = f"{self.host}:{self.port}"
        return runner

    # -- handlers ------------------------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        handler = request.protocol
        self.guard.busy(handler)
        try:
            if request.path == "/events":
                if request.method != "POST":
                    return _error(405, "use POST /events", {"Allow": "POST"})
                response = await self._post_event(request)
                if self.attached is not None:
                    self.attached.count_event(response.status)
                return response
            if request.path == "/healthz":
                if request.method not in ("GET", "HEAD"):
                    return _error(405, "use GET /healthz", {"Allow": "GET, HEAD"})
                return await self._healthz(request)
            if self._ui_app is not None and _dashboard_path(request.path):
                return await self._ui_app._handle(request)  # aiohttp's own dispatch of an app
            return _error(404, "not found: the ingress serves POST /events and GET /healthz")
        finally:
            self.guard.done(handler)

    async def _post_event(self, request: web.BaseRequest) -> web.Response:
        response = await self._accept(request)
        if not request.content.at_eof():
            response.force_close()  # say so: the rest of the body will not be read
        return response

    async def _accept(self, request: web.BaseRequest) -> web.Response:
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
        body_timeout = float(self._body_timeout or BODY_TIMEOUT)
        try:
            if request.content.is_eof():  # the usual small event: all here, no timer needed
                raw = await request.read()
            else:
                async with asyncio.timeout(body_timeout):
                    raw = await request.read()  # raises once more than client_max_size has arrived
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {self.max_body} bytes")
        except TimeoutError:
            return _error(408, f"body not received within {body_timeout:g}s")
        except RequestPayloadError as exc:
            encoding = request.headers.get("Content-Encoding")
            if encoding:
                return _error(400, f"body cannot be decoded as Content-Encoding: {encoding[:40]}; "
                                   "send it so encoded, or plain without that header")
            return _error(400, f"body could not be read: {str(exc).splitlines()[-1].strip()[:200]}")
        except ConnectionError:  # the client went away: nobody to answer
            return _error(400, "connection lost while reading the body")
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
        except EventError as exc:  # what only the database can tell (PostgreSQL: a NUL in the id)
            return _error(422, str(exc), field=exc.field)
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

    async def _healthz(self, request: web.BaseRequest) -> web.Response:
        status, body = await asyncio.to_thread(self.health.report)
        return web.json_response(body, status=status)

    async def _dashboard_app(self) -> web.Application:
        """The dashboard (/ui) and /metrics: an aiohttp application of their own, which
        :meth:`_dispatch` hands those paths to; the ingress' own paths stay on the guarded,
        low-level server."""
        from taskengine_core.ui import attach

        app = web.Application(client_max_size=self.max_body)
        self.attached = attach(self.engine, app, loopback=is_loopback(self.host), ingress_token=self._token)
        app.freeze()
        await app.startup()
        return app


def _dashboard_path(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/") or path == "/metrics"


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
    if deep and nested_deeper(event.data, MAX_DEPTH):  # would break whoever recurses through it later
        return None, _error(422, f"invalid event: data: nested more than {MAX_DEPTH} levels deep",
                            field="data")
    return event, None


def _not_a_number(name: str):
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    if math.isfinite(value := float(text)):
        return value
    raise ValueError(f"number {text[:20]} is out of range")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:100]!r} in one object; send each key once")
            seen.add(key)
    return result


_JSON = json.JSONDecoder(parse_constant=_not_a_number, parse_float=_finite_float,
                         object_pairs_hook=_unique_keys)


def _error(status: int, message: str, headers: dict | None = None, field: str | None = None) -> web.Response:
    body = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)
