"""The web dashboard (``/ui``) and the Prometheus endpoint (``/metrics``), served by the
ingress listener of ``taskengine run``. Pages are Jinja2 templates made live with htmx (vendored
under ``static/``); nothing loads from elsewhere."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("taskengine.ui")


@dataclass
class Attached:
    """What attaching the dashboard gave: the sign-in token made for this start, if any (no
    token configured), and the objects to stop with the listener."""

    first_token: str | None
    dashboard: object
    metrics: object | None
    emit_grant: object  # given -> Grant | None, for tokens allowed to POST /events

    def count_event(self, status: int) -> None:
        """A POST /events answer, for /metrics."""
        if self.metrics is not None:
            self.metrics.count_event(status)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.uninstall()


def attach(engine, app, *, loopback: bool, ingress_token: bytes | None, secure: bool = False) -> Attached:
    """Add the dashboard's routes and /metrics to ``app``."""
    from taskengine_core.durations import parse_duration
    from taskengine_core.ui.access import DEFAULT_SESSION_SECONDS, first_run_tokens, tokens_from_settings
    from taskengine_core.ui.app import Dashboard

    access = engine.runtime.settings.get("access") or {}
    tokens = tokens_from_settings(access, engine.secrets.resolve)
    first = None
    if not tokens:
        tokens, first = first_run_tokens()
    for secret in tokens.secrets():  # never in a log line, whatever prints it
        engine.secrets.redactor.add(secret)
    lifetime = parse_duration(access["session"]) if access.get("session") else DEFAULT_SESSION_SECONDS
    dashboard = Dashboard(engine, tokens, secure=secure, session_seconds=lifetime)
    dashboard.install(app)
    metrics = _metrics(engine, app, tokens, None if loopback else _metrics_check(tokens, ingress_token))
    return Attached(first, dashboard, metrics, tokens.grant)


def _metrics(engine, app, tokens, check):
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        log.info("/metrics is off: install prometheus-client (pip install 'taskengine-core[metrics]')")
        return None
    from taskengine_core.ui.metrics import Metrics

    metrics = Metrics(engine)
    metrics.install(app, check)
    return metrics


def _metrics_check(tokens, ingress_token: bytes | None):
    import hmac

    def check(given: str) -> bool:
        if ingress_token is not None and hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"),
                                                             ingress_token):
            return True
        grant = tokens.grant(given)
        return grant is not None

    return check
