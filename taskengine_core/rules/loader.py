"""Reading rule files (YAML or JSON) while remembering where every key and item came from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from taskengine_core.errors import Problem
from taskengine_core.rules.limits import (MAX_ALIAS_NODES, MAX_DEPTH, Flags, compacted, data_problems,
                                          int_or_too_long)

try:  # a Rust YAML 1.2 parser: over 20x faster than PyYAML on large rule files
    import yaml_rs as _fast_yaml
except ImportError:  # pragma: no cover - PyYAML alone still works, only slower
    _fast_yaml = None

RULE_SUFFIXES = (".yaml", ".yml", ".json")
Position = tuple[int, int]

@dataclass
class Document:
    """One parsed rule file. Positions come from a second, slower parse that records them,
    made only when a problem has to be reported."""

    file: str
    data: Any
    text: str | None = field(default=None, repr=False)  # None: read the file again if needed
    digest: bytes | None = field(default=None, repr=False)  # of the text parsed (fingerprint.py)
    texts: dict | None = field(default=None, repr=False)  # (section, name) -> canonical text, when known
    _marked: tuple[Any, dict] | None = field(default=None, repr=False)

    def position(self, path: Iterable[Any]) -> Position | None:
        """Line and column of the deepest existing element on ``path`` (keys and indexes)."""
        if self._marked is None:
            text = self.text if self.text is not None else _read(Path(self.file))
            self._marked = _marked_parse(text or "")
        node, marks_by_id = self._marked
        best = (1, 1)
        for part in path:
            marks = marks_by_id.get(id(node))
            if isinstance(node, dict) and part in node:
                if isinstance(marks, dict) and part in marks:
                    best = marks[part]
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                if isinstance(marks, list):
                    best = marks[part]
                node = node[part]
            else:
                break
        return best

    def problem(self, path: tuple, message: str) -> Problem:
        line, column = self.position(path) or (None, None)
        return Problem(self.file, line, column, format_path(path), message)


def _marked_parse(text: str) -> tuple[Any, dict]:
    from taskengine_core.rules.marked_yaml import MarkingLoader, yaml

    loader = MarkingLoader(text)
    try:
        return loader.checked_data(), loader.marks
    except (yaml.YAMLError, ValueError, RecursionError):
        return None, {}
    finally:
        loader.dispose()


def format_path(path: Iterable[Any]) -> str:
    """``('tasks', 'backup', 'with', 'argv', 0)`` -> ``tasks.backup.with.argv[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Problem]]:
    """Rule files named directly or found (recursively, sorted) in the named directories."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())
            if not found:
                problems.append(Problem(str(path), None, None, "", "no rule files (*.yaml, *.yml, *.json) in this directory"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), None, None, "", "no such file or directory"))
    return files, problems


def load_document(path: Path) -> tuple[Document | None, list[Problem]]:
    """Parse one file; syntax errors come back as problems, never as exceptions. The document
    carries the digest of the text it was parsed from."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem(name, None, None, "", f"cannot read file: not UTF-8 text (byte {exc.start}: "
                              f"{exc.reason}); rule files are UTF-8 YAML or JSON")]
    except OSError as exc:
        return None, [Problem(name, None, None, "", f"cannot read file: {exc.strerror or exc}")]
    doc, problems = _parse_text(name, text, path.suffix == ".json")
    if doc is not None:
        from taskengine_core.rules.fingerprint import text_digest

        doc.digest = text_digest(text)
    return doc, problems


def _parse_text(name: str, text: str, is_json: bool) -> tuple[Document | None, list[Problem]]:
    if is_json:
        return _load_json(name, text)
    if _fast_yaml is not None:
        try:  # dates stay text, as written; aliases are bounded, and counted again below
            limits = _fast_yaml.AliasLimits(max_total_replayed_events=4 * MAX_ALIAS_NODES)
            data = _fast_yaml.loads(text, parse_datetime=False, alias_limits=limits)
        except Exception:  # noqa: BLE001 - let PyYAML find and describe every problem
            pass
        else:
            flags = Flags()
            data = {} if data is None else compacted(data, flags)
            return _checked(Document(name, data), flags)
    return _load_with_marks(name, text)


def _load_json(name: str, text: str) -> tuple[Document | None, list[Problem]]:
    duplicates: list[tuple[int, str]] = []

    def pairs(items: list) -> dict:
        out: dict = {}
        for key, value in items:
            if key in out:
                duplicates.append((id(out), key))
            out[key] = value
        return out

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_int=int_or_too_long)
    except json.JSONDecodeError as exc:
        return None, [Problem(name, exc.lineno, exc.colno, "", f"JSON syntax error: {exc.msg}")]
    except RecursionError:
        return None, [Problem(name, None, None, "", f"nested more than {MAX_DEPTH} levels deep")]
    flags = Flags()
    if duplicates:  # report them with positions from the marking parser (JSON is YAML)
        _, problems = _load_with_marks(name, text)
        problems = [p for p in problems if p.message.startswith("duplicate key")]
        if not problems:
            paths = _paths_by_id(data)
            problems = [Problem(name, None, None, format_path(paths.get(owner, ()) + (key,)),
                                f"duplicate key {key!r}: each key may appear once in a mapping")
                        for owner, key in duplicates]
        return None, problems
    return _checked(Document(name, compacted(data, flags)), flags)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _checked(doc: Document, flags: Flags) -> tuple[Document | None, list[Problem]]:
    if not flags.suspect:
        return doc, []
    problems = [doc.problem(path, message) for path, message in data_problems(doc.data)]
    return (None, problems) if problems else (doc, [])


def _load_with_marks(name: str, text: str) -> tuple[Document | None, list[Problem]]:
    from taskengine_core.rules.marked_yaml import AliasError, MarkingLoader, yaml

    loader = MarkingLoader(text)
    try:
        data = loader.checked_data()
    except AliasError as exc:
        mark = exc.problem_mark
        return None, [Problem(name, mark.line + 1, mark.column + 1, "", exc.problem)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return None, [Problem(name, line, col, "", f"YAML syntax error: {what}")]
    except yaml.YAMLError as exc:
        return None, [Problem(name, None, None, "", f"YAML error: {exc}")]
    except RecursionError:
        return None, [Problem(name, None, None, "", f"nested more than {MAX_DEPTH} levels deep")]
    except ValueError as exc:  # a constructor refused a value (a !!binary that is not base64...)
        return None, [Problem(name, None, None, "", f"YAML error: {exc}")]
    finally:
        loader.dispose()
    data = {} if data is None else data
    doc = Document(name, data, text, (data, loader.marks))
    unusable = data_problems(data)
    if unusable:
        return None, [doc.problem(path, message) for path, message in unusable]
    problems = []
    if loader.duplicates:
        paths = _paths_by_id(doc.data)
        for owner, (line, col), key in loader.duplicates:
            path = format_path(paths.get(owner, ()) + (key,))
            problems.append(Problem(name, line, col, path, f"duplicate key {key!r}: each key may appear once in a mapping"))
    return doc, problems


def _paths_by_id(data: Any, path: tuple = ()) -> dict[int, tuple]:
    found = {id(data): path}
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        if isinstance(value, (dict, list)):
            found.update(_paths_by_id(value, path + (key,)))
    return found
