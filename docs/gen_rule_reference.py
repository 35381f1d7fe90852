"""Render docs/rule-reference.md from the rule-file JSON Schema.

    python docs/gen_rule_reference.py           # rewrite docs/rule-reference.md
    python docs/gen_rule_reference.py --check   # exit 1 if the file is out of date

The schema is ``taskengine_core.rules.schema.rule_file_schema(registry)`` with the registry of
the plugins that ship with taskengine (the ``taskengine`` distribution), so the output does not
depend on which third-party plugins happen to be installed. ``tests/test_docs.py`` fails when
the committed file differs from what this script renders.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "rule-reference.md"
BUILTIN_DISTRIBUTION = "taskengine-core"
SECTION_ORDER = ("settings", "schedules", "webhooks", "tasks", "events")
SECTION_INTRO = {
    "settings": "One block of engine-wide settings. Each plugin may add a section of its own "
                "(the plugin that provides it is named in its heading).",
    "schedules": "`schedules:` maps a schedule name to an object. Tasks name the schedules that "
                 "fire them (`tasks.NAME.schedules`).",
    "webhooks": "`webhooks:` maps a destination name to an object. `webhook.send` tasks name "
                "the destination they deliver to (`with.webhook`).",
    "tasks": "`tasks:` maps a task name to an object: the action it runs, with its parameters "
             "under `with`, and its run policy.",
    "events": "`events:` maps an event-rule name to an object: which events it matches and "
              "which tasks it fires.",
}


def builtin_registry():
    """The registry of the plugins shipped in the ``taskengine-core`` distribution only."""
    os.environ.pop("TASKENGINE_DISABLE_PLUGINS", None)
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.registry import Registry

    full = get_plugin_manager().registry()
    registry = Registry()
    for items in full.items.values():
        for item in items.values():
            if item.plugin.distribution == BUILTIN_DISTRIBUTION:
                registry.add(item)
    return registry


# -- describing one schema --------------------------------------------------------------------


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _is_duration(schema: dict) -> bool:
    from taskengine_core import durations

    return schema.get("oneOf") == durations.SCHEMA["oneOf"]


def _is_object(schema: dict) -> bool:
    return isinstance(schema.get("properties"), dict) and bool(schema["properties"])


def type_text(schema: Any) -> str:
    """A short human type: ``string``, ``list of string``, ``duration``, `` `a` \\| `b` ``."""
    if not isinstance(schema, dict) or not schema:
        return "any"
    if _is_duration(schema):
        return "[duration](#durations)"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name == "conditionList":
            return "list of [condition](#conditions)"
        return "[condition](#conditions)" if name.startswith("condition") else name
    if "const" in schema:
        return _code(schema["const"])
    if "enum" in schema:
        return " | ".join(_code(v) for v in schema["enum"])
    for key in ("oneOf", "anyOf"):
        alts = schema.get(key) or []
        if (len(alts) == 2 and alts[1].get("type") == "array" and alts[1].get("items") == alts[0]
                and not schema.get("type")):
            return f"{type_text(alts[0])}, or a list of them"
        if key in schema and not schema.get("type"):
            parts: list[str] = []
            for sub in schema[key]:
                text = type_text(sub)
                if text not in parts:
                    parts.append(text)
            return " or ".join(parts)
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        if "prefixItems" in schema:
            return "[" + ", ".join(type_text(s) for s in schema["prefixItems"]) + "]"
        return f"list of {type_text(schema.get('items'))}"
    if kind == "object" and not _is_object(schema):
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"map of name → {type_text(extra)}"
        return "object"
    return kind or "any"


def constraints(schema: dict) -> list[str]:
    out = []
    if _is_duration(schema) or not isinstance(schema, dict):
        return out
    for key, label in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                       ("exclusiveMaximum", "<")):
        if key in schema:
            out.append(f"{label} {schema[key]}")
    for key, label in (("minLength", "min length"), ("maxLength", "max length"),
                       ("minItems", "min items"), ("maxItems", "max items")):
        if key in schema:
            out.append(f"{label} {schema[key]}")
    if schema.get("uniqueItems"):
        out.append("unique items")
    if "pattern" in schema:
        out.append(f"pattern `{schema['pattern']}`")
    if "format" in schema:
        out.append(f"format {schema['format']}")
    if schema.get("x-taskengine-ref"):
        out.append(f"a name from `{schema['x-taskengine-ref']}:`")
    for key in ("oneOf", "anyOf"):  # alternatives that are plain type+constraints
        for sub in schema.get(key, []) if not schema.get("type") else []:
            if isinstance(sub, dict) and "pattern" in sub and not sub.get("description"):
                out.append(f"pattern `{sub['pattern']}`")
    return out


def _trim(text: str) -> str:
    """Drop one final full stop (the table joins phrases with ';'), keeping an ellipsis."""
    return text[:-1] if text.endswith(".") and not text.endswith("...") else text


def description(schema: dict) -> str:
    if not isinstance(schema, dict):
        return ""
    parts = [schema.get("title")]
    if not _is_duration(schema):  # the generic duration text: the type links to it
        parts.append(schema.get("description"))
    text = "; ".join(_trim(p) for p in parts if p)
    if not text:  # one value or a list of them: the value's own description
        for key in ("anyOf", "oneOf"):
            alts = schema.get(key) or []
            if alts and isinstance(alts[0], dict) and alts[0].get("description"):
                return _trim(alts[0]["description"])
    return text


def notes(schema: dict) -> list[str]:
    """Rules that span fields: exactly-one-of, requires, conditional requirements."""
    out = []
    for key, word in (("oneOf", "Exactly one of"), ("anyOf", "At least one of")):
        alts = schema.get(key) or []
        if alts and all(set(a) == {"required"} and len(a["required"]) == 1 for a in alts):
            out.append(f"{word} " + ", ".join(_code(a["required"][0]) for a in alts) + ".")
        for alt in alts:
            req = (alt.get("not") or {}).get("required") if isinstance(alt, dict) else None
            if req and set(alt) == {"not"}:
                out.append("Not both " + " and ".join(_code(r) for r in req) + ".")
    dependent = schema.get("dependentRequired") or {}
    grouped: dict[tuple, list[str]] = {}
    for name, needs in dependent.items():
        grouped.setdefault(tuple(needs), []).append(name)
    for needs, names in grouped.items():
        out.append(", ".join(_code(n) for n in names) + " " + ("requires" if len(names) == 1 else "each require")
                   + " " + ", ".join(_code(n) for n in needs) + ".")
    for rule in schema.get("allOf") or []:
        cond = ((rule.get("if") or {}).get("properties") or {})
        then = rule.get("then") or {}
        if len(cond) == 1 and "required" in then:
            (field, test), = cond.items()
            if "const" in test:
                out.append(f"When {_code(field)} is {_code(test['const'])}: requires "
                           + ", ".join(_code(r) for r in then["required"]) + ".")
    if schema.get("additionalProperties") is False:
        out.append("No other keys are allowed.")
    return out


# -- rendering ------------------------------------------------------------------------------


def _anchor(path: str) -> str:
    return "ref-" + "".join(c if c.isalnum() else "-" for c in path.lower()).strip("-")


def render_object(schema: dict, path: str, level: int, heading: str | None = None,
                  intro: str | None = None, anchor: str | None = None) -> Iterator[str]:
    """A heading, a table of the object's fields, and one subsection per nested object."""
    yield f'<a id="{anchor or _anchor(path)}"></a>'
    yield ""
    yield f"{'#' * level} {heading or f'`{path}`'}"
    yield ""
    if intro:
        yield intro
        yield ""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    nested = []
    if props:
        yield "| Field | Type | Required | Default | Description |"
        yield "|---|---|---|---|---|"
        for name, sub in props.items():
            sub = sub if isinstance(sub, dict) else {}
            field_path = f"{path}.{name}"
            if _is_object(sub):
                kind = f"object, [see below](#{_anchor(field_path)})"
                nested.append((field_path, sub))
            else:
                kind = type_text(sub)
            details = description(sub)
            extra = constraints(sub)
            if extra:
                details = (details + "; " if details else "") + ", ".join(extra)
            default = _code(sub["default"]) if "default" in sub else ""
            yield (f"| `{name}` | {_cell(kind)} | {'yes' if name in required else ''} | "
                   f"{_cell(default)} | {_cell(details)} |")
        yield ""
    for note in notes(schema):
        yield f"- {note}"
    if notes(schema):
        yield ""
    for field_path, sub in nested:
        yield from render_object(sub, field_path, min(level + 1, 6))


