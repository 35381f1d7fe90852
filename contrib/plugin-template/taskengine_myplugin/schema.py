"""JSON Schemas: the parameters of ``myplugin.hello`` and the ``settings.myplugin`` section.

``taskengine validate`` checks rule files against them (with file:line:column in the errors),
the worker checks the rendered parameters again before each run, and ``taskengine schema``
publishes them for editors. Describe every property: docs/rule-reference.md-style references
are generated from these descriptions.
"""

from __future__ import annotations

PARAMS_SCHEMA: dict = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "description": "who to greet (a template, e.g. {{ event.data.user }})"},
        "greeting": {"type": "string", "description": "overrides settings.myplugin.greeting"},
    },
}

SETTINGS_SCHEMA: dict = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "greeting": {"type": "string", "default": "Hello", "description": "the default greeting"},
    },
}
