"""When to check a prospecting quota again: just after it resets, with jitter, never in a tight loop."""

from __future__ import annotations

import random
from datetime import datetime

#: Seconds added after ``resetAt`` so that a check never lands a hair before the reset.
RESET_GRACE_SECONDS = 0.5
#: The shortest wait between two checks, whatever the settings say.
MIN_INTERVAL_SECONDS = 1.0


def seconds_until_next_check(
    reset_at: datetime | None,
    *,
    now: datetime,
    fallback: float,
    jitter: float,
    rng: random.Random | None = None,
) -> float:
    """
    Seconds to wait before the next quota check.

    With a ``reset_at`` in the future: until ``reset_at`` plus a short grace and a random
    jitter in ``[0, jitter]`` (so that many gates do not call the API in the same second).
    Otherwise (reset time unknown, or already past while the quota is still exhausted,
    e.g. clock skew): ``fallback``, never less than :data:`MIN_INTERVAL_SECONDS`.

    :param reset_at: when the quota resets, timezone-aware, or None if unknown.
    :param now: the current time, timezone-aware.
    :param fallback: the wait when ``reset_at`` cannot be used (the sensor's poke interval).
    :param jitter: the largest random delay added after ``reset_at``, in seconds.
    :param rng: source of randomness, for tests.
    """
    uniform = rng.uniform if rng is not None else random.uniform
    if reset_at is not None:
        until_reset = (reset_at - now).total_seconds()
        if until_reset > 0:
            return until_reset + RESET_GRACE_SECONDS + uniform(0, max(jitter, 0.0))
    return max(float(fallback), MIN_INTERVAL_SECONDS)
