"""When the next attempt of a failed delivery is made.

Schedule (defaults: ``settings.webhook.backoff`` 5 s, ``max_backoff`` 10 h, a destination's
``retries`` 5, so 6 attempts in all): the wait before retry *n* is ``backoff * 6**(n-1)``, capped
at ``max_backoff``, times a random factor between 0.8 and 1.2 (jitter, so many failed deliveries
do not retry in lock step)::

    retry 1: ~5 s   retry 2: ~30 s   retry 3: ~3 min   retry 4: ~18 min   retry 5: ~1 h 48 min
    retry 6 and later: ~10 h (the cap)

With the defaults a delivery is given up (``exhausted``) about 2 h 10 min after its first
attempt. A 429 or 503 response with a ``Retry-After`` header (seconds or an HTTP date) sets the
wait instead, clamped to 1 s ... 1 h. The time of the next attempt is stored in the delivery's
row (``next_attempt_at``), so retries survive a restart of the engine.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

FACTOR = 6
JITTER = (0.8, 1.2)
RETRY_AFTER_MIN = 1.0
RETRY_AFTER_MAX = 3600.0
RETRY_AFTER_STATUSES = frozenset({429, 503})


def backoff(retry: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (1 = the second attempt)."""
    exponent = min(max(0, retry - 1), 40)
    wait = min(cap, base * FACTOR ** exponent)
    return wait * (rng or random).uniform(*JITTER)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), clamped to
    1 s ... 1 h; ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    seconds: float | None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return min(RETRY_AFTER_MAX, max(RETRY_AFTER_MIN, seconds))
