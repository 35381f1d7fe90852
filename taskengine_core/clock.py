"""Time, injectable: the engine asks a clock, tests hand it a fake one."""

from __future__ import annotations

import time
from datetime import datetime, timezone


class Clock:
    """The real clock: UTC wall time for records, the monotonic clock for waiting."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


def to_iso(dt: datetime) -> str:
    """UTC text that sorts correctly as a string: ``2026-11-25T10:00:00.000000Z``."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(text: str) -> datetime:
    """Parse what :func:`to_iso` wrote (and other ISO 8601 forms with an offset or ``Z``)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)
