"""Built-in plugin: ``email.send`` and the ``email`` notifier, over SMTP as ``settings.email``
configures it (STARTTLS, implicit TLS or plain; optional AUTH).

Each run sends a Message-ID derived from its id (``<run-id.taskengine@sender-domain>``), the
same on every attempt, so a retried send is recognisably the same message. SMTP errors are
classified: 5xx fails at once, 4xx and connection problems are retried per the task's policy.
"""

from __future__ import annotations

from taskengine_core.hookspecs import hookimpl

from .schema import PARAMS_SCHEMA, SETTINGS_SCHEMA

# The sending code (smtplib, email, jsonschema) is imported inside the hooks: loading this
# module must stay cheap, because every CLI start loads every plugin.
__all__ = ["PARAMS_SCHEMA", "SETTINGS_SCHEMA", "register_actions", "register_notifiers",
           "register_settings"]


@hookimpl
def register_settings(register) -> None:
    register("email", SETTINGS_SCHEMA,
             description="SMTP server for email.send and the email notifier")


@hookimpl
def register_actions(register) -> None:
    from .action import send_email

    register(
        "email.send",
        send_email,
        schema=PARAMS_SCHEMA,
        description="Send an email (text, optional HTML) through settings.email.",
        # a crash between the server's 250 and our record would resend; the stable
        # Message-ID lets receivers spot that, but re-running is still the operator's call
        idempotent=False,
    )


@hookimpl
def register_notifiers(register) -> None:
    from .action import notify

    register("email", notify, schema=SETTINGS_SCHEMA,
             description="Email a person through settings.email.")
