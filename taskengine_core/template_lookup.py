"""The commonest template, ``"{{ event.data.host }}"``, read without running Jinja2.

A parameter that is exactly one expression made of a name and attribute or constant-index steps
(``event.data.host``, ``event.data['the key']``, ``event.data.items[0]``) yields the value at
that path. Jinja2 gets it by building a context and calling the sandbox's ``getattr`` /
``getitem`` at each step, which costs far more than the lookups themselves. :class:`Lookup`
follows the same path directly, but only while every step is one where the sandbox would do
exactly the same: a name the context holds, a key a plain ``dict`` holds (and, for ``.name``,
that is no attribute of ``dict``: the sandbox would return ``dict.items`` for ``.items``), an
index inside a plain ``list``. Anywhere else (a missing key, an ``AbsentEvent``, another type)
it steps aside and Jinja2 renders the template as before, with its errors and messages.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

MISSING = object()  # the lookup steps aside: render with Jinja2
_DICT_ATTRIBUTES = frozenset(dir(dict))
# names Jinja2 gives a meaning of its own whatever the context holds: ``self`` is the template
# (a TemplateReference), not the context's ``self``
_JINJA_NAMES = frozenset({"self"})


class Lookup:
    __slots__ = ("name", "steps")

    def __init__(self, name: str, steps: tuple[tuple[bool, Any], ...]) -> None:
        self.name, self.steps = name, steps  # steps: (by attribute?, key)

    @classmethod
    def of(cls, expr: nodes.Node) -> "Lookup | None":
        """The lookup an expression node stands for, or None when it is anything else."""
        steps: list[tuple[bool, Any]] = []
        while not isinstance(expr, nodes.Name):
            if isinstance(expr, nodes.Getattr):
                if expr.attr in _DICT_ATTRIBUTES:
                    return None
                steps.append((True, expr.attr))
            elif (isinstance(expr, nodes.Getitem) and isinstance(expr.arg, nodes.Const)
                  and type(expr.arg.value) in (str, int)):
                steps.append((False, expr.arg.value))
            else:
                return None
            expr = expr.node
        if expr.ctx != "load" or expr.name in _JINJA_NAMES:
            return None
        return cls(expr.name, tuple(reversed(steps)))

    def __call__(self, context: dict) -> Any:
        """The value at the path in ``context``, or :data:`MISSING`."""
        value = context.get(self.name, MISSING)
        if value is MISSING:
            return MISSING
        for by_attribute, key in self.steps:
            kind = type(value)
            if kind is dict:
                value = value.get(key, MISSING)
                if value is MISSING:
                    return MISSING
            elif kind is list and not by_attribute and type(key) is int and -len(value) <= key < len(value):
                value = value[key]
            else:
                return MISSING
        return value
