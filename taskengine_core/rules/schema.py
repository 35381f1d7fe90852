"""The JSON Schema of rule files: the core's sections plus every plugin's parameter schemas."""

from __future__ import annotations

import copy

from taskengine_core import durations
from taskengine_core.holds import BLACKOUT_SCHEMA
from taskengine_core.notify import SCHEMA as NOTIFY_SCHEMA
from taskengine_core.registry import Registry

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
SECTIONS = ("settings", "schedules", "webhooks", "tasks", "events")
# A parameter schema may mark a string property as naming an object of another section.
REF_KEYWORD = "x-taskengine-ref"
CONCURRENCY_POLICIES = ("parallel", "queue", "skip", "replace")
DEFAULT_CONCURRENCY = "queue"

DURATION = durations.SCHEMA
NAMES = {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}, "uniqueItems": True}

TASK_SCHEMA = {
    "type": "object",
    "required": ["action"],
    "additionalProperties": False,
    "properties": {
        "action": {"type": "string", "description": "the action to run, e.g. command.run"},
        "with": {"type": "object", "description": "the action's parameters (templates allowed)"},
        "description": {"type": "string"},
        "enabled": {"type": "boolean", "default": True},
        "schedules": {**NAMES, "description": "schedules that fire this task"},
        "events": {**NAMES, "description": "event rules that fire this task"},
        "timeout": {**DURATION, "title": "the longest one attempt may run"},
        "retry": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "attempts": {"type": "integer", "minimum": 1, "maximum": 100,
                             "description": "attempts in all, the first included"},
                "backoff": {**DURATION, "title": "wait before the second attempt; doubles each time"},
                "max_backoff": DURATION,
                "jitter": {"type": "boolean", "default": True},
            },
        },
        "concurrency": {
            "enum": list(CONCURRENCY_POLICIES),
            "default": DEFAULT_CONCURRENCY,
            "description": "what happens when the task is triggered while a run is in progress",
        },
        "delete_after_run": {"type": "boolean", "default": False},
        "notify": NOTIFY_SCHEMA,
        "tags": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True,
                 "description": "labels; settings.blackouts can hold tasks by tag"},
    },
}

WEBHOOK_SCHEMA = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "pattern": r"^https?://[^\s/]+"},
        "method": {"enum": ["POST", "PUT", "PATCH"], "default": "POST"},
        "description": {"type": "string"},
        "enabled": {"type": "boolean", "default": True},
        "auth": {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["none", "basic", "bearer", "apikey"]},
                "username": {"type": "string"},
                "password": {"type": "string"},
                "token": {"type": "string"},
                "header": {"type": "string"},
                "key": {"type": "string"},
            },
            "allOf": [
                {"if": {"properties": {"type": {"const": "basic"}}},
                 "then": {"required": ["username", "password"]}},
                {"if": {"properties": {"type": {"const": "bearer"}}}, "then": {"required": ["token"]}},
                {"if": {"properties": {"type": {"const": "apikey"}}},
                 "then": {"required": ["header", "key"]}},
            ],
        },
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "timeout": DURATION,
        "retries": {"type": "integer", "minimum": 0, "maximum": 100},
        "verify_tls": {"type": "boolean", "default": True},
        "allow_insecure": {"type": "boolean", "default": False},
        "secret": {"type": "string", "description": "signing secret (whsec_...), a ${env:...} reference"},
    },
}


def event_rule_schema() -> dict:
    from taskengine_core.conditions import CONDITION_SCHEMA

    on_item = {"type": "string", "minLength": 1}
    condition = {k: v for k, v in CONDITION_SCHEMA.items() if k not in ("$schema", "$defs")}
    return {
        "$defs": CONDITION_SCHEMA.get("$defs", {}),
        "type": "object",
        "required": ["on"],
        "additionalProperties": False,
        "properties": {
            "on": {"oneOf": [on_item, {"type": "array", "items": on_item, "minItems": 1}],
                   "description": "event type, glob (sync.*) or list of them"},
            "when": condition,
            "delay": {**DURATION, "title": "run the tasks this long after the event"},
            "throttle": {
                "type": "object",
                "required": ["window"],
                "additionalProperties": False,
                "properties": {
                    "window": DURATION,
                    "key": {"type": "array", "items": {"type": "string"}},
                },
            },
            "tasks": NAMES,
            "description": {"type": "string"},
            "enabled": {"type": "boolean", "default": True},
        },
    }


