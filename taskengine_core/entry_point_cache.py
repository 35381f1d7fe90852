"""Installed plugins' entry points without importing ``importlib.metadata`` on every command.

``importlib.metadata`` costs more to import (email parsing, zipfile, csv, ...) than its scan of
``sys.path``, and both are paid by every command that loads plugins (``apply`` among them). So
the entry points of a group, as ``importlib.metadata.entry_points(group=...)`` found them (same
order, same distributions), are kept in a small cache file (see :mod:`taskengine_core.cache_dir`)
together with a fingerprint of everything that answer was read from:

- the interpreter, taskengine's version and this file's format;
- ``sys.path``, in order (for ``""``, what the working directory holds);
- in each of its folders (or zip files), the name of every ``*.dist-info``/``*.egg-info``
  entry (installing or removing any distribution adds or removes one), with the identity
  (inode, size, modification and change times) of the entry and of its ``entry_points.txt``,
  and where there is one, of its ``METADATA``/``PKG-INFO`` (an editable install rewrites those
  in place).

Listing those folders and taking those stats is what the cache still costs; when anything in the
fingerprint differs, the metadata is scanned again and the cache rewritten. A fingerprint taken
within :data:`RACY_SECONDS` of a file's modification is not saved (a file system's clock is
coarse: a second change in the same tick would leave the same time), and no cache is used when a
finder other than the standard path finder can supply distributions (its answer cannot be
fingerprinted).
"""

from __future__ import annotations

import json
import os
import sys
import time

from taskengine_core import cache_dir

CACHE_FILE = "entry-points.json"
FORMAT = 1
RACY_SECONDS = 2.0
_INFO_SUFFIXES = (".dist-info", ".egg-info")
_VERSION_FILES = ("METADATA", "PKG-INFO")


class FoundEntryPoint:
    """One entry point: its name, its ``module:attr`` value and its distribution. (A plain
    class: a dataclass costs a millisecond of start-up to define.)"""

    __slots__ = ("name", "value", "distribution", "version")

    def __init__(self, name: str, value: str, distribution: str, version: str) -> None:
        self.name, self.value, self.distribution, self.version = name, value, distribution, version

    def _fields(self) -> tuple[str, str, str, str]:
        return (self.name, self.value, self.distribution, self.version)

    def __eq__(self, other) -> bool:
        return isinstance(other, FoundEntryPoint) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"FoundEntryPoint{self._fields()!r}"

    def load(self):
        """Import the object the entry point names, as ``EntryPoint.load`` does."""
        import importlib
        import re

        match = re.match(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$", self.value)
        if match is None:  # its own parser says what is wrong, as without the cache
            from importlib.metadata import EntryPoint

            return EntryPoint(self.name, self.value, "").load()
        target = importlib.import_module(match.group("module"))
        for attr in filter(None, (match.group("attr") or "").split(".")):
            target = getattr(target, attr)
        return target


def entry_points(group: str) -> list[FoundEntryPoint]:
    """The entry points of ``group``, from the cache when its fingerprint still holds."""
    path = cache_dir.cache_path(CACHE_FILE)
    fingerprint, newest = _fingerprint()
    if fingerprint is not None:
        cached = _load(path, fingerprint, group)
        if cached is not None:
            return cached
    found = _scan(group)
    if fingerprint is not None and newest < time.time() - RACY_SECONDS:
        _save(path, fingerprint, group, found)
    return found


def _scan(group: str) -> list[FoundEntryPoint]:
    import importlib.metadata

    return [FoundEntryPoint(ep.name, ep.value, ep.dist.name if ep.dist else "(unknown)",
                            ep.dist.version if ep.dist else "")
            for ep in importlib.metadata.entry_points(group=group)]


def _load(path, fingerprint: list, group: str) -> list[FoundEntryPoint] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["fingerprint"] != fingerprint:
            return None
        rows = data["groups"][group]
        found = [FoundEntryPoint(*row) for row in rows]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None  # missing or damaged: scanned again and rewritten
    if not all(isinstance(field, str) for ep in found for field in ep._fields()):
        return None
    return found


def _save(path, fingerprint: list, group: str, found: list[FoundEntryPoint]) -> None:
    groups = {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("fingerprint") == fingerprint and isinstance(data.get("groups"), dict):
            groups = data["groups"]  # other groups found under the same fingerprint
    except (OSError, ValueError, AttributeError, RecursionError):
        pass
    groups[group] = [list(ep._fields()) for ep in found]
    cache_dir.write_atomically(path, json.dumps({"fingerprint": fingerprint, "groups": groups}))


def _fingerprint() -> tuple[list | None, float]:
    """What the entry points are read from, and the newest modification time in it (seconds);
    None when a finder we cannot fingerprint supplies distributions, or ``sys.path`` holds
    something other than text."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if hasattr(finder, "find_distributions") and finder is not PathFinder:
            return None, 0.0
    from taskengine_core import __version__

    if not all(isinstance(entry, str) for entry in sys.path):
        return None, 0.0  # a Path or bytes entry: what importlib makes of it is not fingerprinted
    newest = [0]
    # "" is the working directory: "." lists it, and a deleted one is "missing" (as importlib
    # finds nothing there), where os.getcwd() would raise
    entries = [[entry, _path_entry(entry or ".", newest)] for entry in sys.path]
    return [FORMAT, sys.executable, sys.version, __version__, entries], newest[0] / 1e9


def _stat(path: str, newest: list[int]) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    newest[0] = max(newest[0], st.st_mtime_ns, st.st_ctime_ns)
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _path_entry(root: str, newest: list[int]) -> list:
    """The distributions' metadata one ``sys.path`` entry holds, as identities of files."""
    try:
        with os.scandir(root) as children:
            names = sorted(child.name for child in children if child.name.lower().endswith(_INFO_SUFFIXES)
                           or child.name.lower() == "egg-info")
    except NotADirectoryError:
        return ["file", _stat(root, newest)]  # a zip file: any change to it shows in its identity
    except OSError:
        return ["missing"]
    out = []
    for name in names:
        info = os.path.join(root, name)
        entry = [name, _stat(info, newest), _stat(os.path.join(info, "entry_points.txt"), newest)]
        if entry[2] is not None:  # its version is what plugins are credited with (a file made or
            # removed in the folder changes the folder's own time, in entry[1])
            entry += [_stat(os.path.join(info, f), newest) for f in _VERSION_FILES]
        out.append(entry)
    return out
