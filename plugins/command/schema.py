"""The ``command.run`` action's parameters: imported by the plugin on every start, so it holds
the schema alone (running a command needs :mod:`.action`, imported on first use)."""

from __future__ import annotations

DEFAULT_MAX_OUTPUT = 64 * 1024

SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "command.run parameters",
    "description": (
        "Run a program. Give exactly one of 'argv' (a list, run without a shell) or 'shell' "
        "(a string, run with /bin/sh -c)."
    ),
    "type": "object",
    "properties": {
        "argv": {
            "description": "Program and arguments, run directly "
                           "(no shell: ';', '|', '$' are literal). A templated argument may not "
                           "start with '-' unless a literal '--' comes before it.",
            "x-taskengine-template": "argv",
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
        },
        "shell": {
            "description": "A command line run by /bin/sh -c. Only used when given explicitly. "
                           "Template values are quoted for where they stand, or refused where "
                           "no quoting keeps them data (the command name, $(...), ...).",
            "x-taskengine-template": "shell",
            "type": "string",
            "minLength": 1,
        },
        "env": {
            "description": "Environment variables added to the engine's environment.",
            "type": "object",
            "propertyNames": {"pattern": "^[^=\\x00]+$"},
            "additionalProperties": {"type": "string"},
        },
        "inherit_env": {
            "description": "false: the command sees only 'env' (no PATH unless you set it).",
            "type": "boolean",
            "default": True,
        },
        "cwd": {"description": "Working directory.", "type": "string", "minLength": 1},
        "timeout": {
            "description": "Seconds before the process group is killed; the task's own "
                           "timeout applies too (the smaller wins).",
            "type": "number",
            "exclusiveMinimum": 0,
        },
        "stdin": {"description": "Text written to the command's standard input.", "type": "string"},
        "max_output": {
            "description": "Bytes kept of stdout and of stderr each: the LAST bytes are kept.",
            "type": "integer",
            "minimum": 0,
            "maximum": 16 * 1024 * 1024,
            "default": DEFAULT_MAX_OUTPUT,
        },
        "ok_exit_codes": {
            "description": "Exit codes that count as success.",
            "type": "array",
            "items": {"type": "integer"},
            "minItems": 1,
            "default": [0],
        },
    },
    "oneOf": [{"required": ["argv"]}, {"required": ["shell"]}],
    "additionalProperties": False,
}
