"""The sandboxed Jinja2 environment behind :mod:`taskengine_core.templating`, with size limits.

Jinja2's ``ImmutableSandboxedEnvironment`` blocks unsafe attribute access; on top of it this
module refuses, before they allocate, operations that would build a string, list or number larger
than the renderer's ``max_output``: ``'x' * 10**9``, ``~`` doubling in a loop, wide format widths,
``center``/``join``/``replace`` blow-ups, and block output (macros, ``{% set %}`` blocks) past
the limit. Undefined names raise :class:`_UndefinedName`, which remembers what was looked up
where so the renderer can explain it.

Work is bounded too: a filter or call handed a lazy sequence (``range(99999)|map(...)``)
materialises it only within the data limit, and every loop iteration, call and filter counts
against the render's deadline (:meth:`_Sandbox.rendering`), so neither memory nor CPU time can
run away however the template is written.

Private to the templating package: use :class:`taskengine_core.templating.TemplateRenderer`.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, optimizeconst
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import missing
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, soft_str

from taskengine_core.template_shell import shell_quote
from taskengine_core.template_sizes import (_is_lazy, _json_size, _replaced_size, _Ticking, _tojson,
                                            _weight)

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_FIELD = re.compile(r"\{[^{}]*\}")


class _TooLarge(SecurityError):
    """An operation would exceed the renderer's size limit; refused before allocating."""


class _TimeUp(SecurityError):
    """Rendering went past its deadline (the task's timeout, or the renderer's own limit)."""


# Filters that consume a lazy sequence one item at a time (or are bounded themselves), so they
# may receive a generator; every other filter gets a list, built within the data limit.
_LAZY_FILTERS = frozenset({"map", "select", "reject", "selectattr", "rejectattr", "first", "min",
                           "max", "join", "list", "sum", "batch", "default", "d", "string",
                           "_te_loop"})
_TEXT_TYPES = (str, bytes)
_SEQUENCES = (str, bytes, list, tuple)


class _UndefinedName(UndefinedError):
    """An ``UndefinedError`` that remembers what was looked up where, for a readable message."""

    def __init__(self, message: str, *, name: Any, obj: Any, hint: str | None) -> None:
        super().__init__(message)
        self.name, self.obj, self.hint = name, obj, hint


class _Undefined(StrictUndefined):
    __slots__ = ()

    def __init__(self, hint=None, obj=missing, name=None, exc=UndefinedError):
        if exc is UndefinedError:  # keep SecurityError (unsafe attribute) as it is
            exc = functools.partial(_UndefinedName, name=name, obj=obj, hint=hint)
        super().__init__(hint, obj, name, exc)


class _Buffer(list):
    """The output buffer of a macro, a ``{% set %}`` block or a filter block, bounded."""

    __slots__ = ("_env", "_size")

    def __init__(self, env: "_Sandbox") -> None:
        super().__init__()
        self._env, self._size = env, 0

    def append(self, item: str) -> None:
        self._size += len(item)
        self._env.refuse_over(self._size, "a block")
        super().append(item)

    def extend(self, items) -> None:
        for item in items:
            self.append(item)


