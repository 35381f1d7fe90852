"""JSON Schemas of the ``updates`` settings section and of the ``updates.*`` parameters.

A task names its ``source``; the options of that source come from ``settings.updates.<source>``
and may be overridden key by key in the task's ``with:``. So an example rule file keeps
everything machine-specific in ``settings`` and its tasks stay the same everywhere.
"""

from __future__ import annotations

SOURCES = ("apt", "pypi", "vergeos")

# PEP 508 names; never starting with '-', so a name can never become a pip option
_PYPI_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$"}

APT_OPTIONS: dict = {
    "config": {"type": "string", "minLength": 1,
               "description": "an apt configuration file, passed as APT_CONFIG (sources, "
                              "state, cache and log directories); default: the system's"},
    "upgrade": {"enum": ["upgrade", "dist-upgrade"], "default": "upgrade",
                "description": "upgrade keeps back upgrades that need new or removed "
                               "packages; dist-upgrade does not"},
    "refresh": {"type": "boolean",
                "description": "refresh the package lists first (apt-get update "
                               "--error-on=any); default: true for check and install, false "
                               "for download (which follows a check)"},
}

PYPI_OPTIONS: dict = {
    "index": {"type": "string", "pattern": "^https?://",
              "description": "a PEP 503/691 simple index URL, e.g. https://pypi.org/simple/"},
    "packages": {"type": "array", "items": _PYPI_NAME, "minItems": 1, "uniqueItems": True,
                 "description": "the distributions to watch"},
    "python": {"type": "string", "minLength": 1,
               "description": "the environment's Python executable (its installed versions "
                              "are read; updates.download and updates.install use its pip)"},
    "site": {"type": "string", "minLength": 1,
             "description": "instead of python: a site-packages directory to read installed "
                            "versions from (check and download only)"},
    "download_dir": {"type": "string", "minLength": 1,
                     "description": "where updates.download puts the files"},
    "prereleases": {"type": "boolean", "default": False,
                    "description": "count pre-releases as candidates"},
}

VERGEOS_OPTIONS: dict = {
    "url": {"type": "string", "pattern": "^https?://",
            "description": "the VergeOS system, e.g. https://vergeos.example.com "
                           "(http only to a loopback address)"},
    "api_key": {"type": "string", "description": "a secret reference: ${env:VERGEOS_API_KEY}"},
    "username": {"type": "string", "minLength": 1},
    "password": {"type": "string", "description": "a secret reference"},
    "verify_tls": {"type": "boolean", "default": True},
    "ca_file": {"type": "string", "minLength": 1},
    "poll_interval": {"type": "number", "exclusiveMinimum": 0, "default": 30,
                      "description": "seconds between status polls while VergeOS works "
                                     "(its API allows 1000 requests an hour per key)"},
    "force": {"type": "boolean", "default": False,
              "description": "updates.install: reboot workloads that cannot migrate"},
}


def _section(title: str, options: dict) -> dict:
    return {"type": "object", "title": title, "additionalProperties": False,
            "properties": options}


SETTINGS_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "settings.updates",
    "description": "Defaults for each update source; a task's parameters override them.",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "apt": _section("apt", APT_OPTIONS),
        "pypi": _section("pypi", PYPI_OPTIONS),
        "vergeos": _section("vergeos", VERGEOS_OPTIONS),
    },
}

PARAMS_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "updates.* parameters",
    "description": "Which source to ask (apt, pypi, vergeos), plus any of that source's "
                   "options to override settings.updates.<source>.",
    "type": "object",
    "required": ["source"],
    "additionalProperties": False,
    "properties": {
        "source": {"enum": list(SOURCES)},
        **APT_OPTIONS, **PYPI_OPTIONS, **VERGEOS_OPTIONS,
    },
}

REQUIRED = {"apt": (), "pypi": ("index", "packages"), "vergeos": ("url",)}


def options_for(params: dict, settings: dict) -> tuple[str, dict]:
    """The source and its effective options: settings.updates.<source>, then the task's keys.
    Raises ValueError naming what is missing or does not belong to the source."""
    source = params["source"]
    allowed = {"apt": APT_OPTIONS, "pypi": PYPI_OPTIONS, "vergeos": VERGEOS_OPTIONS}[source]
    stray = sorted(k for k in params if k != "source" and k not in allowed)
    if stray:
        raise ValueError(f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} not "
                         f"an option of source {source!r} (its options: {', '.join(allowed)})")
    options = {**(settings.get(source) or {}), **{k: v for k, v in params.items() if k != "source"}}
    missing = [k for k in REQUIRED[source] if options.get(k) in (None, "", [])]
    if source == "pypi" and not (options.get("python") or options.get("site")):
        missing.append("python (or site)")
    if missing:
        raise ValueError(f"source {source!r} needs {', '.join(missing)}: set it in "
                         f"settings.updates.{source} or in the task's 'with:'")
    return source, options
