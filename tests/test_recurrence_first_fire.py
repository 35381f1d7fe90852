"""``never_fires`` decides unbounded daily and weekly repeats from their form alone
(``surely_fires``): that shortcut must agree with the full search for every such schedule,
and must never take a schedule that can fail to fire."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from taskengine_core.recurrence import check_schedule
from taskengine_core.recurrence.checks import never_fires, surely_fires
from taskengine_core.recurrence.compiled import Recurrence, _parse

ZONES = ["UTC", "Europe/Berlin", "Pacific/Apia", "Australia/Lord_Howe", "America/Sao_Paulo"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


@st.composite
def daily_or_weekly(draw):
    spec = {"every": draw(st.sampled_from(["day", "week", "7 days", "2 days", "2 weeks"])),
            "timezone": draw(st.sampled_from(ZONES))}
    if draw(st.booleans()):
        spec["days"] = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True))
    if draw(st.booleans()):
        spec["months"] = draw(st.lists(st.sampled_from(MONTHS), min_size=1, max_size=3, unique=True))
    if draw(st.booleans()):
        spec["at"] = [f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"]
    if draw(st.booleans()):
        day = date(1990, 1, 1) + timedelta(days=draw(st.integers(0, 80 * 365)))
        spec["start"] = day.isoformat()
    if draw(st.booleans()):
        spec["end"] = (date(1990, 1, 1) + timedelta(days=draw(st.integers(0, 80 * 365)))).isoformat()
    return spec


@settings(max_examples=300, deadline=None)
@given(daily_or_weekly())
def test_the_shortcut_agrees_with_the_full_search(spec):
    parsed, problems = _parse(spec, "UTC")
    if parsed is None:
        return
    full = never_fires(_without_shortcut(parsed), Recurrence(parsed))
    assert never_fires(parsed, lambda: Recurrence(parsed)) == full
    if surely_fires(parsed):
        assert full is None


def _without_shortcut(parsed):
    """The same schedule, bounded so far away that only the full search can answer."""
    from dataclasses import replace
    from datetime import datetime

    return replace(parsed, end=datetime(9999, 12, 30)) if parsed.end is None else parsed


def test_bounded_and_sparse_forms_still_get_the_full_search():
    for spec in ({"every": "day", "start": "2026-03-01", "end": "2026-03-05", "months": ["jun"]},
                 {"every": "2 years", "months": ["feb"], "day_of_month": 29, "start": "2025-01-01"},
                 {"every": "day", "start": "9999-12-30", "months": ["jan"]}):
        parsed, _ = _parse(spec, "UTC")
        assert parsed is not None and not surely_fires(parsed), spec
        assert check_schedule(spec), f"expected a 'can never fire' problem for {spec}"
