"""The ``email.send`` action and the ``email`` notifier: both check settings and parameters,
build the message and hand it to ``smtp.deliver``.

Partial refusal: when the server accepts the message for some recipients and refuses others,
the send succeeds (sending again would duplicate it for those who got it); the refused
recipients and the server's replies are in the output's ``refused`` and logged as a warning.
When every recipient is refused nothing was sent, and the run fails (retryable only if one of
the refusals was a temporary 4xx).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from taskengine_core.errors import ActionError

from .schema import PARAMS_SCHEMA, SETTINGS_SCHEMA

if TYPE_CHECKING:  # registration imports this module on every CLI start: the context is not needed
    from taskengine_core.context import ActionContext

# .message and .smtp (the email package, smtplib, ssl) are imported when a message is sent:
# every CLI command loads this plugin to register its action, few of them send mail

log = logging.getLogger("taskengine.email")
MISSING_SETTINGS = ("{what} needs settings.email (host, sender): add an 'email' section to the "
                    "settings block of a rule file; 'taskengine schema' lists its fields")

_validators: dict = {}  # schema title -> jsonschema validator, made on first use


def send_email(params: dict, ctx: ActionContext) -> dict:
    """Send one email through ``settings.email``.

    Returns ``{"message_id", "accepted": [addresses], "refused": {address: "550 reason"}}``.
    The Message-ID is derived from the run, so every attempt of one run sends the same one.
    """
    server, sender, sender_name = _settings(ctx.settings, "email.send")
    _check(params, PARAMS_SCHEMA, "email.send")
    if ctx.cancelled.is_set():
        raise ActionError("email not sent: the run was cancelled", retryable=False)
    timeout = server.timeout
    left = ctx.time_left()
    if left is not None:
        if left <= 0:
            raise ActionError("email not sent: the task's time limit has passed", retryable=True)
        timeout = min(timeout, left)
    from .message import message_id

    return _send(server, params, sender, sender_name, message_id(ctx.run_id, sender), timeout)


def notify(message: dict, settings: dict) -> dict:
    """The ``email`` notifier: ``message`` has ``subject``, ``text`` and ``to`` (optionally
    ``cc``, ``bcc``, ``html``, ``reply_to``, ``headers``, and ``run_id`` for a stable
    Message-ID); other keys are ignored. Same output and errors as ``email.send``."""
    server, sender, sender_name = _settings(settings, "the email notifier")
    if not isinstance(message, dict):
        raise ActionError(f"the email notifier needs a dict message, got {type(message).__name__}",
                          retryable=False)
    params = {k: v for k, v in message.items() if k in PARAMS_SCHEMA["properties"]}
    _check(params, PARAMS_SCHEMA, "the email notifier")
    run_id = str(message.get("run_id") or f"notify-{uuid.uuid4().hex}")
    from .message import message_id

    return _send(server, params, sender, sender_name, message_id(run_id, sender), server.timeout)


def _send(server, params: dict, sender: str, sender_name: str | None, msg_id: str,
          timeout: float) -> dict:
    from .message import build_message
    from .smtp import deliver

    msg, envelope = build_message(params, sender=sender, sender_name=sender_name, msg_id=msg_id)
    refused = deliver(server, msg, sender, envelope, timeout)
    if refused:
        log.warning("email %s: SMTP server %s refused %s; sent to the others", msg_id,
                    server.where, "; ".join(f"{a}: {r}" for a, r in refused.items()))
    lowered = {a.lower() for a in refused}
    return {"message_id": msg_id,
            "accepted": [a for a in envelope if a.lower() not in lowered],
            "refused": refused}


def _settings(settings: Any, what: str) -> tuple:
    if not settings:
        raise ActionError(MISSING_SETTINGS.format(what=what), retryable=False)
    _check(settings, SETTINGS_SCHEMA, "settings.email", hide_values=True)
    from .smtp import Server

    return Server.from_settings(settings), settings["sender"], settings.get("sender_name")


def _check(data: Any, schema: dict, where: str, *, hide_values: bool = False) -> None:
    """The engine validates parameters and settings before calling; this keeps direct callers
    (other plugins using the notifier) honest too."""
    title = schema["title"]
    if title not in _validators:
        from jsonschema import Draft202012Validator

        _validators[title] = Draft202012Validator(schema)
    errors = list(_validators[title].iter_errors(data))
    if not errors:
        return
    from jsonschema.exceptions import best_match

    error = best_match(errors)
    path = ".".join(str(p) for p in error.absolute_path)
    if hide_values and error.validator not in ("required", "additionalProperties"):
        detail = f"does not match the schema ({error.validator}: {error.validator_value!r})"
    else:
        detail = error.message
    raise ActionError(f"{where}{'.' + path if path else ''}: {detail}", retryable=False)
