"""Built-in plugin: webhooks. Signed, retried, logged deliveries to HTTP endpoints.

* ``webhook.send`` (:mod:`.action`) queues a delivery in the engine's database and returns its
  id; it never waits for the network.
* A dispatcher (:mod:`.dispatcher`), started with the engine, sends queued deliveries with a
  bounded number of requests in flight per destination, signs them per Standard Webhooks
  (:mod:`.signing`), refuses link-local and cloud-metadata addresses (:mod:`.egress`), and
  stores every attempt (:mod:`.store`). Only 2xx is success; redirects are never followed; 410
  disables the destination; 429 and 503 honour ``Retry-After``; other failures are retried on
  the schedule in :mod:`.retry`. A delivery that runs out of attempts is ``exhausted`` and a
  ``webhook.exhausted`` event is emitted; one that cannot succeed (410, egress refused, bad
  signing secret, destination deleted) is ``failed`` with a ``webhook.failed`` event. Both
  events carry ``delivery_id``, ``webhook``, ``status``, ``attempts``, ``status_code``,
  ``error``, ``task``, ``run_id`` and ``event_id`` in their data, so a rule can tell someone.
* ``settings.webhook`` (:mod:`.config`): ``deny`` / ``allow`` networks, ``concurrency`` per
  destination, ``backoff`` and ``max_backoff``.
* The CLI: ``taskengine webhooks deliveries | delivery ID | redeliver ID | test NAME |
  enable NAME | disable NAME``.
"""

from __future__ import annotations

from taskengine_core.hookspecs import hookimpl
from taskengine_core.on_first_call import on_first_call

from .settings_schema import SETTINGS_SCHEMA

__all__ = ["SCHEMA", "SETTINGS_SCHEMA", "enqueue", "send"]


def __getattr__(name: str):
    # The action module pulls in the store and the dispatcher's machinery; load it on first use
    # so that importing the plugin (every CLI start does) stays cheap.
    if name == "SCHEMA":
        from .params import SCHEMA

        return SCHEMA
    if name in ("enqueue", "send"):
        from . import action

        return getattr(action, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_send = on_first_call(f"{__name__}.action", "send",
                      "Queue a webhook delivery: signed, retried and logged by the dispatcher.")


@hookimpl
def register_actions(register) -> None:
    from .params import SCHEMA

    register("webhook.send", _send, schema=SCHEMA,
             description="Queue a signed, retried, logged delivery to a webhook destination.",
             idempotent=True)  # the delivery id comes from the run: a re-run queues nothing new


@hookimpl
def register_settings(register) -> None:
    register("webhook", SETTINGS_SCHEMA,
             description="Webhook deliveries: egress deny/allow networks, concurrency, retries.")


@hookimpl
def engine_started(engine) -> None:
    from .running import start_for

    start_for(engine)


@hookimpl
def engine_stopping(engine) -> None:
    from .running import stop_for

    stop_for(engine)
