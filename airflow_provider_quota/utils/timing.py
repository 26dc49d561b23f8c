"""When to check a quota again: just after it resets, with jitter, never in a tight loop, never past a sane horizon."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

#: Seconds added after a reset so that a check never lands a hair before it.
RESET_GRACE_SECONDS = 0.5
#: The shortest wait between two checks, whatever the settings say.
MIN_INTERVAL_SECONDS = 1.0
#: The shortest wait for a reset that follows a check made at a reset: a ``resetAt`` that keeps
#: moving just ahead of the clock must not cost a request (or fire a window) every second.
MIN_WINDOW_SECONDS = 10.0
#: The longest wait ever planned: a reset further away (a "never" sentinel such as 9999-12-31,
#: a Retry-After of centuries) is read as this far, so that no date arithmetic can overflow.
MAX_WAIT_SECONDS = 366 * 24 * 3600.0


def clamp_seconds(seconds: float) -> float:
    """``seconds`` within ``[0, MAX_WAIT_SECONDS]`` (NaN counts as the maximum)."""
    return MAX_WAIT_SECONDS if not seconds <= MAX_WAIT_SECONDS else max(seconds, 0.0)


def later(now: datetime, seconds: float) -> datetime:
    """``now`` plus ``seconds``, clamped: never an OverflowError."""
    return now + timedelta(seconds=clamp_seconds(seconds))


def after_reset(
    reset_at: datetime | None,
    *,
    now: datetime,
    jitter: float,
    min_wait: float = 0.0,
    rng: random.Random | None = None,
) -> datetime | None:
    """
    When to check a quota that resets at ``reset_at``: just after it, or None when that is unknown or past.

    Just after is a short grace plus a random jitter in ``[0, jitter]``, so that many gates do not
    call the API in the same second. None (reset time unknown, or already past while the quota
    is still spent, e.g. clock skew) leaves the caller to its fallback interval.

    :param reset_at: when the quota resets, timezone-aware, or None if unknown.
    :param now: the current time, timezone-aware.
    :param jitter: the largest random delay added after ``reset_at``, in seconds.
    :param min_wait: the shortest wait from ``now``, in seconds (:data:`MIN_WINDOW_SECONDS` after a
        check made at a reset).
    :param rng: source of randomness, for tests.
    """
    if reset_at is None or reset_at <= now:
        return None
    uniform = rng.uniform if rng is not None else random.uniform
    wait = (reset_at - now).total_seconds() + RESET_GRACE_SECONDS + uniform(0, max(jitter, 0.0))
    return later(now, max(wait, min_wait))
