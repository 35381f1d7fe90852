"""``GET /metrics`` in Prometheus' text format, through the ``prometheus-client`` library.

Counters that happen in this process (runs finishing, HTTP events accepted or refused) are
counted as they happen; depths and webhook attempts are read from the store at each scrape,
through indexed queries. Each engine has its own registry, so two engines in one process (tests)
do not mix their figures.
"""

from __future__ import annotations

import logging
from datetime import datetime

from aiohttp import web

from taskengine_core.clock import from_iso, to_iso
from taskengine_core.hookspecs import hookimpl
from taskengine_core.store import dashboard as q

log = logging.getLogger("taskengine.metrics")
REJECTED_BY_STATUS = {400: "bad_request", 401: "unauthorized", 408: "body_timeout", 413: "too_large",
                      415: "not_json", 422: "invalid_event", 429: "rate_limited", 503: "unavailable"}
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300)


class Metrics:
    """The engine's metrics: a registry, the counters and a collector over the store."""

    def __init__(self, engine) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter("taskengine_runs", "Runs that reached a final status, by task and status",
                            ["task", "status"], registry=self.registry)
        self.durations = Histogram("taskengine_run_duration_seconds", "How long finished runs took, by task",
                                   ["task"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.lateness = Histogram("taskengine_schedule_lateness_seconds",
                                  "From a schedule slot's due time to its run's start",
                                  buckets=LATENESS_BUCKETS, registry=self.registry)
        self.events = Counter("taskengine_ingress_events", "Events posted over HTTP, by outcome and reason",
                              ["outcome", "reason"], registry=self.registry)
        self.registry.register(_StoreCollector(engine))
        self.hooks = _RunHooks(self)

    # -- wiring --------------------------------------------------------------------------------

    def install(self, app: web.Application, tokens) -> None:
        """Count POST /events outcomes and serve /metrics (behind a token off loopback)."""
        self._tokens = tokens
        app.middlewares.append(self._count_events)
        app.router.add_get("/metrics", self._serve)
        self.engine.manager.pm.register(self.hooks, name=f"taskengine-metrics-{id(self)}")

    def uninstall(self) -> None:
        if self.engine.manager.pm.is_registered(self.hooks):
            self.engine.manager.pm.unregister(self.hooks)

    @web.middleware
    async def _count_events(self, request: web.Request, handler):
        response = await handler(request)
        if request.path == "/events" and request.method == "POST":
            if response.status == 202:
                self.events.labels("accepted", "").inc()
            else:
                self.events.labels("rejected", REJECTED_BY_STATUS.get(response.status, str(response.status))).inc()
        return response

    async def _serve(self, request: web.Request) -> web.Response:
        if self._tokens is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not self._tokens(given):
                return web.json_response({"error": "metrics need a bearer token here (the listener is not "
                                                   "loopback): any dashboard token or the ingress token"},
                                         status=401, headers={"WWW-Authenticate": "Bearer"})
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        import asyncio

        body = await asyncio.to_thread(generate_latest, self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- what the hooks feed -------------------------------------------------------------------

    def run_finished(self, run) -> None:
        self.runs.labels(run.task, run.status).inc()
        if run.duration is not None:
            self.durations.labels(run.task).observe(run.duration)
        row = q.finished_run(self.engine._thread_store().conn, run.id)
        if row and row["trigger"] == "schedule" and row["slot"] and row["started_at"]:
            late = (from_iso(row["started_at"]) - from_iso(row["slot"])).total_seconds()
            self.lateness.observe(max(0.0, late))


class _RunHooks:
    """Registered with the engine's plugin manager while the listener runs."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    @hookimpl
    def run_finished(self, run) -> None:
        self.metrics.run_finished(run)


class _StoreCollector:
    """Figures read from the database at each scrape."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        conn = self.engine._thread_store().conn
        depth = q.queue_depth(conn)
        queue = GaugeMetricFamily("taskengine_queue_depth", "Events waiting for evaluation and runs "
                                  "pending or running", labels=["queue"])
        queue.add_metric(["inbox"], depth["inbox"])
        queue.add_metric(["pending"], depth["pending"])
        queue.add_metric(["running"], depth["running"])
        yield queue
        now = self.engine.clock.now()
        oldest = q.oldest_due_pending(conn, to_iso(now))
        waiting = GaugeMetricFamily("taskengine_due_run_wait_seconds",
                                    "How long the longest-waiting due run has waited to start")
        waiting.add_metric([], _age(now, oldest))
        yield waiting
        attempts = CounterMetricFamily("taskengine_webhook_attempts", "Webhook delivery attempts, "
                                       "by destination and outcome", labels=["webhook", "outcome"])
        for webhook, outcome, count in q.webhook_outcomes(conn):
            attempts.add_metric([webhook, outcome], count)
        yield attempts


def _age(now: datetime, since: str | None) -> float:
    return max(0.0, (now - from_iso(since)).total_seconds()) if since else 0.0
