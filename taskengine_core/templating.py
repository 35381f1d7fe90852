"""Render task parameters from the event and the run with Jinja2, inside its sandbox.

A task's parameters may contain templates such as ``"Sync {{ event.data.sync }} failed"``.
:class:`TemplateRenderer` renders every string of a parameter structure that contains ``{{`` or
``{%``; everything else passes through untouched.

Rules a user will notice:

* A string that is **exactly one expression**, ``"{{ event.data }}"`` with nothing around it
  (not even spaces), yields the expression's native value: a dict, list, number or ``None``
  stays one instead of becoming its ``str()``. Any other template renders to a string. Use
  ``"{{ x | tojson }}"`` to get JSON text, or add any text around the expression to get a
  string.
* Undefined names are errors (``StrictUndefined``), never empty strings; use the ``default``
  filter for optional values: ``{{ event.data.note | default('none') }}``.
* The output of one template is capped at ``max_output`` characters, and operations that would
  build a larger string, list or number (``'x' * 10**9``, ``~`` doubling in a loop, wide
  format widths, ``center``/``join``/``replace`` blow-ups) are refused before they allocate
  (the limits live in :mod:`taskengine_core.template_sandbox`).
  Event data is only ever *data* in the context, never rendered as a template itself.
* Rendering is bounded in time: every loop iteration, call and filter counts against a
  deadline, the task's ``timeout`` when it has one (at most ``max_seconds``, 30 s by default),
  so a template that loops over ``range(99999)`` twice nested stops with a clear error
  instead of holding a worker.
* ``tojson`` produces plain JSON (not HTML-escaped), keeping key order.
* Parameters a shell runs are rendered for the shell: an action's schema marks them with
  ``"x-taskengine-template": "shell"`` (``command.run``'s ``shell``), and ``"argv"`` marks a
  program's argument list (``command.run``'s ``argv``, whose script after ``sh -c`` is a shell
  parameter too). In a shell parameter each value is quoted for where it lands, or refused
  (:mod:`taskengine_core.template_shell`); in an argument list a value may not be the program,
  nor start with ``-`` (an option) unless a literal ``--`` comes before it. ``shell_quote``
  quotes a value as one shell word explicitly (for ``ssh host CMD`` and the like).

Secrets: this module never puts secret values into the template context. Secret references
(``${env:NAME}``) pass through rendering as literal text and are resolved by a later step
(:mod:`taskengine_core.secrets`), so a template cannot read, transform or leak a secret.
"""

from __future__ import annotations

import threading
import types
from collections import OrderedDict
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from jinja2 import nodes
from jinja2.environment import Template, TemplateExpression
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.runtime import Undefined, missing
from markupsafe import Markup

from taskengine_core.errors import TemplateError
from taskengine_core.template_lookup import MISSING, Lookup
from taskengine_core.template_sandbox import _Sandbox, _TimeUp, _TooLarge, _UndefinedName
from taskengine_core.template_shell import (Placeholders, ShellUnsafe, literal_pieces,
                                            runs_arguments_as_code, shell_script_index,
                                            static_problem, template_modes, unquoted_value_problem)

DEFAULT_MAX_OUTPUT = 64 * 1024
DEFAULT_MAX_SECONDS = 30.0  # the most one render_value call may take, whatever the task allows
_TOO_DEEP = "expressions nested too deeply (brackets or parentheses hundreds deep); simplify the template"


