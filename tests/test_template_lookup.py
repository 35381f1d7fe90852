"""``"{{ event.data.host }}"`` is read by a plain lookup (taskengine_core.template_lookup) instead
of Jinja2, and the result, or the error, is the very one Jinja2's sandbox gives."""

from __future__ import annotations

import pytest

from taskengine_core import template_lookup
from taskengine_core.errors import TemplateError
from taskengine_core.template_event import AbsentEvent
from taskengine_core.templating import TemplateRenderer

EVENT = {"id": "evt_1", "type": "vm.stopped", "source": "api", "data": {
    "host": "web-1", "n": 5, "none": None, "nested": {"deep": [1, {"x": "y"}]}, "list": ["a", "b"],
    "the key": "spaced", "items": "shadowed by dict.items", "get": 1, 3: "an int key"}}
CONTEXTS = {
    "event": {"event": EVENT, "run": {"id": "r1", "attempt": 1}, "now": "2026-03-01T12:00:00Z"},
    "absent": {"event": AbsentEvent("it was run by hand"), "run": {"id": "r1"}, "now": "x"},
}
TEMPLATES = [
    "{{ event.data.host }}", "{{ event.data.n }}", "{{ event.data.none }}", "{{ event.data }}",
    "{{ event.data.nested.deep[1].x }}", "{{ event.data.nested.deep[1]['x'] }}",
    "{{ event.data['the key'] }}", "{{ event.data.list[0] }}", "{{ event.data.list[-1] }}",
    "{{ event.data.list[2] }}", "{{ event.data.list.0 }}", "{{ event.data[3] }}",
    "{{ event.data.items }}", "{{ event.data['items'] }}", "{{ event.data.get }}",
    "{{ event.data.missing }}", "{{ event.data.host.upper }}", "{{ event.data.n.real }}",
    "{{ run.id }}", "{{ nope }}", "{{ nope.x }}", "{{ now }}", "{{ range }}", "{{ event.__class__ }}",
    "{{ event.data.nested.deep.x }}", "{{ event }}",
]
FOLLOWED = {  # in the "event" context: where the lookup finds the value itself
    "{{ event.data.host }}", "{{ event.data.n }}", "{{ event.data.none }}", "{{ event.data }}",
    "{{ event.data.nested.deep[1].x }}", "{{ event.data.nested.deep[1]['x'] }}",
    "{{ event.data['the key'] }}", "{{ event.data.list[0] }}", "{{ event.data.list[-1] }}",
    "{{ event.data.list.0 }}", "{{ event.data[3] }}", "{{ event.data['items'] }}", "{{ run.id }}",
    "{{ now }}", "{{ event }}"}


def render(renderer: TemplateRenderer, template: str, context: dict):
    try:
        return "value", renderer.render_value({"p": template}, context)["p"]
    except TemplateError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_lookups_give_what_jinja_gives(context, monkeypatch):
    real_call = template_lookup.Lookup.__call__
    followed: set = set()
    got = {}
    for template in TEMPLATES:
        def recording(self, ctx, template=template):
            found = real_call(self, ctx)
            if found is not template_lookup.MISSING:
                followed.add(template)
            return found

        monkeypatch.setattr(template_lookup.Lookup, "__call__", recording)
        got[template] = render(TemplateRenderer(), template, CONTEXTS[context])
    monkeypatch.setattr(template_lookup.Lookup, "of", classmethod(lambda cls, expr: None))
    expected = {t: render(TemplateRenderer(), t, CONTEXTS[context]) for t in TEMPLATES}
    assert got == expected
    if context == "event":  # the lookup did the work where it may, and stepped aside elsewhere
        assert followed == FOLLOWED
        assert got["{{ event.data.items }}"][1] != "shadowed by dict.items"  # the sandbox's dict.items
        assert got["{{ event.data['items'] }}"] == ("value", "shadowed by dict.items")
        assert got["{{ event.data.missing }}"] == (
            "error", "template at p: 'event.data' has no attribute 'missing' (it has: 3, get, host, "
                     "items, list, n, nested, none, the key)")
    else:  # an absent event is no plain dict: Jinja2 explains why there is none
        assert followed == {"{{ run.id }}", "{{ now }}", "{{ event }}"}
        assert got["{{ event }}"][0] == "error"  # found as a whole, and refused as Jinja2 refuses it
        assert got["{{ event.data.host }}"][0] == "error" and "by hand" in got["{{ event.data.host }}"][1]


def test_only_name_and_constant_steps_are_lookups():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment()

    def lookup(source: str):
        return template_lookup.Lookup.of(env.parse("{{ " + source + " }}").body[0].nodes[0])

    assert (lookup("event.data.host").name, lookup("event.data.host").steps) == (
        "event", ((True, "data"), (True, "host")))
    assert lookup("event.data['k'][0]").steps == ((True, "data"), (False, "k"), (False, 0))
    for other in ("event.data.host | upper", "event.data[key]", "event.data.keys", "a ~ b", "'x'",
                  "event.data.f()", "event.data[1.5]", "event.data[true]"):
        assert lookup(other) is None, other


def test_a_name_jinja_gives_a_meaning_of_its_own_is_left_to_jinja():
    """``self`` in a template is the template itself, even when the context holds a ``self``:
    a lookup in the context would give what Jinja2 does not."""
    context = {"self": {"x": 1}, "run": {"id": "r1"}}

    def both(template: str):
        got = render(TemplateRenderer(), template, context)
        real_of = template_lookup.Lookup.of
        template_lookup.Lookup.of = classmethod(lambda cls, expr: None)
        try:
            expected = render(TemplateRenderer(), template, context)
        finally:
            template_lookup.Lookup.of = real_of
        return got, expected

    got, expected = both("{{ self.x }}")
    assert got == expected and got[0] == "error"
    got, expected = both("{{ self }}")
    assert got[0] == expected[0] == "value" and type(got[1]) is type(expected[1]) and got[1] != {"x": 1}
    assert both("{{ run.id }}") == (("value", "r1"), ("value", "r1"))
