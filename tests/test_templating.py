"""Rendering task parameters from the event and the run, in Jinja2's sandbox."""

from __future__ import annotations

import threading

import pytest

from taskengine_core.errors import TemplateError
from taskengine_core.templating import TemplateRenderer

CONTEXT = {
    "event": {
        "id": "ev-1",
        "type": "sync.failed",
        "time": "2025-01-02T03:04:05Z",
        "data": {"user": "alice", "sync": "nightly", "error": "disk full", "count": 3,
                 "tags": ["a", "b"], "nested": {"deep": [1, {"x": None}]}},
    },
    "run": {"id": "run-42", "attempt": 1},
    "task": {"name": "alert-sync-error"},
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKENGINE_HOME", str(tmp_path / "home"))


@pytest.fixture
def renderer() -> TemplateRenderer:
    return TemplateRenderer()


def error_of(renderer: TemplateRenderer, source, *, path="with.text", context=CONTEXT) -> str:
    with pytest.raises(TemplateError) as info:
        renderer.render_value(source, context, path=path)
    return str(info.value)


# --- rendering --------------------------------------------------------------------------------


def test_renders_nested_structures_and_leaves_other_values_alone(renderer):
    params = {
        "webhook": "ops-alerts",
        "payload": {
            "text": "Sync {{ event.data.sync }} failed: {{ event.data.error }}",
            "who": ["{{ event.data.user }}", "static", 7, None, True],
            "meta": {"run": "{{ run.id }}/{{ task.name }}", "at": "{{ event.time }}"},
        },
        "count": 5,
        "literal": "${env:OPS_TOKEN} is resolved later, {not a template}",
    }
    assert renderer.render_value(params, CONTEXT) == {
        "webhook": "ops-alerts",
        "payload": {
            "text": "Sync nightly failed: disk full",
            "who": ["alice", "static", 7, None, True],
            "meta": {"run": "run-42/alert-sync-error", "at": "2025-01-02T03:04:05Z"},
        },
        "count": 5,
        "literal": "${env:OPS_TOKEN} is resolved later, {not a template}",
    }
    assert params["payload"]["text"].startswith("Sync {{")  # the input is not modified


def test_statements_render(renderer):
    source = "{% for t in event.data.tags %}[{{ t }}]{% endfor %}{% if event.data.count > 2 %}!{% endif %}"
    assert renderer.render_value(source, CONTEXT) == "[a][b]!"


def test_a_single_expression_returns_the_native_value(renderer):
    assert renderer.render_value("{{ event.data }}", CONTEXT) == CONTEXT["event"]["data"]
    assert renderer.render_value("{{ event.data.count }}", CONTEXT) == 3
    assert renderer.render_value("{{ event.data.count + 1 }}", CONTEXT) == 4
    assert renderer.render_value("{{ event.data.nested.deep[1].x }}", CONTEXT) is None
    assert renderer.render_value("{{ event.data.tags | map('upper') }}", CONTEXT) == ["A", "B"]
    assert renderer.render_value("{{- event.data.count -}}", CONTEXT) == 3


def test_any_text_around_the_expression_gives_a_string(renderer):
    assert renderer.render_value(" {{ event.data.count }}", CONTEXT) == " 3"
    assert renderer.render_value("{{ event.data.count }}{{ 1 }}", CONTEXT) == "31"
    assert renderer.render_value("{{ event.data.tags }} ", CONTEXT) == "['a', 'b'] "


def test_native_values_are_copies_not_the_event_itself(renderer):
    data = renderer.render_value("{{ event.data }}", CONTEXT)
    data["user"] = "mallory"
    assert CONTEXT["event"]["data"]["user"] == "alice"


def test_trailing_newlines_are_kept(renderer):
    assert renderer.render_value("{{ run.id }}\n", CONTEXT) == "run-42\n"


def test_tojson_produces_plain_json(renderer):
    out = renderer.render_value('{"d": {{ event.data.nested | tojson }}, "e": {{ "<&>" | tojson }}}', CONTEXT)
    assert out == '{"d": {"deep": [1, {"x": null}]}, "e": "<&>"}'


def test_default_filter_for_optional_values(renderer):
    assert renderer.render_value("{{ event.data.note | default('none') }}", CONTEXT) == "none"
    assert renderer.render_value("{{ event.data.user | default('none') }}", CONTEXT) == "alice"


# --- errors name the path and the problem ----------------------------------------------------


def test_undefined_attribute_names_the_expression(renderer):
    message = error_of(renderer, "{{ event.dataa.user }}", path="with.payload.text")
    assert message == (
        "template at with.payload.text: 'event' has no attribute 'dataa' "
        "(it has: data, id, time, type)"
    )


def test_undefined_deeper_attribute(renderer):
    message = error_of(renderer, "Hello {{ event.data.usr }}!")
    assert message.startswith("template at with.text: 'event.data' has no attribute 'usr' (it has:")


def test_a_run_without_an_event(renderer):
    context = {**CONTEXT, "event": None}
    assert error_of(renderer, "{{ event.data.user }}", context=context) == (
        "template at with.text: 'event' is none, so it has no 'data'"
    )


def test_undefined_name_lists_what_exists(renderer):
    assert error_of(renderer, "{{ evnt.type }}") == (
        "template at with.text: 'evnt' is undefined (available names: event, run, task)"
    )


def test_undefined_inside_a_native_result_is_an_error(renderer):
    assert "'event' has no attribute 'nope'" in error_of(renderer, "{{ [event.nope] }}")


def test_missing_list_item(renderer):
    assert "'event.data.tags' has no item 5" in error_of(renderer, "{{ event.data.tags[5] }}")


def test_nested_paths_are_named(renderer):
    with pytest.raises(TemplateError, match=r"^template at with\.items\[1\]\.b: 'nope' is undefined"):
        renderer.render_value({"items": ["ok", {"b": "{{ nope }}"}]}, CONTEXT, path="with")


def test_syntax_error_names_the_line(renderer):
    message = error_of(renderer, "line one\n{{ event.data.user }\n")
    assert message.startswith("template at with.text: syntax error on line 2: ")


def test_check_reports_every_syntax_error_without_a_context(renderer):
    value = {"payload": {"text": "{{ a b }}", "ok": "{{ event.x }}", "list": ["{% if %}", 3]},
             "filter": "{{ x | nosuchfilter }}"}
    problems = renderer.check(value, path="with")
    assert [path for path, _ in problems] == ["with.payload.text", "with.payload.list[0]", "with.filter"]
    assert problems[0][1] == "syntax error on line 1: expected token 'end of print statement', got 'b'"
    assert "No filter named 'nosuchfilter'" in problems[2][1]
    assert renderer.check({"ok": "{{ anything.at.all }}", "n": 1}) == []


def test_a_failing_filter_is_a_template_error(renderer):
    assert "ZeroDivisionError" in error_of(renderer, "{{ 1 / 0 }}")


# --- size limits --------------------------------------------------------------------------------


def test_output_over_the_limit_is_refused():
    renderer = TemplateRenderer(max_output=100)
    assert renderer.render_value("{{ 'x' * 100 }}", CONTEXT) == "x" * 100
    with pytest.raises(TemplateError, match="template output exceeds 100 characters"):
        renderer.render_value("{% for i in range(101) %}x{% endfor %}", CONTEXT)


def test_default_limit_is_64_kib(renderer):
    assert len(renderer.render_value("{% for i in range(65536) %}x{% endfor %}", CONTEXT)) == 65536
    assert "template output exceeds 65536 characters" in error_of(
        renderer, "{% for i in range(65537) %}x{% endfor %}")


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**9 }}",
        "{{ 10**9 * 'x' }}",
        "{{ ['x'] * 10**9 }}",
        "{{ ('x' * 60000) + ('x' * 60000) }}",
        "{{ 'x' | center(10**9) }}",
        "{{ 'x'.ljust(10**9) }}",
        "{{ 'x' | indent(10**9) }}",
        "{{ '{:>1000000000}'.format(1) }}",
        "{{ ('{0}' * 20000).format('x' * 60000) }}",
        "{{ '%1000000000d' % 1 }}",
        "{{ '%*d' % (10**9, 1) }}",
        "{{ '%1000000000d' | format(1) }}",
        "{{ range(100000) | join('x' * 60000) }}",
        "{{ ('x' * 60000).replace('x', 'x' * 60000) }}",
        "{{ ('x' * 60000) | replace('x', 'x' * 60000) }}",
        "{{ [1] | batch(10**9, 0) | list }}",
        "{% set ns = namespace(s='x' * 60000) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}{{ twice(twice(twice('x' * 60000))) }}",
        "{% set big %}{% for i in range(100000) %}{{ 'y' * 60000 }}{% endfor %}{% endset %}",
        "{{ ['x' * 1000] * 100 }}",
        "{{ ['x' * 60000] * 60000 }}",
        "{{ range(100000) | map('center', 60000) | join }}",
        "{{ '-'.join(range(100000) | map('center', 60000)) }}",
        "{% set refs = range(100000) | map('default', 'x' * 60000) | list %}{{ refs }}",
        "{{ (['x' * 60000] * 1) | string | center(60000) }}",
    ],
)
def test_blowups_are_refused_before_allocating(renderer, source):
    assert "template output exceeds 65536 characters" in error_of(renderer, source)


