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
  CPU time is not bounded: templates come from rule files written by operators, and event data
  is only ever *data* in the context, never rendered as a template itself.
* ``tojson`` produces plain JSON (not HTML-escaped), keeping key order.

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
from taskengine_core.template_sandbox import _Sandbox, _TooLarge, _UndefinedName

DEFAULT_MAX_OUTPUT = 64 * 1024


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
    __slots__ = ("template", "expression")

    def __init__(self, template: Template | None, expression: TemplateExpression | None):
        self.template, self.expression = template, expression


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

    def __init__(self, *, max_output: int = DEFAULT_MAX_OUTPUT, cache_size: int = 512) -> None:
        self.max_output = max_output
        self._env = _Sandbox(max_output)
        self._cache: OrderedDict[str, _Compiled] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._hits = self._misses = 0

    def render_value(self, value: Any, context: dict, *, path: str = "") -> Any:
        """Render every templated string in ``value`` (dicts and lists are walked).

        A string that is exactly one ``{{ expression }}`` returns the expression's native value;
        other templated strings return ``str``; non-template values are returned as they are.
        ``path`` prefixes the location named in errors (for example ``"with"``).

        :raises TemplateError: naming the path and the problem.
        """
        if isinstance(value, str):
            return self._render(value, context, path) if _is_template(value) else value
        if isinstance(value, dict):
            return {k: self.render_value(v, context, path=_child(path, k))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.render_value(v, context, path=f"{path}[{i}]")
                    for i, v in enumerate(value)]
        return value

    def check(self, value: Any, *, path: str = "") -> list[tuple[str, str]]:
        """Syntax-check every template in ``value`` without rendering: ``[(path, message)]``."""
        problems: list[tuple[str, str]] = []

        def walk(item: Any, where: str) -> None:
            if isinstance(item, str) and _is_template(item):
                try:  # parsing finds syntax errors at a tenth of the cost of compiling
                    self._check_names(self._env.parse(item))
                except TemplateSyntaxError as exc:
                    problems.append((where or "(value)", _syntax_message(exc)))
            elif isinstance(item, dict):
                for key, sub in item.items():
                    walk(sub, _child(where, key))
            elif isinstance(item, (list, tuple)):
                for i, sub in enumerate(item):
                    walk(sub, f"{where}[{i}]")

        walk(value, path)
        return problems

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

    def _compiled(self, source: str) -> _Compiled:
        with self._lock:
            found = self._cache.get(source)
            if found is not None:
                self._cache.move_to_end(source)
                self._hits += 1
                return found
        compiled = self._compile(source)
        with self._lock:
            self._misses += 1
            self._cache[source] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def _compile(self, source: str) -> _Compiled:
        ast = self._env.parse(source)
        body = ast.body
        if (
            source.startswith("{{") and source.endswith("}}")
            and len(body) == 1 and isinstance(body[0], nodes.Output)
            and len(body[0].nodes) == 1 and not isinstance(body[0].nodes[0], nodes.TemplateData)
        ):
            expr = body[0].nodes[0]
            assign = nodes.Template(
                [nodes.Assign(nodes.Name("result", "store"), expr, lineno=expr.lineno)], lineno=1
            )
            assign.set_environment(self._env)
            template = self._env.from_string(assign)
            return _Compiled(None, TemplateExpression(template, undefined_to_none=False))
        return _Compiled(self._env.from_string(ast), None)

    def _render(self, source: str, context: dict, path: str) -> Any:
        where = _where(path)
        try:
            compiled = self._compiled(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{where}: {_syntax_message(exc)}") from exc
        try:
            if compiled.expression is not None:
                result = _plain(compiled.expression(context), self._env)
                if isinstance(result, str):
                    self._env.refuse_over(len(result), "the expression")
                return result
            return self._stream(compiled.template, context)
        except _UndefinedName as exc:
            raise TemplateError(f"{where}: {self._explain(exc, source, context)}") from exc
        except _TooLarge as exc:
            raise TemplateError(f"{where}: {exc}") from exc
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


from taskengine_core.template_sandbox import _Undefined  # noqa: E402 - kept apart from the imports above


class AbsentEvent(_Undefined):
    """``event`` for a run that has none (run by hand, fired by a schedule): every attribute
    and item under it is undefined but defaultable, so ``{{ event.data.name | default('x') }}``
    renders ``x`` and ``{% if event %}`` is false; using a value without a default fails with
    a message naming the expression and why the run has no event."""

    __slots__ = ()

    def __init__(self, why: str, path: str = "event") -> None:
        hint = (f"'{path}' is undefined: this run has no event ({why}); give a default, e.g. "
                f"{{{{ {path} | default('...') }}}}, or test {{% if event %}}")
        super().__init__(hint=hint, obj=why, name=path)

    def __getattr__(self, name: str) -> "AbsentEvent":
        if name[:2] == "__":
            raise AttributeError(name)
        return AbsentEvent(self._undefined_obj, f"{self._undefined_name}.{name}")

    def __getitem__(self, key: Any) -> "AbsentEvent":
        return AbsentEvent(self._undefined_obj, f"{self._undefined_name}[{key!r}]")

    def __bool__(self) -> bool:
        return False
