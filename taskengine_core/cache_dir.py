"""Where taskengine keeps small caches that only save time: ``$TASKENGINE_HOME/cache`` when
``TASKENGINE_HOME`` is set, else ``$XDG_CACHE_HOME/taskengine`` (``~/.cache/taskengine``). Losing one costs speed, never
correctness; when the directory cannot be written, nothing is cached."""

from __future__ import annotations

import os
from pathlib import Path


def cache_path(name: str) -> Path:
    home = os.environ.get("TASKENGINE_HOME")
    if home:
        return Path(home) / "cache" / name
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "taskengine" / name


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` whole (readers see the old file or the new one); nothing
    happens when it cannot be written."""
    write_bytes_atomically(path, text.encode("utf-8"))


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """:func:`write_atomically` for bytes."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError:
        pass
