"""The parameters of ``webhook.send``: a module of its own so that registering the action does
not import the dispatcher's machinery (aiohttp and the rest)."""

SCHEMA = {
    "type": "object",
    "required": ["webhook"],
    "additionalProperties": False,
    "description": "a webhook, and either a payload (JSON data) or a body (text), not both",
    "properties": {
        "webhook": {"type": "string", "x-taskengine-ref": "webhooks",
                    "description": "the destination, a name from the webhooks section"},
        "payload": {"description": "JSON data to send; its strings are templates"},
        "body": {"type": "string", "description": "raw body text (a template)"},
        "content_type": {"type": "string", "minLength": 1,
                         "description": "Content-Type of the body (default application/json "
                                        "for payload, text/plain for body)"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "extra request headers (no credentials: put those on the "
                                   "destination)"},
    },
    "anyOf": [{"not": {"required": ["payload", "body"]}}],
}