@pytest.mark.parametrize(
    "source",
    ["{{ 2 ** 100000000 }}",
     "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}"],
)
def test_huge_numbers_are_refused(renderer, source):
    assert "number too large" in error_of(renderer, source)


def test_materialising_a_generator_is_bounded(renderer):
    message = error_of(renderer, "{{ range(100000) | map('center', 60000) | list }}")
    assert "template data exceeds 1048576 characters (the list filter)" in message
    assert "template data exceeds" in error_of(renderer, "{{ range(100000) | map('center', 60000) }}")


def test_ordinary_large_data_is_fine(renderer):
    assert renderer.render_value("{{ range(100000) | list | length }}", {}) == 100000
    context = {"event": {"data": {"rows": list(range(50_000))}}}
    assert renderer.render_value("{{ event.data.rows | sum }}", context) == sum(range(50_000))


def test_ranges_are_bounded_by_the_sandbox(renderer):
    assert "MAX_RANGE" in error_of(renderer, "{% for i in range(10**9) %}{% endfor %}")


def test_lipsum_is_not_available(renderer):
    assert "'lipsum' is undefined" in error_of(renderer, "{{ lipsum(10**9) }}")


# --- the sandbox --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "x {{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ event.__class__ }}",
        "{{ event.data.tags.append('z') }}",
        "{{ event.data.update({'user': 'mallory'}) }}",
        "{{ run.id.__len__ }}",
        "{{ (1).__class__.__base__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ''['__class__'] }}",
        "{{ ''.format.__globals__ }}",
        "{{ '{0.__class__.__mro__}'.format('') }}",
    ],
)
def test_sandbox_escapes_fail_safely(renderer, source):
    message = error_of(renderer, source)
    assert message.startswith("template at with.text: ")
    assert "<class" not in message
    assert CONTEXT["event"]["data"]["tags"] == ["a", "b"]
    assert CONTEXT["event"]["data"]["user"] == "alice"


