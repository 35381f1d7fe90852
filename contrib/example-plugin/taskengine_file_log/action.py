"""The ``file.append`` action."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError

# Trouble that may pass by itself (a full disk, an I/O hiccup, a busy NFS server): retried per
# the task's policy. Anything else (a missing directory, no permission) needs a person.
_TRANSIENT = {errno.ENOSPC, errno.EIO, errno.EAGAIN, errno.EINTR, errno.EDQUOT, errno.ESTALE,
              errno.ETIMEDOUT}


def append_line(params: dict, ctx: ActionContext) -> dict:
    """Append ``params["line"]`` and a newline to ``params["path"]``; fsync before returning.

    Returns ``{"path": <absolute path>, "bytes": <bytes written>}``.
    """
    path = _target(params["path"], ctx.settings.get("directory"))
    text = params["line"].replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n") + "\n"
    data = text.encode("utf-8")
    try:
        if params.get("create_dirs"):
            path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND and one write: concurrent runs appending to the same file do not interleave
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise ActionError(f"file.append: directory {path.parent} does not exist; create it or "
                          "set create_dirs: true", retryable=False) from None
    except OSError as exc:
        raise ActionError(f"file.append: cannot write {path}: {exc.strerror}",
                          retryable=exc.errno in _TRANSIENT) from None
    return {"path": str(path), "bytes": len(data)}


def _target(raw: str, directory: str | None) -> Path:
    """The absolute path to write; refuses paths outside ``settings.file.directory``."""
    if directory is None:
        path = Path(raw)
        if not path.is_absolute():
            raise ActionError(f"file.append: path {raw!r} is relative and settings.file.directory "
                              "is not set; use an absolute path or set the directory",
                              retryable=False)
        return Path(os.path.normpath(path))
    base = Path(os.path.normpath(directory))
    if not base.is_absolute():
        raise ActionError(f"file.append: settings.file.directory {directory!r} must be absolute",
                          retryable=False)
    # normpath, not resolve(): '..' cannot climb out, and a symlink the operator placed inside
    # the directory on purpose still works
    path = Path(os.path.normpath(base / raw))
    if path != base and base not in path.parents:
        raise ActionError(f"file.append: path {raw!r} is outside settings.file.directory "
                          f"({base}); refused", retryable=False)
    if path == base:
        raise ActionError(f"file.append: path {raw!r} names the directory itself", retryable=False)
    return path