class _CodeGenerator(CodeGenerator):
    def buffer(self, frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame) -> None:
        # ``a ~ b`` cannot be intercepted like binary operators; route it through a size check
        self.write("environment.join_values(context.eval_ctx, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox plus size guards on every operation that can multiply memory."""

    intercepted_binops = frozenset({"*", "+", "**", "%"})
    code_generator_class = _CodeGenerator

    def __init__(self, max_output: int) -> None:
        super().__init__(undefined=_Undefined, autoescape=False, keep_trailing_newline=True,
                         finalize=self._finalize)
        self.max_output = max_output
        self.max_int_bits = max(64, max_output * 4)
        self._state = threading.local()  # the deadline of the render on this thread
        for name in ("lipsum", "cycler", "joiner"):  # lipsum(n=10**9) allocates freely
            self.globals.pop(name, None)
        self.filters["tojson"] = _tojson
        self.filters["shell_quote"] = shell_quote
        self.filters["_te_loop"] = lambda items: _Ticking(items, self)
        self._guard_filters()

    # -- time --------------------------------------------------------------------------------

    def _parse(self, source, name, filename):
        ast = super()._parse(source, name, filename)
        for loop in ast.find_all(nodes.For):  # every iteration of every loop meets the deadline
            loop.iter = nodes.Filter(loop.iter, "_te_loop", [], [], None, None, lineno=loop.lineno)
        return ast

    @contextlib.contextmanager
    def rendering(self, seconds: float, why: str):
        """Bound the renders made inside the block (on this thread) to ``seconds`` of work."""
        state = self._state
        if getattr(state, "deadline", None) is not None:  # nested: the outer deadline holds
            yield
            return
        state.deadline, state.seconds, state.why = time.monotonic() + seconds, seconds, why
        try:
            yield
        finally:
            state.deadline = None

    def tick(self) -> None:
        deadline = getattr(self._state, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            state = self._state
            raise _TimeUp(f"rendering stopped after {state.seconds:g}s ({state.why}); "
                          "a loop or call in the template does too much work")

    # -- size checks ---------------------------------------------------------------------

    def output_buffer(self) -> _Buffer:
        return _Buffer(self)

    def _finalize(self, value: Any) -> Any:  # every {{ value }} passes here before str()
        if isinstance(value, (list, tuple, dict, set, frozenset)):
            self.refuse_over(_weight(value, self.max_output), "the value")
        placeholders = getattr(self._state, "shell", None)
        if placeholders is not None:  # a shell command line: the value waits to be quoted
            return placeholders.mark(value)
        return value

    @contextlib.contextmanager
    def shell_values(self, placeholders):
        """Inside the block, every ``{{ value }}`` rendered on this thread becomes a placeholder
        in ``placeholders`` (see :mod:`taskengine_core.template_shell`)."""
        self._state.shell = placeholders
        try:
            yield
        finally:
            self._state.shell = None

    def weight(self, value: Any) -> int:
        return _weight(value, self.max_output)

    def bounded_list(self, iterable, what: str, extra: int = 0, *, held: bool = False):
        """Materialise ``iterable``, refusing as soon as its text would pass the output limit
        (or, with ``held``, the larger limit on data a template may hold: 16 × the output)."""
        limit = self.max_output * (16 if held else 1)
        items, size = [], 0
        for item in iterable:
            size += extra + _weight(item, limit)
            if size > limit:
                if held:
                    raise _TooLarge(f"template data exceeds {limit} characters ({what})")
                self.refuse_over(size, what)
            items.append(item)
        return items, size

    def refuse_over(self, size: int, what: str) -> None:
        if size > self.max_output:
            raise _TooLarge(f"template output exceeds {self.max_output} characters "
                            f"({what} would produce {size})")

    def _check_format(self, fmt: str, values: list, style: str) -> None:
        if style == "%":
            specs = _PERCENT_SPEC.findall(fmt)
            numbers = [n for spec in specs for n in spec if n and n != "*"]
            star = any("*" in spec for spec in specs)
        else:
            fields = _BRACE_FIELD.findall(fmt)
            specs = fields
            numbers = [n for f in fields for n in re.findall(r"\d+", f.partition(":")[2])]
            star = bool(re.search(r"\{[^{}]*\{", fmt))
        width = max((int(n) for n in numbers), default=0)
        if star:
            width = max([width] + [v for v in values if isinstance(v, int)])
        widest = max((self.weight(v) for v in values), default=0)
        self.refuse_over(len(fmt) + len(specs) * (widest + width), "formatting")

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        seq = _SEQUENCES
        if operator == "*":
            if isinstance(left, seq) and isinstance(right, int):
                self.refuse_over(self.weight(left) * right, "'*'")
            elif isinstance(right, seq) and isinstance(left, int):
                self.refuse_over(self.weight(right) * left, "'*'")
            elif isinstance(left, int) and isinstance(right, int):
                self._check_bits(left.bit_length() + right.bit_length(), "'*'")
        elif operator == "+" and isinstance(left, seq) and isinstance(right, seq):
            self.refuse_over(self.weight(left) + self.weight(right), "'+'")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right > 0:
                self._check_bits(right * left.bit_length(), "'**'")
        elif operator == "%" and isinstance(left, _TEXT_TYPES):
            values = list(right.values()) if isinstance(right, Mapping) else (
                list(right) if isinstance(right, tuple) else [right])
            fmt = left.decode("latin-1") if isinstance(left, bytes) else left
            self._check_format(fmt, values, "%")
        return super().call_binop(context, operator, left, right)

    def _check_bits(self, bits: int, what: str) -> None:
        if bits > self.max_int_bits:
            raise _TooLarge(f"number too large: {what} would produce a {bits}-bit number")

    def call(self, context, obj, /, *args, **kwargs):  # noqa: D102
        self.tick()
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, _TEXT_TYPES):
            args = self._check_str_method(owner, getattr(obj, "__name__", ""), list(args), kwargs)
        # dict(...), dict.fromkeys(...), namespace(...) would hold a lazy sequence whole
        if any(_is_lazy(a) for a in args) or any(_is_lazy(v) for v in kwargs.values()):
            args = [self.bounded_list(a, "a call", held=True)[0] if _is_lazy(a) else a for a in args]
            kwargs = {k: self.bounded_list(v, "a call", held=True)[0] if _is_lazy(v) else v
                      for k, v in kwargs.items()}
        return super().call(context, obj, *args, **kwargs)

    def call_filter(self, name, value, args=None, kwargs=None, context=None, eval_ctx=None):
        self.tick()  # map('...') and friends call a filter per item through here
        return super().call_filter(name, value, args, kwargs, context, eval_ctx)

    def call_test(self, name, value, args=None, kwargs=None, context=None, eval_ctx=None):
        self.tick()
        return super().call_test(name, value, args, kwargs, context, eval_ctx)

    def _check_str_method(self, s: str | bytes, name: str, args: list, kwargs: dict) -> list:
        def arg(i, key, default):
            return args[i] if len(args) > i else kwargs.get(key, default)

        if name in ("center", "ljust", "rjust", "zfill"):
            width = arg(0, "width", 0)
            self.refuse_over(width if isinstance(width, int) else 0, f"str.{name}")
        elif name == "expandtabs":
            tab = arg(0, "tabsize", 8)
            self.refuse_over(len(s) * (tab if isinstance(tab, int) else 0), "str.expandtabs")
        elif name == "replace" and len(args) >= 2:
            size = _replaced_size(s, args[0], args[1], arg(2, "count", -1))
            self.refuse_over(size, "str.replace")
        elif name == "join" and args:
            args[0], _ = self.bounded_list(args[0], "str.join", extra=len(s))
        elif name == "translate" and args and isinstance(args[0], Mapping):
            longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
            self.refuse_over(len(s) * longest, "str.translate")
        return args

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt, is_map = value.__self__, value.__name__ == "format_map"

        def guarded(*args, **kwargs):
            if is_map and args and isinstance(args[0], Mapping):
                values = list(args[0].values())
            else:
                values = list(args) + list(kwargs.values())
            self._check_format(fmt, values, "{")
            return wrapper(*args, **kwargs)

        return guarded

    def concat(self, parts) -> str:  # joins macro, {% set %}-block and filter-block output
        buf, total = [], 0
        for part in parts:
            total += len(part)
            self.refuse_over(total, "a block")
            buf.append(part)
        return "".join(buf)

    def join_values(self, eval_ctx, values: tuple) -> str:
        self.refuse_over(sum(self.weight(v) for v in values), "'~'")
        parts = [soft_str(v) for v in values]
        if eval_ctx.autoescape and any(hasattr(p, "__html__") for p in parts):
            return Markup("").join(parts)
        return "".join(parts)

    def _guard_filters(self) -> None:
        def center(value, width=80):
            return value, self.weight(value) + (width if isinstance(width, int) else 0)

        def indent(s, width=4, *args, **kwargs):
            self.refuse_over(self.weight(s), "the indent filter")
            s = soft_str(s)
            w = width if isinstance(width, int) else len(soft_str(width))
            return s, len(s) + (s.count("\n") + 1) * w

        def format_(value, *args, **kwargs):
            self.refuse_over(self.weight(value), "the format filter")
            self._check_format(soft_str(value), list(args) + list(kwargs.values()), "%")
            return value, 0

        def join(value, d="", attribute=None):
            if attribute is not None:
                items = list(value)
                return items, len(soft_str(d)) * len(items)
            return self.bounded_list(value, "the join filter", extra=len(soft_str(d)))

        def replace(s, old, new, count=None):
            self.refuse_over(self.weight(s), "the replace filter")
            return s, _replaced_size(soft_str(s), soft_str(old), soft_str(new), count)

        def sum_(iterable, attribute=None, start=0):
            if not isinstance(start, (str, list, tuple)):
                return iterable, 0
            items, size = self.bounded_list(iterable, "the sum filter")
            return items, self.weight(start) + size

        def batch(value, count, fill_with=None, *args):
            return value, (count if isinstance(count, int) and fill_with is not None else 0)

        def slice_(value, slices, fill_with=None):
            return value, (slices if isinstance(slices, int) else 0)

        def list_(value):
            if isinstance(value, (str, list, tuple, dict)):
                return value, 0  # already in memory: nothing new is held
            return self.bounded_list(value, "the list filter", held=True)[0], 0

        def text(value, *args, **kwargs):
            return value, self.weight(value)

        def wordwrap(s, width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True):
            text, wrap = soft_str(s), soft_str(wrapstring) if wrapstring is not None else "\n"
            breaks = min(len(text), len(text) // max(1, width if isinstance(width, int) else 1)
                         + text.count(" ") + text.count("\n") + 1)
            return s, len(text) + breaks * len(wrap)

        def tojson(value, indent=None):
            if not isinstance(indent, int) or isinstance(indent, bool) or indent < 0:
                return value, _json_size(value, 0, self.max_output)  # json.dumps judges the rest
            return value, _json_size(value, indent or 0, self.max_output)

        def urlize(value, trim_url_limit=None, nofollow=False, target=None, rel=None,
                   extra_schemes=None):
            text = soft_str(value)
            words = len(text.split()) or 1
            extra = len(soft_str(target or "")) + len(soft_str(rel or "")) + 64
            return value, 3 * len(text) + words * extra

        estimates = {"center": center, "indent": indent, "format": format_, "join": join,
                     "replace": replace, "sum": sum_, "batch": batch, "slice": slice_,
                     "list": list_, "string": text, "tojson": tojson, "pprint": text,
                     "wordwrap": wordwrap, "urlize": urlize}
        for name in list(self.filters):
            if name != "_te_loop":
                self.filters[name] = self._guarded_filter(name, self.filters[name], estimates.get(name))

    def _guarded_filter(self, name: str, original: Callable, estimate: Callable | None) -> Callable:
        skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0
        materialise = name not in _LAZY_FILTERS

        @functools.wraps(original)  # keeps jinja_pass_arg
        def guarded(*args, **kwargs):
            self.tick()
            value = args[skip] if len(args) > skip else None
            if materialise and _is_lazy(value):
                value = self.bounded_list(value, f"the {name} filter", held=True)[0]
                args = (*args[:skip], value, *args[skip + 1:])
            if estimate is None:
                return original(*args, **kwargs)
            value, size = estimate(*args[skip:], **kwargs)
            self.refuse_over(size, f"the {name} filter")
            return original(*args[:skip], value, *args[skip + 1:], **kwargs)

        return guarded