def core_settings_properties() -> dict:
    return {
        "timezone": {"type": "string", "description": "default IANA time zone of schedules"},
        "retention": {**DURATION, "title": "how long finished runs and events are kept"},
        "workers": {"type": "integer", "minimum": 1, "maximum": 256},
        "blackouts": BLACKOUT_SCHEMA,
        "ingress": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "token": {"type": "string"},
                "listen": {"type": "string"},
                "max_body": {"type": "integer", "minimum": 1},
                "rate": {"type": "number", "exclusiveMinimum": 0,
                         "description": "events per second accepted before 429"},
                "max_connections": {"type": "integer", "minimum": 1, "maximum": 100000,
                                    "description": "open connections at most (default: a quarter "
                                                   "of the open-file limit, at most 256)"},
                "header_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                                   "description": "seconds a connection may take to send a request head"},
                "body_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                                 "description": "seconds a request may take to send its body"},
                "stall_after": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400,
                                "description": "seconds without a completed engine loop step, while "
                                               "work waits, before /healthz reports a stall"},
            },
        },
        "access": {
            "type": "object",
            "additionalProperties": False,
            "description": "who may use the dashboard (/ui), /metrics and POST /events",
            "properties": {
                "tokens": {
                    "type": "object",
                    "propertyNames": {"pattern": NAME_PATTERN},
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["token", "role"],
                        "properties": {
                            "token": {"type": "string", "minLength": 1,
                                      "description": "a secret reference such as ${env:OPS_UI_TOKEN}"},
                            "role": {"enum": ["viewer", "operator", "admin", "emit"],
                                     "description": "viewer reads; operator also runs, toggles and "
                                                    "redelivers; admin also pauses; emit only posts events"},
                        },
                    },
                },
                "session": {**DURATION, "title": "how long a dashboard sign-in lasts (default 8h)"},
            },
        },
    }


def section_schemas(registry: Registry) -> dict[str, dict]:
    """The schema of one object of each named section (settings: the whole block)."""
    return {section: section_schema(registry, section) for section in SECTIONS}


def section_schema(registry: Registry, section: str) -> dict:
    """The schema of one object of ``section`` (settings: the whole block)."""
    if section == "settings":
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                **core_settings_properties(),
                # an event source reads the settings section named after it
                **{name: item.schema for name, item in sorted(registry.triggers.items())},
                **{name: item.schema for name, item in sorted(registry.settings.items())},
            },
        }
    if section == "schedules":
        from taskengine_core.recurrence import SCHEDULE_SCHEMA

        return SCHEDULE_SCHEMA
    if section == "events":
        return event_rule_schema()
    return {"webhooks": WEBHOOK_SCHEMA, "tasks": TASK_SCHEMA}[section]


class SectionChecks(dict):
    """``{section: SchemaCheck}``, each made on first use: checking one changed schedule needs
    neither the event rules' schema (conditions, RE2) nor the settings' one."""

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry

    def __missing__(self, section: str):
        from taskengine_core.rules.schema_check import SchemaCheck

        if section not in SECTIONS:
            raise KeyError(section)
        check = self[section] = SchemaCheck(section_schema(self.registry, section))
        return check


def rule_file_schema(registry: Registry) -> dict:
    """One JSON Schema for a whole rule file, for ``taskengine schema`` and editors."""
    sections = copy.deepcopy(section_schemas(registry))
    defs: dict = {}
    for section in sections.values():  # references like #/$defs/condition resolve at the root
        defs.update(section.pop("$defs", {}))
    task = sections["tasks"]
    task["properties"]["action"]["enum"] = sorted(registry.actions)
    task["allOf"] = [
        {"if": {"properties": {"action": {"const": name}}},
         "then": {"properties": {"with": item.schema}}}
        for name, item in sorted(registry.actions.items())
    ]

    def named(obj: dict) -> dict:
        return {"type": "object", "propertyNames": {"pattern": NAME_PATTERN},
                "additionalProperties": obj}

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://taskengine.dev/schema/rules.json",
        "title": "taskengine rule file",
        "$defs": defs,
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "settings": sections["settings"],
            "schedules": named(sections["schedules"]),
            "webhooks": named(sections["webhooks"]),
            "tasks": named(task),
            "events": named(sections["events"]),
        },
    }
