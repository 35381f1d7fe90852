"""Parameters of ``user.disable``/``user.enable`` and the ``settings.user`` section."""

from __future__ import annotations

BACKENDS = ("linux", "vergeos")

PARAMS_SCHEMA = {
    "type": "object",
    "required": ["user"],
    "additionalProperties": False,
    "properties": {
        "user": {"type": "string", "minLength": 1, "maxLength": 64,
                 "description": "the user name, e.g. '{{ event.data.user }}'"},
        "backend": {"enum": list(BACKENDS), "description": "default: settings.user.backend, else linux"},
        "allow_system": {"type": "boolean", "default": False,
                         "description": "allow uid under 1000, root and VergeOS's admin"},
    },
}

SETTINGS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "backend": {"enum": list(BACKENDS), "default": "linux"},
        "root": {"type": "string", "pattern": "^/", "default": "/",
                 "description": "linux: the directory holding etc/passwd and etc/shadow "
                                "(usermod --root); / is this machine"},
        "usermod": {"type": "string", "default": "usermod", "description": "linux: the usermod program"},
        "vergeos": {
            "type": "object",
            "required": ["url"],
            "additionalProperties": False,
            "properties": {
                "url": {"type": "string", "pattern": r"^https?://[^\s/]+",
                        "description": "the VergeOS system, e.g. https://verge.example.com"},
                "token": {"type": "string", "description": "API key (a ${env:...} reference)"},
                "username": {"type": "string"},
                "password": {"type": "string", "description": "a ${env:...} reference"},
                "verify_tls": {"type": "boolean", "default": True},
                "ca_file": {"type": "string", "description": "CA bundle to verify the system's certificate"},
                "allow_insecure": {"type": "boolean", "default": False,
                                   "description": "allow http:// (the API key travels in clear text)"},
                "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 600, "default": 30},
            },
        },
    },
}