def _plain(value: Any, env: _Sandbox) -> Any:
    """A native expression result as plain data; undefined anywhere inside is an error."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v, env) for k, v in value.items()}
    if isinstance(value, (types.GeneratorType, Iterator)):
        value = env.bounded_list(value, "the expression", held=True)[0]
    if isinstance(value, (list, tuple, set, frozenset, range, KeysView, ValuesView, ItemsView)):
        return [_plain(v, env) for v in value]
    return value


class _Compiled:
    __slots__ = ("template", "expression", "lookup")

    def __init__(self, template: Template | None, expression: TemplateExpression | None,
                 lookup: Lookup | None = None):
        self.template, self.expression, self.lookup = template, expression, lookup


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _child(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _where(path: str) -> str:
    return f"template at {path}" if path else "template"


def _syntax_message(exc: TemplateSyntaxError) -> str:
    return f"syntax error on line {exc.lineno}: {exc.message}"


def _expr_text(node: nodes.Node) -> str | None:
    """``event.data['x']`` for a chain of names, attributes and constant subscripts."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, (nodes.Getattr, nodes.Getitem)):
        inner = _expr_text(node.node)
        if inner is None:
            return None
        if isinstance(node, nodes.Getattr):
            return f"{inner}.{node.attr}"
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, (str, int)):
            return f"{inner}[{node.arg.value!r}]"
    return None