def test_unsafe_attribute_message(renderer):
    assert error_of(renderer, "{{ ''.__class__.__mro__ }}") == (
        "template at with.text: not allowed in a template: "
        "access to attribute '__class__' of 'str' object is unsafe."
    )


def test_event_data_is_never_rendered_as_a_template(renderer):
    context = {"event": {"data": {"evil": "{{ ''.__class__ }}{{ 'x' * 10**9 }}"}}}
    assert renderer.render_value("got: {{ event.data.evil }}", context) == (
        "got: {{ ''.__class__ }}{{ 'x' * 10**9 }}"
    )


# --- caching ------------------------------------------------------------------------------------


def test_same_source_is_compiled_once(renderer):
    for user in ("alice", "bob", "carol"):
        context = {**CONTEXT, "event": {"data": {"user": user}}}
        assert renderer.render_value({"a": "hi {{ event.data.user }}"}, context) == {"a": f"hi {user}"}
    renderer.check({"a": "hi {{ event.data.user }}"})  # parses only; the cache is untouched
    assert renderer.cache_info() == {"hits": 2, "misses": 1, "size": 1, "max_size": 512}


def test_cache_is_bounded_lru():
    renderer = TemplateRenderer(cache_size=2)
    for source in ("{{ 1 }}", "{{ 2 }}", "{{ 1 }}", "{{ 3 }}", "{{ 1 }}", "{{ 2 }}"):
        renderer.render_value(source, {})
    # 1 miss, 2 miss, 1 hit, 3 miss (evicts 2), 1 hit, 2 miss (evicts 3)
    assert renderer.cache_info() == {"hits": 2, "misses": 4, "size": 2, "max_size": 2}


def test_one_renderer_is_safe_to_share_between_threads(renderer):
    results, errors = [], []

    def work(n: int) -> None:
        try:
            for i in range(200):
                context = {"run": {"id": f"{n}-{i}"}}
                results.append(renderer.render_value("{{ run.id }}!", context) == f"{n}-{i}!")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 1600 and all(results)
