"""``taskengine webhooks``: webhook destinations and their delivery log."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app
from taskengine_core.cli._listing import list_kind, toggle
from taskengine_core.cli._output import emit_object, emit_rows, json_option

STATUSES = ("pending", "sending", "delivered", "failed", "exhausted")


def _summary(name: str, spec: dict) -> dict:
    return {"url": spec.get("url"), "method": spec.get("method", "POST"),
            "auth": (spec.get("auth") or {}).get("type", "none"), "signed": bool(spec.get("secret"))}


def _plugin(app: App):
    """The webhook plugin, or a clear failure when it is disabled or not installed."""
    if app.manager.pm.get_plugin("webhook") is None:
        raise click.ClickException("the webhook plugin is not loaded (not installed, or blocked "
                                   "by TASKENGINE_DISABLE_PLUGINS); see 'taskengine plugins'")
    import taskengine_webhook.manual as manual

    return manual


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def webhooks(ctx: click.Context, as_json: bool) -> None:
    """List webhook destinations (the default); deliveries, tests and redelivery."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(webhooks_list, as_json=as_json)


@webhooks.command("list")
@json_option
@pass_app
def webhooks_list(app: App, as_json: bool) -> None:
    """List webhook destinations and the tasks that use them."""
    list_kind(app, "webhook", ["name", "enabled", "method", "url", "auth", "signed", "tasks"], _summary, as_json=as_json)


@webhooks.command("deliveries")
@click.argument("name", required=False)
@click.option("--status", type=click.Choice(STATUSES), help="Only deliveries in this state.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@json_option
@pass_app
def webhooks_deliveries(app: App, name: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List deliveries (all destinations, or NAME's), newest first."""
    from taskengine_webhook.store import list_deliveries

    rows = list_deliveries(app.store().conn, name, status, limit)
    if not as_json:
        for row in rows:
            row["attempts"] = f"{row['attempts']}/{row['max_attempts']}"
            row["http"] = row["last_status_code"]
    emit_rows(rows, ["id", "webhook", "status", "type", "attempts", "http", "created_at",
                     "next_attempt_at", "last_error"], as_json=as_json, empty="no deliveries match")


@webhooks.command("delivery")
@click.argument("delivery_id")
@json_option
@pass_app
def webhooks_delivery(app: App, delivery_id: str, as_json: bool) -> None:
    """Show one delivery and every attempt (status, time, address, response excerpt, error)."""
    from taskengine_core.errors import NotFoundError
    from taskengine_webhook.store import get_delivery

    found = get_delivery(app.store().conn, delivery_id)
    if found is None:
        raise NotFoundError(f"no webhook delivery {delivery_id!r}; see 'taskengine webhooks deliveries'")
    if as_json:
        emit_object(found, as_json=True)
        return
    attempts = found.pop("attempt_log")
    found.pop("body")
    emit_object({k: v for k, v in found.items() if v not in (None, {})}, as_json=False)
    for a in attempts:
        click.echo(f"\nattempt {a['number']}: {a['outcome']}  HTTP {a['status_code'] or '-'}  "
                   f"{a['started_at']}  {a['duration'] or 0:.3f}s  {a['address'] or '-'}  "
                   f"request {a['request_id']}")
        for key in ("error", "response_excerpt", "next_attempt_at"):
            if a[key]:
                click.echo(f"  {key.replace('_', ' ')}: {a[key]}")


def _report(result, as_json: bool) -> None:
    attempt, decision = result
    out = {"delivery_id": attempt.message.id, "webhook": attempt.message.webhook,
           "outcome": "delivered" if attempt.ok else "failed", "status": decision.status,
           "attempt": attempt.number, "status_code": attempt.status_code,
           "duration": round(attempt.duration, 3), "address": attempt.address,
           "error": attempt.error, "response_excerpt": attempt.excerpt,
           "next_attempt_at": decision.next_attempt_at.isoformat() if decision.next_attempt_at else None}
    if as_json:
        emit_object(out, as_json=True)
    else:
        head = f"HTTP {attempt.status_code}" if attempt.status_code is not None else "no response"
        click.echo(f"{out['outcome']}: {head} in {attempt.duration:.3f}s "
                   f"(delivery {attempt.message.id}, attempt {attempt.number}, now {decision.status})")
        if attempt.error:
            click.echo(f"error: {attempt.error}")
        if attempt.excerpt:
            click.echo(f"response: {attempt.excerpt}")
        if decision.next_attempt_at:
            click.echo(f"next attempt at {out['next_attempt_at']} (by the running engine)")
    if not attempt.ok:
        click.get_current_context().exit(1)


@webhooks.command("test")
@click.argument("name")
@json_option
@pass_app
def webhooks_test(app: App, name: str, as_json: bool) -> None:
    """Send a test delivery to NAME now and print the outcome (exit 1 if it failed)."""
    manual = _plugin(app)
    store = app.store()
    _report(manual.send_test(manual.services(store, app.manager.hook), store, name), as_json)


@webhooks.command("redeliver")
@click.argument("delivery_id")
@json_option
@pass_app
def webhooks_redeliver(app: App, delivery_id: str, as_json: bool) -> None:
    """Send a delivery again now, with the same webhook-id; if it fails, the running engine
    retries it on the usual schedule."""
    manual = _plugin(app)
    store = app.store()
    result = manual.redeliver(manual.services(store, app.manager.hook), store, delivery_id)
    if result is None:
        click.echo(f"delivery {delivery_id} queued again; the running engine is sending it", err=True)
        return
    _report(result, as_json)


@webhooks.command("enable")
@click.argument("name")
@pass_app
def webhooks_enable(app: App, name: str) -> None:
    """Turn a destination back on (after a 410 Gone disabled it, say); its held deliveries go out."""
    toggle(app, "webhook", name, True)


@webhooks.command("disable")
@click.argument("name")
@pass_app
def webhooks_disable(app: App, name: str) -> None:
    """Hold deliveries to a destination (they wait, pending) and refuse new ones."""
    toggle(app, "webhook", name, False)
