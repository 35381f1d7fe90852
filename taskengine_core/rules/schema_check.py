"""Checking a value against a JSON Schema, fast when it is valid and thorough when it is not.

fastjsonschema compiles a schema to Python code (over ten times faster than jsonschema on our
rule files), so valid objects are checked quickly; only an object it rejects goes through
jsonschema, which lists every error with the details the messages need. Both check the
formats below (``"format": "duration"``: a duration within its limit).
"""

from __future__ import annotations

from typing import Any, Iterator

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from taskengine_core.durations import is_duration

FORMATS = {"duration": is_duration}
_FORMAT_CHECKER = FormatChecker(formats=())
for _name, _check in FORMATS.items():
    _FORMAT_CHECKER.checks(_name)(_check)


class SchemaCheck:
    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self._thorough = Draft202012Validator(schema, format_checker=_FORMAT_CHECKER)
        try:
            import fastjsonschema

            self._fast = fastjsonschema.compile(schema, use_default=False, formats=FORMATS)
        except Exception:  # noqa: BLE001 - a schema fastjsonschema cannot compile: use jsonschema only
            self._fast = None

    def errors(self, value: Any) -> Iterator[ValidationError]:
        if self._fast is not None:
            try:
                self._fast(value)
                return iter(())
            except Exception:  # noqa: BLE001 - JsonSchemaValueException or a compile quirk
                pass
        return self._thorough.iter_errors(value)
