"""JSON Schemas of the ``email`` settings section and of the ``email.send`` parameters."""

from __future__ import annotations

SECURITY_MODES = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
DEFAULT_TIMEOUT = 30.0

_ADDRESS = {"type": "string", "minLength": 3, "pattern": r"^[^@\s]+@[^@\s]+$"}
_RECIPIENTS = {
    "description": "a list of addresses, or one string of addresses separated by ';' "
                   "('Name <a@example.com>' forms allowed)",
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string", "minLength": 1}},
    ],
}

SETTINGS_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "settings.email",
    "description": "The SMTP server that email.send and the email notifier use.",
    "type": "object",
    "required": ["host", "sender"],
    "additionalProperties": False,
    "properties": {
        "host": {"type": "string", "minLength": 1, "description": "SMTP server name or address"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535,
                 "description": "default: 587 for starttls, 465 for ssl, 25 for none"},
        "security": {"enum": list(SECURITY_MODES), "default": "starttls",
                     "description": "starttls: upgrade a plain connection (required, not "
                                    "opportunistic); ssl: TLS from the first byte; none: plain"},
        "username": {"type": "string", "minLength": 1,
                     "description": "log in (AUTH) when set"},
        "password": {"type": "string",
                     "description": "a secret reference such as ${env:SMTP_PASSWORD}"},
        "sender": {**_ADDRESS, "description": "the From address and envelope sender"},
        "sender_name": {"type": "string", "description": "display name in From"},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": DEFAULT_TIMEOUT,
                    "description": "seconds for each network operation; the task's own "
                                   "timeout applies too (the smaller wins)"},
        "verify_tls": {"type": "boolean", "default": True,
                       "description": "check the server's certificate and name"},
        "ca_file": {"type": "string", "minLength": 1,
                    "description": "PEM file of CA certificates to trust instead of the "
                                   "system's (a private or self-signed server)"},
        "helo": {"type": "string", "minLength": 1,
                 "description": "name sent in EHLO/HELO; default: this host's FQDN"},
    },
}

PARAMS_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "email.send parameters",
    "description": "Send one email through settings.email. Strings are templates over the "
                   "event and run. At least one recipient in to, cc or bcc.",
    "type": "object",
    "required": ["subject", "text"],
    "additionalProperties": False,
    "anyOf": [{"required": ["to"]}, {"required": ["cc"]}, {"required": ["bcc"]}],
    "properties": {
        "to": _RECIPIENTS,
        "cc": _RECIPIENTS,
        "bcc": {**_RECIPIENTS, "description": "envelope recipients not shown in the headers"},
        "subject": {"type": "string"},
        "text": {"type": "string", "description": "the plain-text body"},
        "html": {"type": "string",
                 "description": "an HTML body; the message becomes multipart/alternative"},
        "reply_to": _RECIPIENTS,
        "headers": {
            "type": "object",
            "description": "extra headers (X-Priority, List-Unsubscribe, ...); the headers "
                           "the action sets itself cannot be replaced",
            "propertyNames": {"pattern": "^[!-9;-~]+$"},
            "additionalProperties": {"type": "string"},
        },
    },
}
