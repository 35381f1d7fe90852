"""Checking plugin JSON Schemas against the JSON Schema metaschema, once per schema.

Every command builds the plugin registry, and jsonschema's ``check_schema`` of the installed
plugins' schemas took most of a CLI start-up (about 0.25 s for the built-in plugins). Whether a
schema is valid depends only on the schema and on the jsonschema release, so the digests of
schemas found valid are kept in a cache file (see :mod:`taskengine_core.cache_dir`) and a schema
whose digest is there is not checked again. An invalid schema is never recorded: it is refused
with jsonschema's message every time."""

from __future__ import annotations

import hashlib
import json
import os

from taskengine_core import cache_dir

CACHE_FILE = "checked-schemas.json"
MAX_REMEMBERED = 2000  # digests kept; a plugin's schema changes with its releases
_valid: set[str] | None = None  # digests known valid, loaded once per process


def schema_problem(schema: dict) -> str | None:
    """Why ``schema`` is not a valid Draft 2020-12 schema (jsonschema's message), or None; a
    schema found valid before (same text, same jsonschema) is not checked again, and
    jsonschema is not even imported for it."""
    digest = _digest(schema)
    known = _known()
    if digest is not None and digest in known:
        return None
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return exc.message
    if digest is not None:
        if len(known) >= MAX_REMEMBERED:  # old schemas of old plugin versions: start afresh
            known.clear()
        known.add(digest)
        cache_dir.write_atomically(_path(), json.dumps({"jsonschema": _jsonschema_stamp(), "valid": sorted(known)}))
    return None


def _digest(schema: dict) -> str | None:
    try:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):  # not plain JSON data: checked every time
        return None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _known() -> set[str]:
    global _valid
    if _valid is None:
        _valid = set()
        try:
            data = json.loads(_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return _valid
        if isinstance(data, dict) and data.get("jsonschema") == _jsonschema_stamp():
            _valid.update(d for d in data.get("valid") or () if isinstance(d, str))
    return _valid


def _path():
    return cache_dir.cache_path(CACHE_FILE)


def _jsonschema_stamp() -> list:
    """Which jsonschema checked them: its package folder and that folder's modification time
    (an upgrade or reinstall replaces both), without importing it or reading package metadata."""
    import importlib.util

    spec = importlib.util.find_spec("jsonschema")
    folder = os.path.dirname(spec.origin) if spec and spec.origin else ""
    try:
        mtime = os.stat(os.path.join(folder, "validators.py")).st_mtime_ns
    except OSError:
        mtime = None
    return [folder, mtime]


def forget() -> None:
    """Drop what this process loaded (tests that point ``TASKENGINE_HOME`` elsewhere)."""
    global _valid
    _valid = None
