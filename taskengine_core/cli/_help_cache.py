"""Plugin commands for ``taskengine --help`` without loading every plugin each time.

Listing a plugin's commands means importing the plugin, and importing every plugin (with pluggy
and the package metadata scan) costs more than the rest of ``--help``. So the names and short
help of plugin commands are kept in a small cache file, valid while nothing that could change
them changed: taskengine's version, the Python, ``sys.path`` (and the modification time of each
of its folders: installing or removing a package changes it), ``TASKENGINE_DISABLE_PLUGINS``,
and the files the commands are defined in. The file lives in ``$TASKENGINE_HOME/cache`` when set,
else in ``$XDG_CACHE_HOME/taskengine`` (``~/.cache/taskengine``); when it cannot be written,
nothing is cached.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from taskengine_core import cache_dir

CACHE_FILE = "plugin-commands.json"


def cache_path() -> Path:
    return cache_dir.cache_path(CACHE_FILE)


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path or ".").st_mtime_ns
    except OSError:
        return None


def fingerprint() -> list:
    from taskengine_core import __version__

    return [__version__, sys.executable, [[p, _mtime(p)] for p in sys.path],
            os.environ.get("TASKENGINE_DISABLE_PLUGINS", "")]


def load() -> dict | None:
    """``{"commands": [[name, help], ...], "warnings": [...]}`` if the cache is valid."""
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != json.loads(json.dumps(fingerprint())):
        return None
    if any(_mtime(path) != mtime for path, mtime in data.get("files", [])):
        return None
    return data


def save(commands: list[tuple[str, str]], warnings: list[str], files: list[str]) -> None:
    path = cache_path()
    data = {"fingerprint": fingerprint(), "commands": [list(c) for c in commands], "warnings": warnings,
            "files": [[f, _mtime(f)] for f in sorted(set(files))]}
    cache_dir.write_atomically(path, json.dumps(data))  # a read-only home: --help just stays slower


def source_files(command) -> list[str]:
    """The files a command (and its subcommands) is defined in."""
    import inspect

    out, stack = [], [command]
    while stack:
        cmd = stack.pop()
        callback = getattr(cmd, "callback", None)
        if callback is not None:
            try:
                out.append(inspect.getsourcefile(inspect.unwrap(callback)) or "")
            except TypeError:
                pass
        stack.extend(getattr(cmd, "commands", {}).values())
    return [f for f in out if f]
