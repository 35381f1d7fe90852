"""A settings section's own ``check`` (``register_settings(..., check=...)``): what it finds is
reported by validate at the file and line it points to; a check that raises is a problem too.
The logwatch section uses it for its regexes (see test_logwatch_engine for those messages)."""

from __future__ import annotations

from taskengine_core.hookspecs import hookimpl
from taskengine_core.plugins import get_plugin_manager
from taskengine_core.rules.validate import check_paths


class Checked:
    __name__ = "checked"

    @hookimpl
    def register_settings(self, register):
        def check(value):
            for i, name in enumerate(value.get("names", [])):
                if name == "boom":
                    raise RuntimeError("the check itself broke")
                if name.startswith("-"):
                    yield ("names", i), f"name {name!r} must not start with '-'"

        register("checked", {"type": "object", "properties": {"names": {"type": "array", "items": {"type": "string"}}}},
                 check=check)


def problems(write_rules, text):
    registry = get_plugin_manager(extra_plugins=[Checked()]).registry()
    _, found = check_paths([write_rules(text)], registry)
    return [str(p) for p in found]


def test_register_settings_check_reports_at_the_line(write_rules):
    found = problems(write_rules, """
        settings:
          checked:
            names:
              - fine
              - -bad
        """)
    assert len(found) == 1 and ":5:" in found[0] and "settings.checked.names[1]" in found[0]
    assert "must not start with '-'" in found[0]


def test_register_settings_check_runs_only_on_a_section_its_schema_accepts(write_rules):
    found = problems(write_rules, "settings:\n  checked: {names: -bad}\n")
    assert len(found) == 1 and "expected a list" in found[0]


def test_register_settings_check_that_raises_is_a_problem_not_a_crash(write_rules):
    found = problems(write_rules, "settings:\n  checked: {names: [boom]}\n")
    assert len(found) == 1 and "could not check this section: the check itself broke" in found[0]
