"""PyYAML's parser, for the slow path of reading a rule file: it records the line and column
of every key and item (for messages that point at the problem), reports duplicate keys, and
refuses aliases that expand without bound. The fast path (yaml-rs) needs none of this, so this
module, and PyYAML with it, is imported only when a file has a problem to report or yaml-rs is
not installed."""

from __future__ import annotations

import re
from typing import Any

import yaml

from taskengine_core.rules.limits import MAX_ALIAS_NODES, MAX_INT_DIGITS, TooLong

Position = tuple[int, int]  # line, column (as in rules.loader)

try:  # PyYAML's C parser (construction stays in Python) for the slow path that records positions
    from yaml import CSafeLoader as BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as BaseLoader


class AliasError(yaml.MarkedYAMLError):
    """YAML aliases that would expand without bound (or into themselves)."""


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return []


def check_aliases(root) -> None:
    """Count the nodes of the document as if every alias were written out, sharing the work
    of repeated aliases (so a bomb is counted, not expanded); raise :class:`AliasError` when
    aliases add more than ``MAX_ALIAS_NODES`` or an alias sits inside its own anchor."""
    sizes: dict[int, int] = {}
    order: list = []
    visiting: set[int] = set()
    stack: list = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            visiting.discard(key)
            order.append(node)
            continue
        if key in sizes:
            continue
        visiting.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in visiting:
                raise AliasError(None, None, "an alias refers to the mapping or list that contains it",
                                 node.start_mark)
            if id(child) not in sizes:
                stack.append((child, False))
    if sizes[id(root)] - len(sizes) > MAX_ALIAS_NODES:
        worst = next(n for n in order if sizes[id(n)] > MAX_ALIAS_NODES)
        raise AliasError(None, None, f"YAML aliases here expand to more than {MAX_ALIAS_NODES:,} nodes "
                         "(an alias bomb?); write the data out or use fewer nested aliases",
                         worst.start_mark)


class MarkingLoader(BaseLoader):
    """A safe loader that records each mapping key's and sequence item's line and column, and
    reports duplicate keys instead of silently keeping the last one."""

    def __init__(self, stream):
        super().__init__(stream)
        self.marks: dict[int, dict[Any, Position] | list[Position]] = {}
        self.duplicates: list[tuple[int, Position, Any]] = []

    def construct_yaml_map(self, node):
        data: dict = {}
        yield data
        self.flatten_mapping(node)
        marks: dict[Any, Position] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=False)
            try:
                hash(key)
            except TypeError:
                key = str(key)
            pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in marks:
                self.duplicates.append((id(data), pos, key))
            marks[key] = pos
            data[key] = self.construct_object(value_node, deep=False)
        self.marks[id(data)] = marks

    def construct_yaml_seq(self, node):
        data: list = []
        yield data
        data.extend(self.construct_sequence(node))
        self.marks[id(data)] = [(n.start_mark.line + 1, n.start_mark.column + 1) for n in node.value]

    def construct_yaml_int(self, node):
        text = str(self.construct_scalar(node))
        if len(text) > MAX_INT_DIGITS + 3 and text.lstrip("+-").isdigit():
            return TooLong(len(text.lstrip("+-")))
        return super().construct_yaml_int(node)

    def checked_data(self) -> Any:
        """The document, after refusing aliases that expand too far or refer to themselves."""
        node = self.get_single_node()
        if node is None:
            return None
        check_aliases(node)
        return self.construct_document(node)


def _yaml12_resolvers(base: dict) -> dict:
    """YAML 1.1's implicit types without its surprises: ``on``/``off``/``yes``/``no`` stay strings
    (``on:`` is a key of event rules, ``state: on`` a VM parameter) and ``17:00`` is not the
    base-60 number 1020. Booleans are ``true``/``false``; numbers are plain decimal, 0x, 0o."""
    dropped = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
               "tag:yaml.org,2002:timestamp"}  # dates and times stay text, as written
    resolvers = {k: [(tag, rx) for tag, rx in v if tag not in dropped] for k, v in base.items()}
    extra = [
        ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
        ("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+|0o[0-7]+)$"), "-+0123456789"),
        ("tag:yaml.org,2002:float", re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), "-+0123456789."),
    ]
    for tag, regexp, first in extra:
        for ch in first:
            resolvers.setdefault(ch, []).append((tag, regexp))
    return resolvers


MarkingLoader.yaml_implicit_resolvers = _yaml12_resolvers(BaseLoader.yaml_implicit_resolvers)
MarkingLoader.add_constructor("tag:yaml.org,2002:map", MarkingLoader.construct_yaml_map)
MarkingLoader.add_constructor("tag:yaml.org,2002:seq", MarkingLoader.construct_yaml_seq)
MarkingLoader.add_constructor("tag:yaml.org,2002:int", MarkingLoader.construct_yaml_int)


