"""Checking a value against a JSON Schema, fast when it is valid and thorough when it is not.

fastjsonschema compiles a schema to Python code (over ten times faster than jsonschema on our
rule files), so valid objects are checked quickly; only an object it rejects goes through
jsonschema, which lists every error with the details the messages need. Both check the
formats below (``"format": "duration"``: a duration within its limit).

Neither checker refuses NaN or infinity (``minimum: 0`` holds for NaN, as every comparison with
it is false), nor integers too large to print, so :meth:`SchemaCheck.errors` refuses those
first, whatever the schema says: no parameter, setting or duration may be non-finite.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any, Iterator

from taskengine_core.durations import is_duration
from taskengine_core.rules.limits import MAX_DEPTH, MAX_INTEGER, describe_number_problem

# "regex" is checked when conditions compile, with a message naming RE2's complaint; the
# checkers here must not apply Python's own (different) regex syntax to it.
FORMATS = {"duration": is_duration, "regex": lambda value: True}
_UNCOMPILED = object()

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError


class SchemaCheck:
    """Both checkers are compiled on first use: a command that checks nothing against a schema
    (an ``apply`` whose objects are all unchanged) compiles none of them."""

    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self._fast_check: Any = _UNCOMPILED
        self._thorough_check = None

    @property
    def _fast(self):
        if self._fast_check is _UNCOMPILED:
            try:
                self._fast_check = _compiled_fast(self.schema)
            except Exception:  # noqa: BLE001 - a schema fastjsonschema cannot compile: use jsonschema only
                self._fast_check = None
        return self._fast_check

    @property
    def _thorough(self):
        if self._thorough_check is None:
            from jsonschema import Draft202012Validator

            self._thorough_check = Draft202012Validator(self.schema, format_checker=_format_checker())
        return self._thorough_check

    def errors(self, value: Any) -> Iterator[ValidationError]:
        if _has_unsound_number(value):
            return _unsound_numbers(value)
        fast = self._fast
        if fast is not None:
            try:
                fast(value)
                return iter(())
            except Exception:  # noqa: BLE001 - JsonSchemaValueException or a compile quirk
                pass
        return self._thorough.iter_errors(value)


def _compiled_fast(schema: dict):
    """fastjsonschema's validator for ``schema``. Generating and compiling its Python code
    takes 5 to 30 ms a schema, at every start of a command, so the compiled code is kept in the
    cache directory (:mod:`taskengine_core.cache_dir`), keyed by the schema, fastjsonschema's
    version and Python's; what cannot be read back is simply generated again."""
    import functools
    import hashlib
    import json
    import marshal
    import sys

    import fastjsonschema

    from taskengine_core.cache_dir import cache_path, write_bytes_atomically

    try:
        text = json.dumps([fastjsonschema.VERSION, sys.version, sorted(FORMATS), schema], sort_keys=True)
    except (TypeError, ValueError):  # not plain JSON: compiled every time
        return fastjsonschema.compile(schema, use_default=False, formats=FORMATS)
    path = cache_path(f"fastjsonschema-{hashlib.sha256(text.encode()).hexdigest()[:32]}.bin")
    try:
        code = marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        source = fastjsonschema.compile_to_code(schema, use_default=False, formats=FORMATS)
        code = compile(source, "<fastjsonschema>", "exec")
        write_bytes_atomically(path, marshal.dumps(code))
        _keep_newest(path.parent, "fastjsonschema-*.bin", KEEP_COMPILED)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - fastjsonschema's own generated code, as compile() runs it
    return functools.partial(namespace["validate"], custom_formats=FORMATS)


KEEP_COMPILED = 64  # compiled checks kept in the cache; older ones (other versions, old schemas) go


def _keep_newest(folder, pattern: str, keep: int) -> None:
    """Delete all but the ``keep`` most recently written files matching ``pattern``."""
    try:
        files = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in files[keep:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # a cache: at worst it keeps a few files too many


_FORMAT_CHECKER = None


def _format_checker():
    global _FORMAT_CHECKER
    if _FORMAT_CHECKER is None:
        from jsonschema import FormatChecker

        checker = FormatChecker(formats=())
        for name, check in FORMATS.items():
            checker.checks(name)(check)
        _FORMAT_CHECKER = checker
    return _FORMAT_CHECKER


def _has_unsound_number(value: Any, depth: int = 0) -> bool:
    """The quick test (no paths) behind :func:`_unsound_numbers`; most values have none."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, int):
        return not -MAX_INTEGER <= value <= MAX_INTEGER
    if depth >= MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return any(_has_unsound_number(v, depth + 1) for v in value.values()
                   if not isinstance(v, str))
    if isinstance(value, list):
        return any(_has_unsound_number(v, depth + 1) for v in value if not isinstance(v, str))
    return False


def _unsound_numbers(value: Any) -> Iterator[ValidationError]:
    """An error for each NaN, infinity or out-of-range integer in ``value``."""
    stack: list[tuple[tuple, Any, int]] = [((), value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if isinstance(item, dict) and depth < MAX_DEPTH:
            stack.extend((path + (k,), v, depth + 1) for k, v in item.items())
        elif isinstance(item, list) and depth < MAX_DEPTH:
            stack.extend((path + (i,), v, depth + 1) for i, v in enumerate(item))
        elif isinstance(item, (int, float)) and not _fine_number(item):
            from jsonschema.exceptions import ValidationError

            message = describe_number_problem(item) or "not a usable number"
            yield ValidationError(message, validator="finite", path=deque(path), instance=None,
                                  schema={})


def _fine_number(value: int | float) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return describe_number_problem(value) is None