def render_conditions(defs: dict) -> Iterator[str]:
    condition = defs.get("condition", {})
    operators = defs.get("conditionOperators", {}).get("properties", {})
    yield '<a id="conditions"></a>'
    yield ""
    yield "## Conditions"
    yield ""
    yield ("The `when:` of an event rule is a mapping; " + (condition.get("description") or "")
           + ". A path's value is either a plain value the event's field must equal, or a "
           "mapping of operators that must all hold.")
    yield ""
    yield "| Key | Type | Meaning |"
    yield "|---|---|---|"
    for name, sub in (condition.get("properties") or {}).items():
        yield f"| `{name}` | {_cell(type_text(sub))} | {_cell(sub.get('description', ''))} |"
    yield "| any other key | a dotted event path, e.g. `data.user` | a value to equal, or operators (below) |"
    yield ""
    yield "| Operator | Operand |"
    yield "|---|---|"
    for name, sub in operators.items():
        operand = type_text(sub) if sub else "any value"
        extra = constraints(sub) if sub else []
        yield f"| `{_cell(name)}` | {_cell(operand + (' (' + ', '.join(extra) + ')' if extra else ''))} |"
    yield ""
    yield ("`regex` searches the text with [RE2 syntax](https://github.com/google/re2/wiki/Syntax), "
           "which matches in time linear in the text: no event, however long, can stall the "
           "evaluator with a pattern such as `^(a+)+$`. RE2 has no backreferences (`\\1`) or "
           "lookaround (`(?=...)`, `(?<=...)`); `validate` refuses them with the pattern's "
           "position. Unlike Python's `re`, `\\d` and `\\w` match ASCII only, `$` matches only "
           "at the very end (not before a final newline) and `\\Z` is written `\\z`.")
    yield ""


