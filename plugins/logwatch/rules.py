"""Turning a file's (or the journal's) settings into a line matcher, and checking them.

A user rule's regex is matched against the *whole* line (``fullmatch``), whether or not it is
written with ``^`` and ``$``: a pattern never matches inside attacker-controlled text. Rules are
checked by ``taskengine validate`` (:func:`check_settings`) and compiled again when the source
starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .engine import Error, compile_regex, explain
from .patterns import BUNDLES, EVENT_FIELDS, CompiledBundle, GroupNames

RESERVED = ("source", "line")  # every event's data has these


@dataclass
class CompiledRule:
    event: str
    regex: object
    data: dict


class LineMatcher:
    """``match(line)`` returns ``(event type, data)`` for the first bundle or rule that
    matches the whole line, or ``None``."""

    def __init__(self, spec: dict, group_names: GroupNames | None = None) -> None:
        self.bundles = [CompiledBundle(BUNDLES[name], group_names) for name in spec.get("patterns") or ()]
        self.rules = [CompiledRule(r["event"], compile_regex(r["match"]), dict(r.get("data") or {}))
                      for r in spec.get("rules") or ()]

    def match(self, line: str) -> tuple[str, dict] | None:
        for bundle in self.bundles:
            found = bundle.match(line)
            if found is not None:
                return found
        for rule in self.rules:
            found = rule.regex.fullmatch(line)
            if found is not None:
                data = dict(rule.data)
                data.update(found)
                return rule.event, data
        return None


def check_settings(settings: dict) -> Iterator[tuple[tuple, str]]:
    """``(path inside settings.logwatch, message)`` for each problem a schema cannot see."""
    seen: dict[str, int] = {}
    for i, spec in enumerate(settings.get("files") or ()):
        path = spec["path"]
        if path in seen:
            yield ("files", i, "path"), f"{path} is already watched by files[{seen[path]}]; merge the two entries"
        seen.setdefault(path, i)
        yield from _check_rules(spec, ("files", i))
    if "journal" in settings:
        yield from _check_rules(settings["journal"], ("journal",))


def _check_rules(spec: dict, where: tuple) -> Iterator[tuple[tuple, str]]:
    import json

    for j, rule in enumerate(spec.get("rules") or ()):
        try:
            json.dumps(rule.get("data") or {}, allow_nan=False)
        except ValueError:
            yield (*where, "rules", j, "data"), "event data must be JSON: no NaN or infinite numbers"
        at = (*where, "rules", j, "match")
        try:
            regex = compile_regex(rule["match"])
        except Error as exc:
            yield at, (f"the regex does not compile: {explain(exc)} (patterns use RE2 syntax: "
                       "no backreferences or look-around; named groups are (?P<name>...))")
            continue
        groups = set(regex.groupindex)
        reserved = sorted(groups & set(RESERVED))
        if reserved:
            yield at, (f"named group {reserved[0]!r} is reserved: every event's data has "
                       f"'source' and 'line'; rename the group")
        needed = list(EVENT_FIELDS.get(rule["event"], ())) + list(rule.get("fields") or ())
        missing = [name for name in dict.fromkeys(needed) if name not in groups]
        if missing:
            have = ", ".join(sorted(groups)) or "none"
            yield at, (f"event {rule['event']!r} needs the named group{'s' if len(missing) > 1 else ''} "
                       + ", ".join(f"(?P<{m}>...)" for m in missing) + f"; the regex has: {have}")