class TemplateRenderer:
    """Renders templated parameters in one sandboxed Jinja2 environment.

    Compiled templates are cached by source in a bounded LRU (``cache_size`` entries); the
    renderer is safe to share between threads.
    """

    def __init__(self, *, max_output: int = DEFAULT_MAX_OUTPUT, cache_size: int = 512,
                 max_seconds: float = DEFAULT_MAX_SECONDS) -> None:
        self.max_output = max_output
        self.max_seconds = max_seconds
        self._env = _Sandbox(max_output)
        self._cache: OrderedDict[str, _Compiled] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._hits = self._misses = 0

    def render_value(self, value: Any, context: dict, *, path: str = "",
                     time_limit: float | None = None, schema: Mapping | None = None) -> Any:
        """Render every templated string in ``value`` (dicts and lists are walked).

        A string that is exactly one ``{{ expression }}`` returns the expression's native value;
        other templated strings return ``str``; non-template values are returned as they are.
        ``path`` prefixes the location named in errors (for example ``"with"``).
        ``time_limit``: seconds the whole rendering may take (the task's timeout); never more
        than ``max_seconds``. ``schema``: the action's parameter schema, whose
        ``x-taskengine-template`` marks say which parameters a shell runs (see module doc).

        :raises TemplateError: naming the path and the problem.
        """
        if time_limit is not None and 0 < time_limit < self.max_seconds:
            seconds, why = time_limit, "the task's timeout"
        else:
            seconds, why = self.max_seconds, "the limit on template rendering"
        modes = template_modes(schema) if isinstance(value, dict) else {}
        with self._env.rendering(seconds, why):
            if not modes:
                return self._render_value(value, context, path)
            return {key: self._render_as(modes.get(key), item, context, _child(path, key))
                    for key, item in value.items()}

    def _render_as(self, mode: str | None, value: Any, context: dict, path: str) -> Any:
        if mode == "shell" and isinstance(value, str):
            return self._render(value, context, path, Placeholders()) if _is_template(value) else value
        if mode == "argv" and isinstance(value, list):
            return self._render_argv(value, context, path)
        return self._render_value(value, context, path)

    def _render_argv(self, argv: list, context: dict, path: str) -> list:
        script, runner = shell_script_index(argv), runs_arguments_as_code(argv)
        out = []
        for i, item in enumerate(argv):
            where = f"{path}[{i}]"
            if i == script:
                out.append(self._render_as("shell", item, context, where))
                continue
            if runner and self._unquoted_values(item):
                raise TemplateError(f"{_where(where)}: {unquoted_value_problem(runner)}")
            rendered = self._render_value(item, context, where)
            if isinstance(item, str) and item.startswith(("{{", "{%")):
                if i == 0:
                    raise TemplateError(f"{_where(where)}: the program comes from a template; write "
                                        "the program itself in the rule file")
                text = str(rendered) if isinstance(rendered, (str, int, float)) else ""
                if text.startswith("-") and "--" not in argv[:i] and not (script and i > script):
                    shown = text if len(text) <= 40 else text[:37] + "..."
                    raise TemplateError(
                        f"{_where(where)}: the value {shown!r} starts with '-' and would be read as "
                        "an option; put '--' before it in argv (as in [usermod, --lock, --, NAME]) "
                        "and check the value with a condition")
            out.append(rendered)
        return out

    def _render_value(self, value: Any, context: dict, path: str) -> Any:
        render_value = self._render_value
        if isinstance(value, str):
            return self._render(value, context, path) if _is_template(value) else value
        if isinstance(value, dict):
            return {k: render_value(v, context, _child(path, k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [render_value(v, context, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    def check(self, value: Any, *, path: str = "", schema: Mapping | None = None) -> list[tuple[str, str]]:
        """Syntax-check every template in ``value`` without rendering: ``[(path, message)]``.
        With ``schema``, values in shell parameters are checked for where they stand too."""
        problems: list[tuple[str, str]] = []
        if isinstance(value, dict):
            for key, mode in template_modes(schema).items():
                item, where = value.get(key), _child(path, key)
                if mode == "argv" and isinstance(item, list):
                    runner = runs_arguments_as_code(item)
                    problems.extend((f"{where}[{i}]", unquoted_value_problem(runner))
                                    for i, arg in enumerate(item) if runner and self._unquoted_values(arg))
                    index = shell_script_index(item)
                    item, where = (item[index], f"{where}[{index}]") if index is not None else (None, "")
                if isinstance(item, str) and _is_template(item):
                    problems.extend(self._shell_problems(item, where))

        def walk(item: Any, where: str) -> None:
            if isinstance(item, str) and _is_template(item):
                try:  # parsing finds syntax errors at a tenth of the cost of compiling
                    self._check_names(self._env.parse(item))
                except TemplateSyntaxError as exc:
                    problems.append((where or "(value)", _syntax_message(exc)))
                except RecursionError:
                    problems.append((where or "(value)", _TOO_DEEP))
            elif isinstance(item, dict):
                for key, sub in item.items():
                    walk(sub, _child(where, key))
            elif isinstance(item, (list, tuple)):
                for i, sub in enumerate(item):
                    walk(sub, f"{where}[{i}]")

        walk(value, path)
        return problems

    def _unquoted_values(self, item: Any) -> bool:
        """Whether the template ``item`` outputs a value not passed through ``shell_quote``."""
        if not isinstance(item, str) or not _is_template(item):
            return False
        try:
            return None in literal_pieces(self._env.parse(item), [])
        except (TemplateSyntaxError, RecursionError):
            return False  # reported by the syntax check, or when rendering

    def _shell_problems(self, source: str, where: str) -> list[tuple[str, str]]:
        try:
            ast = self._env.parse(source)
        except (TemplateSyntaxError, RecursionError):
            return []  # reported by the syntax check
        problem = static_problem(literal_pieces(ast, []))
        return [(where, problem)] if problem else []

    def _check_names(self, ast: nodes.Template) -> None:
        """Unknown filters and tests, which Jinja only reports when compiling."""
        for node, known, kind in ((nodes.Filter, self._env.filters, "filter"),
                                  (nodes.Test, self._env.tests, "test")):
            for found in ast.find_all(node):
                if found.name not in known:
                    raise TemplateSyntaxError(f"No {kind} named {found.name!r}.", found.lineno)

    def cache_info(self) -> dict:
        """Hits, misses (compilations) and size of the compiled-template cache."""
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "size": len(self._cache),
                    "max_size": self._cache_size}

    # -- internals -----------------------------------------------------------------------

    def _compiled(self, source: str, whole: bool = False) -> _Compiled:
        key = "\x00" + source if whole else source  # whole: never a native expression
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                self._hits += 1
                return found
        compiled = self._compile(source, whole)
        with self._lock:
            self._misses += 1
            self._cache[key] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def _compile(self, source: str, whole: bool = False) -> _Compiled:
        ast = self._env.parse(source)
        body = ast.body
        if (
            not whole and source.startswith("{{") and source.endswith("}}")
            and len(body) == 1 and isinstance(body[0], nodes.Output)
            and len(body[0].nodes) == 1 and not isinstance(body[0].nodes[0], nodes.TemplateData)
        ):
            expr = body[0].nodes[0]
            assign = nodes.Template(
                [nodes.Assign(nodes.Name("result", "store"), expr, lineno=expr.lineno)], lineno=1
            )
            assign.set_environment(self._env)
            template = self._env.from_string(assign)
            return _Compiled(None, TemplateExpression(template, undefined_to_none=False), Lookup.of(expr))
        return _Compiled(self._env.from_string(ast), None)

    def _render(self, source: str, context: dict, path: str, shell: Placeholders | None = None) -> Any:
        where = _where(path)
        try:
            compiled = self._compiled(source, whole=shell is not None)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{where}: {_syntax_message(exc)}") from exc
        except RecursionError:
            raise TemplateError(f"{where}: {_TOO_DEEP}") from None
        try:
            if compiled.expression is not None:
                found = compiled.lookup(context) if compiled.lookup is not None else MISSING
                result = _plain(compiled.expression(context) if found is MISSING else found, self._env)
                if isinstance(result, str):
                    self._env.refuse_over(len(result), "the expression")
                return result
            if shell is None:
                return self._stream(compiled.template, context)
            with self._env.shell_values(shell):
                text = self._stream(compiled.template, context)
            return shell.assemble(text)
        except ShellUnsafe as exc:
            raise TemplateError(f"{where}: {exc}") from None
        except _UndefinedName as exc:
            raise TemplateError(f"{where}: {self._explain(exc, source, context)}") from exc
        except (_TooLarge, _TimeUp) as exc:
            raise TemplateError(f"{where}: {exc}") from exc
        except MemoryError:
            raise TemplateError(f"{where}: out of memory while rendering") from None
        except SecurityError as exc:
            raise TemplateError(f"{where}: not allowed in a template: {exc}") from exc
        except JinjaError as exc:
            raise TemplateError(f"{where}: {exc}") from exc
        except RecursionError as exc:
            raise TemplateError(f"{where}: recursion too deep") from exc
        except Exception as exc:  # noqa: BLE001 - a filter or operator failed on the data
            raise TemplateError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def _stream(self, template: Template, context: dict) -> str:
        parts, total = [], 0
        stream = template.generate(context)
        try:
            for chunk in stream:
                total += len(chunk)
                if total > self.max_output:
                    raise _TooLarge(f"template output exceeds {self.max_output} characters")
                parts.append(chunk)
        finally:
            stream.close()
        return "".join(parts)

    def _explain(self, exc: _UndefinedName, source: str, context: dict) -> str:
        """Turn Jinja's "'dict object' has no attribute 'x'" into "'event.data' has no ..."."""
        if exc.hint:
            return exc.hint
        if exc.obj is missing:
            names = ", ".join(sorted(map(str, context))) or "none"
            return f"{exc.name!r} is undefined (available names: {names})"
        chain = self._chain_to(exc.obj, exc.name, source, context)
        if chain is None:
            message = str(exc)
        elif exc.obj is None:  # e.g. a scheduled run, which has no event
            message = f"'{chain}' is none, so it has no {exc.name!r}"
        else:
            what = "attribute" if isinstance(exc.name, str) else "item"
            message = f"'{chain}' has no {what} {exc.name!r}"
        if isinstance(exc.obj, Mapping):
            keys = sorted(map(str, exc.obj))
            shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
            message += f" (it has: {shown})" if keys else " (it is empty)"
        return message

    def _chain_to(self, obj: Any, name: Any, source: str, context: dict) -> str | None:
        try:
            ast = self._env.parse(source)
        except TemplateSyntaxError:
            return None
        chains = []
        for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
            if isinstance(node, nodes.Getattr):
                key = node.attr
            else:
                key = getattr(node.arg, "value", missing)
            text = _expr_text(node.node)
            if key == name and text is not None and text not in chains:
                chains.append(text)
        for text in chains:  # prefer the chain that really evaluates to the object
            try:
                if self._env.compile_expression(text, undefined_to_none=False)(context) is obj:
                    return text
            except Exception:  # noqa: BLE001 - a loop variable, say; fall back to the first
                continue
        return chains[0] if chains else None