def render(registry) -> str:
    from taskengine_core import durations
    from taskengine_core.rules.limits import MAX_ALIAS_NODES, MAX_DEPTH, MAX_INTEGER
    from taskengine_core.rules.schema import NAME_PATTERN, rule_file_schema

    schema = rule_file_schema(registry)
    top = schema["properties"]
    lines = [
        "# Rule-file reference",
        "",
        "<!-- Generated by docs/gen_rule_reference.py from "
        "taskengine_core.rules.schema.rule_file_schema(); do not edit by hand. -->",
        "",
        "Every field a rule file accepts, generated from the JSON Schema that `taskengine "
        "validate` and `taskengine apply` check against, with the plugins that ship with "
        "taskengine. `taskengine schema` prints the same schema including every plugin installed "
        "on your machine. [rule-files.md](rule-files.md) explains the sections with examples.",
        "",
        "A rule file is a YAML (`.yaml`, `.yml`) or JSON (`.json`) mapping with up to five "
        "sections: " + ", ".join(f"[`{s}`](#{_anchor(s)})" for s in SECTION_ORDER) + ". "
        "Names of schedules, webhooks, tasks and event rules match "
        f"`{NAME_PATTERN}` and are unique across all files loaded together.",
        "",
        '<a id="durations"></a>',
        "",
        "**Durations** are " + durations.SCHEMA["description"] + ".",
        "",
        '<a id="limits"></a>',
        "",
        "**What no rule file may hold.** Numbers are finite: NaN and infinity (`.nan`, `.inf` in "
        "YAML; `NaN`, `Infinity` in JSON) are refused wherever a number may stand, and so are "
        f"integers beyond ±{MAX_INTEGER} (SQLite's range). Each key appears once in a mapping, in "
        f"YAML and JSON alike. Mappings and lists nest at most {MAX_DEPTH} levels; YAML aliases "
        f"may add at most {MAX_ALIAS_NODES:,} nodes (a few lines of nested aliases, the \"billion "
        "laughs\", would otherwise expand to billions), and an alias may not sit inside its own "
        "anchor. Text is valid UTF-8 (no lone surrogates such as `\\ud800`), and values are "
        "plain YAML: no `!!set`, `!!binary` or other tags. Each of these is reported as "
        "`FILE:LINE:COLUMN  PATH  MESSAGE`, and nothing is applied.",
        "",
    ]
    settings = top["settings"]
    core_settings = {k: v for k, v in settings["properties"].items() if k not in registry.settings}
    lines += list(render_object({**settings, "properties": core_settings}, "settings", 2,
                                intro=SECTION_INTRO["settings"]))
    for name, item in sorted(registry.settings.items()):
        plugin = item.plugin.name
        heading = f"`settings.{name}` (plugin `{plugin}`)"
        intro = _trim(item.description[:1].upper() + item.description[1:]) + "." \
            if item.description else None
        lines += list(render_object(item.schema, f"settings.{name}", 3, heading, intro))
    for section in ("schedules", "webhooks", "tasks", "events"):
        body = dict(top[section]["additionalProperties"])
        if section == "tasks":
            body = {k: v for k, v in body.items() if k != "allOf"}
            props = dict(body["properties"])
            props["action"] = {k: v for k, v in props["action"].items() if k != "enum"}
            props["action"]["description"] = (props["action"].get("description", "")
                                              + "; one of the [actions below](#ref-actions)")
            body["properties"] = props
        lines += list(render_object(body, f"{section}.NAME", 2, f"`{section}`",
                                    SECTION_INTRO[section], anchor=_anchor(section)))
        if section == "tasks":
            lines += list(render_actions(registry))
    lines += list(render_conditions(schema["$defs"]))
    return "\n".join(lines).rstrip() + "\n"


