"""The secret scan's fast path for schedules and event rules still reports bad references."""

from __future__ import annotations

from taskengine_core.plugins import get_plugin_manager
from taskengine_core.rules.validate import check_paths


def test_bad_references_in_schedules_and_events_are_still_reported(write_rules):
    path = write_rules("""
        schedules:
          s: {every: day, at: "09:00", description: "${nosuch:thing}"}
          fine: {every: day, at: "10:00", description: "no reference"}
        events:
          e: {on: x.happened, description: "${nosuch:x}"}
    """)
    _, problems = check_paths([path], get_plugin_manager().registry())
    messages = sorted(p.message for p in problems)
    assert messages.count("malformed secret reference '${nosuch:thing}': expected ${env:NAME} or ${file:PATH}") == 1
    assert messages.count("malformed secret reference '${nosuch:x}': expected ${env:NAME} or ${file:PATH}") == 1
    assert len(messages) == 2
