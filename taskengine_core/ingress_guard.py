"""What keeps the HTTP ingress up under a flood: a cap on open connections, a deadline for each
request's headers, one-line logs of malformed requests, and log lines once per interval.

Without these, connections that never finish their headers stay open forever: at 1,100 of them,
under systemd's default limit of 1,024 open files, the ingress stops answering and scheduled
tasks fail with "Too many open files", while the log grows by a traceback per bad request.

- At most ``max_connections`` are open. When one more arrives, the connection that has been
  idle longest (connected but no request yet, or kept alive between requests) is closed to make
  room; if every connection is busy with a request, the new one gets ``503`` and is closed. A
  flood of idle connections therefore cannot lock out ``/healthz`` or ``POST /events``.
- An idle connection is closed once it has not sent a complete request head (request line and
  headers) for ``header_timeout`` seconds, counting from the connection or from the previous
  response. The body has its own timeout (in the handler).
- A malformed request is answered ``400`` with a JSON error and logged as one line, without the
  bytes it carried (a header can hold the token); closures and malformed requests are summed up
  in a log line once per interval instead of one line each.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("taskengine.ingress")

DEFAULT_HEADER_TIMEOUT = 10.0
LOG_EVERY = 60.0
BUSY_REPLY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
              b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s")
_BUSY_BODY = b'{"error": "too many connections; try again"}'

_SUMMARY = {
    "evicted": "closed while idle to make room (more than {max} open at once; "
               "settings.ingress.max_connections)",
    "refused": "refused with 503 (all {max} connections busy)",
    "timed_out": "closed after sending no complete request head within {timeout:g}s "
                 "(settings.ingress.header_timeout)",
    "malformed": "malformed requests answered 400",
}


def default_max_connections() -> int:
    """A quarter of the open-file limit (the rest is for the database, tasks and plugins), at
    most 256: 256 under systemd's default of 1,024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(16, min(256, soft // 4))


class IntervalLog:
    """Counts what happens to connections; logs the first of a quiet spell at once and the rest
    as one summary per interval."""

    def __init__(self, max_connections: int, header_timeout: float, every: float = LOG_EVERY) -> None:
        self.every = every
        self._format = {"max": max_connections, "timeout": header_timeout}
        self.counts: Counter[str] = Counter()
        self._quiet = True  # nothing happened in the last interval: log the next thing at once
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.flush()

    def note(self, kind: str, detail: str = "") -> None:
        if self._quiet:
            self._quiet = False
            log.warning("ingress: %s%s; further ones are summed up every %gs",
                        _SUMMARY[kind].format(**self._format).split(" (")[0],
                        f": {detail}" if detail else "", self.every)
            return
        self.counts[kind] += 1

    def flush(self) -> None:
        if not self.counts:
            self._quiet = True
            return
        parts = [f"{n} {_SUMMARY[kind].format(**self._format)}" for kind, n in sorted(self.counts.items())]
        log.warning("ingress, last %gs: %s", self.every, "; ".join(parts))
        self.counts.clear()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.flush()


class ConnectionGuard:
    """The open connections, which of them are idle and since when (oldest first)."""

    def __init__(self, *, max_connections: int, header_timeout: float, events: IntervalLog) -> None:
        self.max_connections, self.header_timeout, self.events = max_connections, header_timeout, events
        self.open: dict[RequestHandler, object] = {}
        self._idle: dict[RequestHandler, float] = {}  # insertion order: the longest idle first

    def opened(self, handler: RequestHandler, transport) -> bool:
        """A new connection; False when it was refused (and closed)."""
        if len(self.open) >= self.max_connections:
            victim = next(iter(self._idle), None)
            if victim is None:
                transport.write(BUSY_REPLY % (len(_BUSY_BODY), _BUSY_BODY))
                transport.close()
                self.events.note("refused")
                return False
            self.events.note("evicted")
            self._close(victim)
        self.open[handler] = transport
        self._became_idle(handler)
        return True

    def closed(self, handler: RequestHandler) -> None:
        self.open.pop(handler, None)
        self._idle.pop(handler, None)

    def busy(self, handler: RequestHandler) -> None:
        """A request arrived (its head is complete)."""
        self._idle.pop(handler, None)

    def done(self, handler: RequestHandler) -> None:
        """The request's response is written; the connection may wait for the next one."""
        if handler in self.open:
            self._became_idle(handler)

    def _became_idle(self, handler: RequestHandler) -> None:
        loop = asyncio.get_running_loop()
        since = loop.time()
        self._idle.pop(handler, None)
        self._idle[handler] = since
        loop.call_later(self.header_timeout, self._expire, handler, since)

    def _expire(self, handler: RequestHandler, since: float) -> None:
        if self._idle.get(handler) == since:
            self.events.note("timed_out")
            self._close(handler)

    def _close(self, handler: RequestHandler) -> None:
        self._idle.pop(handler, None)
        self.open.pop(handler, None)
        handler.force_close()


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler, answering a malformed request with a JSON 400 and one log
    line that carries none of the request's bytes."""

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        guard_log: IntervalLog | None = getattr(self._manager, "events", None)
        if status == 500:
            log.error("ingress: internal error answering %s %s from %s", request.method,
                      request.path, request.remote, exc_info=exc)
            text = "internal error; see the engine's log"
        else:
            text = f"malformed HTTP request: {_reason(exc, message)}"
            if guard_log is not None:
                guard_log.note("malformed", f"{text} (from {request.remote})")
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        response = web.json_response({"error": text}, status=status)
        response.force_close()
        return response


def _reason(exc: BaseException | None, message: str | None) -> str:
    """The parser's reason without the offending bytes, which it quotes on the lines after."""
    text = getattr(exc, "message", None) or message or (str(exc) if exc else "") or "bad request"
    first = str(text).strip().splitlines()[0] if str(text).strip() else "bad request"
    return first.rstrip(":").strip()[:200]


class GuardedServer(web.Server):
    """aiohttp's low-level server with the connection guard in front of every connection."""

    def __init__(self, handler, *, guard: ConnectionGuard, **kwargs) -> None:
        super().__init__(handler, **kwargs)
        self.guard, self.events = guard, guard.events

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport) -> None:
        super().connection_made(handler, transport)
        self.guard.opened(handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.guard.closed(handler)
        super().connection_lost(handler, exc)
