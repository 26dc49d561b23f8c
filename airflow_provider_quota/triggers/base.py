"""What the provider's triggers share: waiting on the wall clock, in steps, without blocking the event loop."""

from __future__ import annotations

import asyncio
from datetime import datetime

from airflow.sdk import timezone

#: The longest single asyncio.sleep; the wall clock is read again after each one.
MAX_SLEEP_STEP_SECONDS = 600.0
#: Failed checks in a row after which a trigger gives up (each check is up to ``max_attempts`` requests).
MAX_CONSECUTIVE_FAILURES = 3
#: The longest wait between two checks after failures.
MAX_FAILURE_BACKOFF_SECONDS = 3600.0


def wall_clock() -> datetime:
    """The wall clock, timezone-aware (what time travel moves in tests)."""
    return timezone.utcnow()


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def sleep_until(wake_at: datetime) -> None:
    """Sleep in short steps against the wall clock, so that a long wait survives clock jumps and suspends."""
    while (remaining := (wake_at - wall_clock()).total_seconds()) > 0:
        await _sleep(min(remaining, MAX_SLEEP_STEP_SECONDS))
