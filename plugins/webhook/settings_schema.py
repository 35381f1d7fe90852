"""The ``settings.webhook`` section's schema: the plugin registers it on every CLI start, so it
lives apart from the settings' reading (:mod:`.config`), imported when deliveries are made."""

from __future__ import annotations

from taskengine_core.durations import SCHEMA as DURATION

DEFAULT_CONCURRENCY = 32

_CIDRS = {"type": "array", "items": {"type": "string", "minLength": 1}}
SETTINGS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "description": "webhook deliveries: egress control, concurrency, retry schedule, processes",
    "properties": {
        "deny": {**_CIDRS, "description": "extra networks (CIDR) never connected to; "
                 "169.254.0.0/16 and fe80::/10 are always denied"},
        "allow": {**_CIDRS, "description": "networks (CIDR) allowed even when a deny list "
                  "covers them"},
        "concurrency": {"type": "integer", "minimum": 1, "maximum": 1024,
                        "description": f"requests in flight per destination (default {DEFAULT_CONCURRENCY})"},
        "processes": {"type": "integer", "minimum": 0, "maximum": 64,
                      "description": "dispatchers in processes of their own, each on another core "
                                     "(default 0: the dispatcher runs in the engine's process)"},
        "backoff": {**DURATION, "title": "wait before the first retry (default 5s); x6 per retry"},
        "max_backoff": {**DURATION, "title": "longest wait between two attempts (default 10h)"},
    },
}
