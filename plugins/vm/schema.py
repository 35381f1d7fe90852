"""JSON Schemas of the ``vm`` settings section and of the ``vm.power`` parameters."""

from __future__ import annotations

from taskengine_core import durations

STATES = ("on", "off", "kill", "reboot", "reset", "suspend", "resume")
DEFAULT_TIMEOUT = 120.0  # seconds a graceful shutdown may take before force (or failure)
DEFAULT_POLL = {"libvirt": None, "vergeos": 60.0, "proxmox": 30.0}
MIN_VERGEOS_POLL = 30.0  # 1000 requests/hour per API key: leave room for the actions

_NAME = {"type": "string", "minLength": 1, "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
_TLS = {
    "ca_file": {"type": "string", "minLength": 1,
                "description": "PEM file of CA certificates to trust instead of the system's "
                               "(a private CA or a self-signed server certificate)"},
    "verify_tls": {"type": "boolean", "default": True,
                   "description": "check the server's certificate and name; false only with "
                                  "allow_insecure: true"},
    "allow_insecure": {"type": "boolean", "default": False,
                       "description": "confirm that verify_tls: false is meant"},
    "timeout": {**durations.SCHEMA, "title": "each HTTP request's timeout (default 30s)"},
    "poll_interval": {**durations.SCHEMA,
                      "title": "how often the event source lists the VMs (VergeOS: at least 30s)"},
}

LIBVIRT_HOST = {
    "type": "object",
    "required": ["type", "uri"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "libvirt"},
        "uri": {"type": "string", "minLength": 1,
                "description": "libvirt connection URI: qemu:///system, qemu+ssh://root@kvm1/system, "
                               "test:///path/node.xml"},
        "description": {"type": "string"},
    },
}

VERGEOS_HOST = {
    "type": "object",
    "required": ["type", "url", "auth"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "vergeos"},
        "url": {"type": "string", "pattern": r"^https://[^\s/]+"},
        "auth": {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["bearer", "basic"]},
                "token": {"type": "string", "description": "API key, a ${env:...} reference"},
                "username": {"type": "string"},
                "password": {"type": "string", "description": "a ${env:...} reference"},
            },
            "allOf": [
                {"if": {"properties": {"type": {"const": "bearer"}}}, "then": {"required": ["token"]}},
                {"if": {"properties": {"type": {"const": "basic"}}},
                 "then": {"required": ["username", "password"]}},
            ],
        },
        "description": {"type": "string"},
        **_TLS,
    },
}

PROXMOX_HOST = {
    "type": "object",
    "required": ["type", "url", "token_id", "token"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "proxmox"},
        "url": {"type": "string", "pattern": r"^https://[^\s/]+"},
        "token_id": {"type": "string", "pattern": r"^[^\s=!]+@[^\s=!]+![^\s=]+$",
                     "description": "API token id, USER@REALM!TOKENID"},
        "token": {"type": "string", "description": "the token's secret, a ${env:...} reference"},
        "description": {"type": "string"},
        **_TLS,
    },
}

SETTINGS_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "settings.vm",
    "description": "Hypervisors vm.power acts on and the VM event source watches.",
    "type": "object",
    "required": ["hosts"],
    "additionalProperties": False,
    "properties": {
        "default": {**_NAME, "description": "the host of tasks without 'host' (optional with "
                                            "one host)"},
        "hosts": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
            "additionalProperties": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": ["libvirt", "vergeos", "proxmox"]}},
                "allOf": [
                    {"if": {"properties": {"type": {"const": "libvirt"}}}, "then": LIBVIRT_HOST},
                    {"if": {"properties": {"type": {"const": "vergeos"}}}, "then": VERGEOS_HOST},
                    {"if": {"properties": {"type": {"const": "proxmox"}}}, "then": PROXMOX_HOST},
                ],
            },
        },
        "events": {"type": "boolean", "default": True,
                   "description": "false: do not run the VM event source"},
    },
}

_TARGET_NAMES = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ],
}

PARAMS_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "vm.power parameters",
    "description": "Bring VMs (or a VergeOS tenant) to a power state. Give one of vm, tag or "
                   "tenant. A VM already in the state is left alone (changed: false).",
    "type": "object",
    "required": ["state"],
    "additionalProperties": False,
    "oneOf": [{"required": ["vm"]}, {"required": ["tag"]}, {"required": ["tenant"]}],
    "properties": {
        "vm": {**_TARGET_NAMES,
               "description": "a VM name, a glob such as gpu-*, or a list of them"},
        "tag": {"type": "string", "minLength": 1,
                "description": "every VM carrying this tag (libvirt: our domain metadata)"},
        "tenant": {**_TARGET_NAMES, "description": "VergeOS tenant name(s) or glob(s)"},
        "exact": {"type": "boolean", "default": False,
                  "description": "names are literal, never globs: use it when a name comes from "
                                 "event data ({{ event.data.vm }}), so a '*' there cannot select "
                                 "every VM"},
        "host": {"type": "string", "minLength": 1, "x-taskengine-ref": "settings.vm.hosts",
                 "description": "a host of settings.vm.hosts; default: settings.vm.default"},
        "state": {"enum": list(STATES),
                  "description": "on, off (graceful, then force or fail), kill (immediate), "
                                 "reboot (graceful), reset (hard), suspend, resume"},
        "timeout": {**durations.SCHEMA,
                    "title": "how long a graceful shutdown or state change may take (default 2m)"},
        "force": {"type": "boolean", "default": False,
                  "description": "off: destroy a VM still running after the timeout"},
    },
}
