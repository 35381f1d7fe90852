"""What lets ``apply`` skip work it has already done, without ever skipping a check.

Checking a rule file is a pure function of its content, the checking code and the installed
plugins (their actions' schemas, notifiers, settings sections): nothing is read from the
environment or the clock. So an object whose canonical spec equals the one an earlier
``apply`` stored, under the same :func:`validation_key` and the same settings, passed every
per-object check already; and a set of files whose bytes equal those an earlier ``apply``
applied, with nothing changed in the database since, would change nothing.

``VALIDATION_REVISION`` is part of the key: raise it whenever a check is added or changed
(in ``rules/`` or ``recurrence/``) so that stored specs are checked again by the new code.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

VALIDATION_REVISION = 1


def validation_key(registry) -> str:
    """A digest of everything besides the rule files that checking them depends on."""
    from taskengine_core import __version__

    items = sorted(
        ({**item.as_dict(), "check": getattr(item.check, "__qualname__", None)}
         for kind in registry.items.values() for item in kind.values()),
        key=lambda d: (d["kind"], d["name"]))
    body = {"core": __version__, "revision": VALIDATION_REVISION, "items": items,
            "plugin_secret_schemes": registry.plugin_secret_schemes}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def text_digest(text: str) -> bytes:
    """The digest of one rule file's text, as the loader read it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def read_digest(path: Path) -> bytes | None:
    """:func:`text_digest` of the file read the way the loader reads it; None when it cannot
    be read (the normal path reports why)."""
    try:
        data = Path(path).read_bytes()
        if data.isascii() and b"\r" not in data:  # the text is these very bytes: no decoding
            return hashlib.sha256(data).digest()
        return text_digest(Path(path).read_text(encoding="utf-8"))  # newlines translated, as read
    except (OSError, UnicodeDecodeError):
        return None


def absolute(path: Path | str, absolutes: dict[str, str] | None = None) -> str:
    """The absolute path, symlinks resolved, a rule file is recorded under (what
    ``Path.resolve()`` gives, made without Path objects); ``absolutes``: the answers already
    made during one ``apply``, which needs each several times."""
    key = str(path)
    found = absolutes.get(key) if absolutes is not None else None
    if found is None:
        found = os.path.realpath(key)
        if absolutes is not None:
            absolutes[key] = found
    return found


def files_key(digests: Iterable[tuple[Path | str, bytes | None]], validation: str,
              absolutes: dict[str, str] | None = None) -> str | None:
    """A digest of the rule files (absolute paths and text digests, in order) under
    ``validation``; None when one of them could not be read."""
    digest = hashlib.sha256(validation.encode())
    for path, text in digests:
        if text is None:
            return None
        name = absolute(path, absolutes).encode()
        digest.update(len(name).to_bytes(8, "big") + name + text)
    return digest.hexdigest()


@dataclass
class KnownSpecs:
    """What the database holds, as checked by an earlier ``apply`` under ``key``: canonical
    spec text by section and name, and the settings. Empty when it was checked under another
    key (or never): then every object is checked in full.

    ``files``: rule files whose text is the one the last apply read (nothing changed the
    configuration since), by absolute path: ``(text digest, the name its objects are stored
    under)``. Their objects and settings are taken from the database (``origin``,
    ``setting_origin``: the stored file name of each) instead of parsing them again."""

    key: str
    specs: dict[str, dict[str, str]] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    origin: dict[str, dict[str, str | None]] = field(default_factory=dict)
    setting_origin: dict[str, str | None] = field(default_factory=dict)
    _by_origin: dict | None = field(default=None, repr=False)

    def stored_data(self, path: Path | str) -> tuple[dict, dict, bytes] | None:
        """For a file in ``files``: its content as stored (``{section: {name: spec}}``), the
        canonical text of each object ``{(section, name): text}`` and its digest."""
        entry = self.files.get(absolute(path))
        if entry is None:
            return None
        digest, name = entry
        if self._by_origin is None:  # once: which objects and settings each stored file holds
            self._by_origin = {}
            for setting, origin in self.setting_origin.items():
                self._by_origin.setdefault(origin, []).append(("settings", setting))
            for section, origins in self.origin.items():
                for obj, origin in origins.items():
                    self._by_origin.setdefault(origin, []).append((section, obj))
        data: dict = {}
        texts: dict = {}
        for section, obj in self._by_origin.get(name, ()):
            if section == "settings":
                data.setdefault("settings", {})[obj] = json.loads(self.settings[obj])
                continue
            text = self.specs[section][obj]
            data.setdefault(section, {})[obj] = json.loads(text)
            texts[(section, obj)] = text
        return data, texts, digest


def applied_files(digests: list[tuple[Path | str, bytes | None]], validation: str,
                  counts: dict[str, dict[str, int]] | None = None,
                  absolutes: dict[str, str] | None = None) -> dict | None:
    """What ``apply`` records of the files it applied: the digest of them all (see
    :func:`files_key`) and, by absolute path, each one's digest and the name it was given as
    (the ``file`` of its objects); and, when known (``counts``: by that name), how many objects
    of each section each file holds: ``apply_delta`` then finds a changed file's old objects by
    the names it defines now, and knows by their number that none is missing."""
    whole = files_key(digests, validation, absolutes)
    if whole is None:
        return None
    applied = {"files": whole, "each": {absolute(p, absolutes): [d.hex(), str(p)] for p, d in digests}}
    if counts is not None:
        applied["counts"] = {str(p): counts[str(p)] for p, _ in digests if str(p) in counts}
    return applied


def object_counts(objects: dict[str, dict], files: Iterable[str]) -> dict[str, dict[str, int]]:
    """``{file: {section: number of objects}}`` for each of ``files``, from ``objects``
    (``{section: {name: definition}}``, each definition knowing its ``file``); sections a file
    has no object of are left out."""
    counts: dict[str, dict[str, int]] = {file: {} for file in files}
    for section, named in objects.items():
        for definition in named.values():
            per_file = counts.get(definition.file)
            if per_file is not None:
                per_file[section] = per_file.get(section, 0) + 1
    return counts
