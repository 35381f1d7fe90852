"""``to_iso`` writes exactly what ``strftime`` wrote before it was made faster: every stored
time is compared as text, so one character of difference would reorder rows."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, strategies as st

from taskengine_core.clock import from_iso, to_iso

REFERENCE = "%Y-%m-%dT%H:%M:%S.%fZ"
zones = st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                         timezone(timedelta(hours=-11)), None])


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)), zones)
def test_to_iso_matches_strftime(naive, zone):
    dt = naive.replace(tzinfo=zone) if zone is not None else naive
    assert to_iso(dt) == dt.astimezone(timezone.utc).strftime(REFERENCE)


def test_to_iso_examples_and_round_trip():
    dt = datetime(2026, 11, 25, 10, 0, 0, 7, tzinfo=timezone.utc)
    assert to_iso(dt) == "2026-11-25T10:00:00.000007Z"
    assert to_iso(datetime(2026, 11, 25, 15, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))) \
        == "2026-11-25T10:00:00.000000Z"
    assert from_iso(to_iso(dt)) == dt
    assert to_iso(datetime(999, 1, 2, tzinfo=timezone.utc)) == datetime(
        999, 1, 2, tzinfo=timezone.utc).strftime(REFERENCE)
