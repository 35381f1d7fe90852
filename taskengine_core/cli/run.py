"""``taskengine run``: the engine in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading

import click

from taskengine_core.cli._app import App, pass_app


@click.command()
@click.option("--rules", "rules", multiple=True, type=click.Path(), metavar="PATH",
              help="Apply these rule files (or directories) before starting; repeatable.")
@click.option("--listen", metavar="HOST:PORT",
              help="Serve the HTTP ingress (POST /events, GET /healthz) [default: settings.ingress.listen].")
@click.option("--workers", type=click.IntRange(1, 256), help="Worker threads [default: settings.workers or 16].")
@click.option("--ui/--no-ui", "ui", default=True, show_default=True,
              help="Serve the web dashboard at /ui and /metrics on the --listen address.")
@click.option("--grace", default=30.0, show_default=True, help="Seconds in-flight runs get to finish on SIGTERM.")
@pass_app
def run(app: App, rules: tuple[str, ...], listen: str | None, workers: int | None, ui: bool,
        grace: float) -> None:
    """Run the engine: evaluate events, run due tasks, serve the ingress and event sources.
    'taskengine apply' while it runs takes effect without a restart."""
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.rules.validate import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = app.store(create=True)
    if rules:
        result = apply_config(store, load_config(rules, app.registry), source=" ".join(rules))
        for change in result.changes:
            click.echo(change.describe(), err=True)
        click.echo(result.summary(), err=True)
    engine = Engine(app.target, manager=app.manager, workers=workers)
    from taskengine_core.secrets import RedactingFilter

    for handler in logging.getLogger().handlers:  # what the engine logs never shows a secret
        handler.addFilter(RedactingFilter(engine.secrets.redactor))
    listen = listen or (engine.runtime.settings.get("ingress") or {}).get("listen")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine.start(listen=listen, ui=ui)
    where = f", ingress on http://{engine.ingress.address}" if engine.ingress else ""
    click.echo(f"taskengine running on {store.path}{where}; Ctrl-C to stop", err=True)
    attached = engine.ingress.attached if engine.ingress else None
    if attached is not None:
        click.echo(f"dashboard: http://{engine.ingress.address}/ui", err=True)
        if attached.first_token:
            click.echo(f"sign in with the token {attached.first_token} (made for this start; name your "
                       "own in settings.access.tokens to keep one)", err=True)
    while not stop.wait(1.0):
        pass
    click.echo(f"stopping: in-flight runs get {grace:g}s to finish", err=True)
    engine.stop(grace)
    click.echo("stopped", err=True)
