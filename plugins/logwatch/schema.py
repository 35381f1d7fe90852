"""The ``settings.logwatch`` section: files to follow, the journal, and how."""

from __future__ import annotations

from taskengine_core.event_types import TYPE_PATTERN

DEFAULT_MAX_LINE = 8192
DEFAULT_POLL = 0.25

# the names of patterns.BUNDLES (a test keeps them equal): the schema is built on every CLI
# start, the bundles (RE2 and their patterns) only when logs are watched or rules checked
BUNDLE_NAMES = ("pam", "sshd", "useradd")
_BUNDLE_NAMES = {"type": "array", "uniqueItems": True, "items": {"enum": sorted(BUNDLE_NAMES)},
                 "description": "built-in pattern bundles: " + ", ".join(sorted(BUNDLE_NAMES))}
RULE_SCHEMA = {
    "type": "object",
    "required": ["match", "event"],
    "additionalProperties": False,
    "properties": {
        "match": {"type": "string", "minLength": 1,
                  "description": "RE2 regex matched against the whole line; named groups "
                                 "(?P<name>...) become event data"},
        "event": {"type": "string", "pattern": TYPE_PATTERN, "maxLength": 200,
                  "description": "the type of the event a matching line emits"},
        "fields": {"type": "array", "uniqueItems": True,
                   "items": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                   "description": "named groups the regex must have (checked by validate)"},
        "data": {"type": "object", "description": "fixed data added to each event"},
    },
}
_RULES = {"type": "array", "items": RULE_SCHEMA}
_FROM = {"enum": ["end", "start"], "default": "end",
         "description": "where to begin the first time: the end (default) or the start"}
_MAX_LINE = {"type": "integer", "minimum": 256, "maximum": 1 << 20,
             "description": f"longer lines are cut to this many bytes (default {DEFAULT_MAX_LINE})"}

FILE_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "additionalProperties": False,
    "properties": {
        "path": {"type": "string", "pattern": "^/", "description": "absolute path of the log file"},
        "patterns": _BUNDLE_NAMES,
        "rules": _RULES,
        "from": _FROM,
        "max_line": _MAX_LINE,
    },
    "anyOf": [{"required": ["patterns"]}, {"required": ["rules"]}],
}
JOURNAL_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "match": {"type": "object", "description": "journal fields to match, e.g. {_SYSTEMD_UNIT: ssh.service}",
                  "propertyNames": {"pattern": "^[A-Z0-9_]+$"},
                  "additionalProperties": {"oneOf": [
                      {"type": "string"},
                      {"type": "array", "items": {"type": "string"}, "minItems": 1}]}},
        "patterns": _BUNDLE_NAMES,
        "rules": _RULES,
        "from": _FROM,
        "directory": {"type": "string", "pattern": "^/",
                      "description": "read journal files from this directory (journalctl -D)"},
        "journalctl": {"type": "string", "description": "the journalctl program (default: journalctl)"},
        "max_line": _MAX_LINE,
    },
    "anyOf": [{"required": ["patterns"]}, {"required": ["rules"]}],
}
SETTINGS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "files": {"type": "array", "items": FILE_SCHEMA},
        "journal": JOURNAL_SCHEMA,
        "poll": {"type": "number", "minimum": 0.05, "maximum": 10,
                 "description": f"seconds between looks at the files when no change woke the source "
                                f"(default {DEFAULT_POLL})"},
        "group_file": {"type": "string", "pattern": "^/",
                       "description": "group names for useradd's GIDs (default /etc/group)"},
    },
}
