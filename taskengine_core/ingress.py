"""The HTTP ingress: ``POST /events`` and ``GET /healthz`` on aiohttp, in its own thread.

An event is acknowledged (202) only after it is committed. Concurrent requests are committed
together (group commit), so durability costs one transaction per batch, not per request.
Rejected requests (401, 413, 415, 400, 422, 429) write nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import threading
import time

from aiohttp import web

from taskengine_core import __version__
from taskengine_core.errors import EventError, TaskEngineError
from taskengine_core.events import event_from_json, insert_events

log = logging.getLogger("taskengine.ingress")
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_RATE = 1000.0  # events per second per client, burst of twice that
TOKEN_ENV = "TASKENGINE_INGRESS_TOKEN"


class IngressConfigError(TaskEngineError):
    """The ingress cannot start as configured."""


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
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
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[client] = (tokens - 1, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1 - tokens) / self.rate


class Ingress:
    def __init__(self, engine, listen: str, *, token: str | None = None) -> None:
        settings = engine.runtime.settings.get("ingress") or {}
        self.engine = engine
        self.host, self.port = parse_listen(listen)
        self.token = token or self._configured_token(engine, settings)
        if not self.token and not is_loopback(self.host):
            raise IngressConfigError(
                f"refusing to listen on {self.host} without a token: set {TOKEN_ENV} or "
                "settings.ingress.token, or listen on 127.0.0.1")
        self.max_body = int(settings.get("max_body", DEFAULT_MAX_BODY))
        self.limiter = _RateLimiter(float(settings.get("rate", DEFAULT_RATE)))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._queue: asyncio.Queue | None = None
        self.address = f"{self.host}:{self.port}"

    @staticmethod
    def _configured_token(engine, settings: dict) -> str | None:
        import os

        if os.environ.get(TOKEN_ENV):
            return os.environ[TOKEN_ENV]
        if settings.get("token"):
            return engine.secrets.resolve(settings["token"])
        return None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="taskengine-ingress", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise IngressConfigError(f"cannot listen on {self.host}:{self.port}: {self._error}")

    def stop(self) -> None:
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._stop_event = None
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self._queue = asyncio.Queue()
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post("/events", self._post_event)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # the real port when 0 was asked
        if sockets:
            self.port = sockets[0].getsockname()[1]
            self.address = f"{self.host}:{self.port}"
        writer = asyncio.create_task(self._writer())
        self._ready.set()
        await self._stop_event.wait()
        await runner.cleanup()
        writer.cancel()

    # -- handlers ------------------------------------------------------------------------------

    async def _post_event(self, request: web.Request) -> web.Response:
        if self.token is not None:
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        wait = self.limiter.retry_after(request.remote or "?")
        if wait:
            return _error(429, "too many events; slow down", {"Retry-After": str(max(1, round(wait + 0.5)))})
        if request.content_length is not None and request.content_length > self.max_body:
            return _error(413, f"body larger than {self.max_body} bytes")
        if request.content_type != "application/json":
            return _error(415, "expected Content-Type: application/json")
        try:
            raw = await request.read()  # aiohttp stops reading past client_max_size (413)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {self.max_body} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        try:
            event = event_from_json(body, default_source="http")
        except EventError as exc:
            return _error(422, str(exc), field=exc.field)
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((event, future))
        try:
            event_id = await future
        except TaskEngineError as exc:
            return _error(503, f"event not stored: {exc}")
        return web.json_response({"id": event_id}, status=202)

    async def _healthz(self, request: web.Request) -> web.Response:
        counts = await asyncio.to_thread(self._counts)
        return web.json_response({"status": "ok", "version": __version__, **counts})

    def _counts(self) -> dict:
        store = self.engine._thread_store()
        inbox = store.conn.execute("SELECT count(*) FROM events WHERE processed_at IS NULL").fetchone()[0]
        pending, running = store.conn.execute(
            "SELECT sum(status = 'pending'), sum(status = 'running') FROM runs").fetchone()
        return {"inbox": inbox, "runs_pending": pending or 0, "runs_running": running or 0}

    async def _writer(self) -> None:
        """Commit queued events in batches; each request gets its id after its batch commits."""
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            try:
                ids = await asyncio.to_thread(self.engine.emit_many, [e for e, _ in batch])
            except TaskEngineError as exc:
                for _, future in batch:
                    future.set_exception(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - answer every waiting request
                log.exception("storing events failed")
                for _, future in batch:
                    future.set_exception(TaskEngineError(str(exc)))
                continue
            for (_, future), event_id in zip(batch, ids):
                future.set_result(event_id)


def _error(status: int, message: str, headers: dict | None = None, field: str | None = None) -> web.Response:
    body = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)
