"""Turning JSON Schema errors into messages that say what was expected."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

_JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "null"}
_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
               "boolean": "true or false", "integer": "an integer", "number": "a number",
               "null": "null"}


def describe_value(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{kind} {shown}" if not isinstance(value, (dict, list)) else kind


def explain(error: ValidationError) -> tuple[tuple, str]:
    """``(extra path, message)`` for one schema error; the path is relative to the error's."""
    v, schema, value = error.validator, error.schema, error.instance
    if v == "finite":  # SchemaCheck's own check: NaN, infinity, huge integers
        return (), error.message
    if v == "required":
        missing = [k for k in error.validator_value if isinstance(value, dict) and k not in value]
        return (), f"missing required key {missing[0]!r}" if missing else error.message
    if v == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema.get("properties", {}))
        extras = [k for k in value if k not in schema.get("properties", {})]
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return (extras[0],), f"unknown key {extras[0]!r}{hint}"
    if v == "type":
        wanted = error.validator_value
        wanted = [wanted] if isinstance(wanted, str) else wanted
        words = " or ".join(_TYPE_WORDS.get(w, w) for w in wanted)
        return (), f"expected {words}, got {describe_value(value)}"
    if v == "enum":
        options = ", ".join(str(o) for o in error.validator_value)
        return (), f"expected one of: {options}; got {describe_value(value)}"
    if v == "const":
        return (), f"expected {error.validator_value!r}, got {describe_value(value)}"
    if v in ("oneOf", "anyOf") and schema.get("description"):
        return (), f"expected {schema['description']}; got {describe_value(value)}"
    if v in ("oneOf", "anyOf") and error.context:
        best = min(error.context, key=lambda e: (len(e.path), e.validator != "type"))
        extra, message = explain(best)
        return tuple(best.path) + extra, message
    if v == "pattern":
        if schema.get("description"):
            return (), f"expected {schema['description']}; got {describe_value(value)}"
        return (), f"{describe_value(value)} does not match the pattern {error.validator_value}"
    if v == "minItems":
        n = error.validator_value
        return (), f"expected at least {n} item{'s' if n != 1 else ''}, got {len(value)}"
    if v == "minLength" and error.validator_value == 1:
        return (), "expected a non-empty string"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
                "exclusiveMaximum": "less than"}[v]
        return (), f"expected a number {word} {error.validator_value}, got {describe_value(value)}"
    if v == "propertyNames":
        return (), error.message
    return (), error.message
