"""Checking a value against a JSON Schema, fast when it is valid and thorough when it is not.

fastjsonschema compiles a schema to Python code (over ten times faster than jsonschema on our
rule files), so valid objects are checked quickly; only an object it rejects goes through
jsonschema, which lists every error with the details the messages need.
"""

from __future__ import annotations

from typing import Any, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError


class SchemaCheck:
    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self._thorough = Draft202012Validator(schema)
        try:
            import fastjsonschema

            self._fast = fastjsonschema.compile(schema, use_default=False)
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
