"""JSON Schemas of the ``file.append`` parameters and of ``settings.file``."""

from __future__ import annotations

PARAMS_SCHEMA: dict = {
    "type": "object",
    "required": ["path", "line"],
    "additionalProperties": False,
    "properties": {
        "path": {"type": "string", "minLength": 1,
                 "description": "the file; relative paths are relative to settings.file.directory"},
        "line": {"type": "string",
                 "description": "the text to append (a template); line breaks in it are written "
                                "as \\n, so one run always adds exactly one line"},
        "create_dirs": {"type": "boolean", "default": False,
                        "description": "create missing parent directories"},
    },
}

SETTINGS_SCHEMA: dict = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "directory": {"type": "string", "minLength": 1,
                      "description": "an absolute directory: relative paths resolve against it "
                                     "and no path may leave it (templated paths included)"},
    },
}
