"""Schedules: check and compile ``once`` / ``cron`` / ``every`` objects into "next fire after t".

All times handed in and out are aware UTC datetimes; schedules are wall-clock times in their
IANA zone, mapped to UTC by the DST rules in ``dst`` (RELIABILITY #7, #8).
"""

from .compiled import Recurrence, check_schedule, compile_schedule
from .schema import SCHEDULE_SCHEMA

__all__ = ["SCHEDULE_SCHEMA", "Recurrence", "check_schedule", "compile_schedule"]
