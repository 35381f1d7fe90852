"""Templates written to exhaust the engine: memory stays bounded, time is bounded by the task's
timeout, and each refusal says what was refused."""

from __future__ import annotations

import threading

import pytest

from taskengine_core.errors import TemplateError
from taskengine_core.templating import TemplateRenderer


def _in_thread(func, *args, **kwargs):
    box: dict = {}

    def target():
        try:
            box["result"] = func(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "rendering did not stop"
    if "error" in box:
        raise box["error"]
    return box["result"]


OUT = "template output exceeds 65536 characters"
DATA = "template data exceeds 1048576 characters"


@pytest.mark.parametrize("expression, message", [
    # lazy sequences that a filter or a call would have held whole: 3 GB each before
    ('range(99999)|map("center", 60000)|sort|first', f"{DATA} (the sort filter)"),
    ('range(99999)|map("center", 60000)|reverse|first', f"{DATA} (the reverse filter)"),
    ('range(99999)|map("center", 60000)|slice(2)|first', f"{DATA} (the slice filter)"),
    ('range(99999)|map("center", 60000)|groupby("x")|first', f"{DATA} (the groupby filter)"),
    ('range(99999)|map("center", 60000)|unique|list', f"{DATA} (the unique filter)"),
    ('dict.fromkeys(range(99999)|map("center", 60000))', f"{DATA} (a call)"),
    ('dict(range(99999)|map("center", 60000)|batch(2))', f"{DATA} (a call)"),
    # filters whose arguments multiply the output: 0.7 to 3.6 GB before
    ('("x" * 60000)|wordwrap(1, wrapstring="y" * 60000)',
     f"{OUT} (the wordwrap filter would produce 3600060000)"),
    ('[1, 2, 3]|tojson(indent=10**8)', f"{OUT} (the tojson filter would produce 300000008)"),
    ('("x.com " * 10000)|urlize(target="y" * 60000)',
     f"{OUT} (the urlize filter would produce 600820000)"),
    # bytes, which the text guards did not cover: 1 GB each before
    ('"x".encode().center(10**9)', f"{OUT} (str.center would produce 1000000000)"),
    ('"x".encode().ljust(10**9)', f"{OUT} (str.ljust would produce 1000000000)"),
    ('"x".encode() * 10**9', f"{OUT} ('*' would produce 1000000000)"),
    # the ones the issue names, refused before too: kept refused
    ('"a" * 10**9', f"{OUT} ('*' would produce 1000000000)"),
    ('"x"|center(10**9)', f"{OUT} (the center filter would produce 1000000001)"),
    ('"{:>{}}".format("x", 10**9)', f"{OUT} (formatting would produce 1000000007)"),
    ('range(99999)|list|join("y" * 60000)', f"{OUT} (the join filter would produce 120002)"),
    ('range(10**9)|list', "OverflowError: Range too big. The sandbox blocks ranges larger than "
                          "MAX_RANGE (100000)."),
])
def test_memory_bombs_are_refused_before_they_allocate(expression, message):
    renderer = TemplateRenderer()
    with pytest.raises(TemplateError) as info:
        _in_thread(renderer.render_value, "{{ " + expression + " }}", {"event": None}, path="with.x")
    assert str(info.value) == f"template at with.x: {message}"


def test_lazy_pipelines_that_fit_still_work():
    renderer = TemplateRenderer()
    assert renderer.render_value('{{ range(5)|map("string")|sort|reverse|join(",") }}', {}) == "4,3,2,1,0"
    assert renderer.render_value('{{ dict.fromkeys(["a", "b"]|map("upper"), 1) }}', {}) == {"A": 1, "B": 1}
    assert renderer.render_value('{{ {"a": [1]}|tojson(indent=2) }}', {}) == '{\n  "a": [\n    1\n  ]\n}'
    assert renderer.render_value('{{ "a b c"|wordwrap(1, wrapstring="|") }}', {}) == "a|b|c"
    assert renderer.render_value(
        "{% for i in range(3) %}{{ loop.index }}/{{ loop.length }}{% if loop.last %}!{% endif %}"
        "{% endfor %}{% for x in [] %}{% else %}none{% endfor %}", {}) == "1/32/33/3!none"


NESTED_LOOPS = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}done"


def test_the_tasks_timeout_stops_a_template_that_loops_too_long():
    renderer = TemplateRenderer()
    with pytest.raises(TemplateError) as info:
        _in_thread(renderer.render_value, {"argv": ["echo", NESTED_LOOPS]}, {}, path="with",
                   time_limit=0.5)
    assert str(info.value) == ("template at with.argv[1]: rendering stopped after 0.5s (the task's "
                               "timeout); a loop or call in the template does too much work")


def test_without_a_timeout_the_renderers_own_limit_applies():
    renderer = TemplateRenderer(max_seconds=0.5)
    recursive = ("{% macro m(n) %}{% for i in range(99999) %}{{ m(n + 1) if n < 50 }}{% endfor %}"
                 "{% endmacro %}{{ m(0) }}")
    with pytest.raises(TemplateError) as info:
        _in_thread(renderer.render_value, recursive, {})
    assert str(info.value) == ("template: rendering stopped after 0.5s (the limit on template "
                               "rendering); a loop or call in the template does too much work")


def test_a_task_timeout_stops_rendering_in_a_real_run(applied, run_cli):
    applied("""
        tasks:
          slow:
            action: command.run
            timeout: 1s
            with: {argv: [echo, "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"]}
    """)
    result = _in_thread(run_cli, "tasks", "run", "slow")
    assert result.exit_code == 1
    assert result.stderr.rstrip().endswith(
        "task 'slow': template at argv[1]: rendering stopped after 1s (the task's timeout); "
        "a loop or call in the template does too much work")