def render_actions(registry) -> Iterator[str]:
    yield '<a id="ref-actions"></a>'
    yield ""
    yield "### Actions and their parameters (`with`)"
    yield ""
    yield ("String parameters may be templates (`{{ event.data.x }}`); they are checked again "
           "against the schema after rendering, when the run starts. A template's output is "
           "capped at 64 KiB and the data it builds at 1 MiB (operations that would build more are "
           "refused before they allocate), and rendering stops at the task's `timeout` (at most "
           "30 s) with an error naming the parameter.")
    yield ""
    yield '<a id="event-data-in-commands"></a>'
    yield ""
    yield ("**Event data in commands.** Event data is hostile: it never becomes shell code or a "
           "command-line option.")
    yield ""
    yield ("- In `shell:` (and the script after `sh -c`, `bash -ec`... in `argv`), each "
           "`{{ value }}` is quoted for where it stands: outside quotes as one single-quoted "
           "word, inside `'...'` or `\"...\"` escaped for those quotes, so "
           "`shell: \"grep -- {{ event.data.word }} /var/log/app.log\"` is safe as written "
           "(and stays safe if you add quotes of your own). A value is refused, at `validate` where the template shows "
           "it and at run time always, where no quoting keeps it data: as the command name, as "
           "a redirection target (`> {{ x }}`), inside `$(...)` or backquotes, in a `#` comment, "
           "after a here-document `<<`, right after a backslash, and as an argument of a program "
           "that runs its arguments as shell code again (`ssh`, `sh -c`, `eval`, `su`, `xargs`, "
           "`watch`) unless you quote it for that second shell with `shell_quote`: "
           "`shell: \"ssh backup@host ls -- {{ event.data.dir | shell_quote }}\"`. Prefer "
           "`argv`: it runs no shell at all.")
    yield ("- In `argv`, a templated argument that starts with `-` is refused (it would be read "
           "as an option) unless a literal `--` comes before it, and the program (`argv[0]`) "
           "may not come from a template: `argv: [usermod, --lock, --, \"{{ event.data.user "
           "}}\"]`. Check such values with a condition too (`when: {data.user: {regex: "
           "\"^[a-z_][a-z0-9_-]*$\"}}`). When the program runs its arguments as shell code "
           "again (`ssh`, `su`, `watch`, `xargs`...), every value in them must go through "
           "`shell_quote`: `argv: [ssh, host, \"ls -- {{ event.data.dir | shell_quote }}\"]`.")
    yield ("- The `shell_quote` filter quotes a value as one POSIX shell word (`'it'\\''s'`), "
           "for command lines taskengine cannot see into: an argument handed to `ssh`, or a "
           "command string inside an `argv` element.")
    yield ""
    for name, item in sorted(registry.actions.items()):
        intro = (f"{item.description} Plugin `{item.plugin.name}`; "
                 f"idempotent: {'yes' if item.idempotent else 'no'}.")
        yield from render_object(item.schema, f"action {name}", 4, f"`{name}`", intro)


def main(argv: list[str]) -> int:
    text = render(builtin_registry())
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run python docs/gen_rule_reference.py",
                  file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
