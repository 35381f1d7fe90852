"""A plain-Python check of the common event body, exactly as strict as the event schema it is
given: it lets ``taskengine emit`` and the ingress pass a valid event without loading a JSON
Schema library. It only ever says "certainly valid"; anything else (a ``time`` with its
date-time format, a wrong type, a missing key) goes to the schema validators, which explain
what is wrong. tests/test_cli_speed.py checks it against them on generated bodies."""

from __future__ import annotations

import re


_CACHE: dict[int, tuple] = {}


def _rules(schema: dict):
    cached = _CACHE.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    props = schema["properties"]
    strings = {}
    for key, spec in props.items():
        if spec.get("type") == "string" and "format" not in spec:
            pattern = re.compile(spec["pattern"]) if "pattern" in spec else None
            strings[key] = (spec.get("minLength", 0), spec.get("maxLength"), pattern)
    objects = {key for key, spec in props.items() if spec == {"type": "object"}}
    rules = (frozenset(strings) | objects, strings, objects, frozenset(schema.get("required", ())))
    _CACHE[id(schema)] = (schema, rules)  # the schema is kept, so its id is not reused
    return rules


def plainly_valid(body, schema: dict) -> bool:
    """True when ``body`` certainly satisfies ``schema`` (an object schema of plain string and
    object properties, ``additionalProperties: false``)."""
    allowed, strings, objects, required = _rules(schema)
    if type(body) is not dict or not allowed.issuperset(body) or not required.issubset(body):
        return False
    for key, value in body.items():
        if key in objects:
            if type(value) is not dict:
                return False
            continue
        low, high, pattern = strings[key]
        if type(value) is not str or len(value) < low or (high is not None and len(value) > high):
            return False
        if pattern is not None and not pattern.search(value):
            return False
    return True
