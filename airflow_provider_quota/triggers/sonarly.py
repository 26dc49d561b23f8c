"""
Triggers on a Sonarly prospecting quota: the deferred gate's wait, and an asset watcher per quota window.

Every trigger of one triggerer process that watches the same quota (connection, API base URL,
account group, list type) goes through one :class:`SharedQuota`: one request in flight at a
time, its answer served to every trigger that wakes while it is fresh, and the quota handed out
first come, first served, so that the gates released together never need more than it holds.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_provider_quota.exceptions import InvalidParameterError, is_permanent
from airflow_provider_quota.triggers.base import (
    MAX_CONSECUTIVE_FAILURES,
    MAX_FAILURE_BACKOFF_SECONDS,
    next_check_at,
    sleep_until,
    wall_clock,
)
from airflow_provider_quota.utils.limits import check_seconds, parse_count
from airflow_provider_quota.utils.timing import (
    MAX_WAIT_SECONDS,
    MIN_INTERVAL_SECONDS,
    MIN_WINDOW_SECONDS,
    after_reset,
    later,
)

if TYPE_CHECKING:
    from airflow_provider_quota.hooks.base import HttpSettings
    from airflow_provider_quota.hooks.sonarly import SonarlyHook
    from airflow_provider_quota.models import ProspectingQuota

#: (connection id, API base URL, account group, list type, hook settings): what makes two checks the same request.
QuotaKey = tuple[str, str, str, "str | None", "HttpSettings"]
#: A watcher's retry pace after a permanent error (a revoked key...): slow, it can only be fixed by a person.
PERMANENT_ERROR_RETRY_SECONDS = 900.0
_ORDER = itertools.count()


@dataclass(eq=False)
class Waiter:
    """A gate waiting on a :class:`SharedQuota`: ``released`` gets (quota, units granted) or its permanent error."""

    need: int
    since: datetime
    order: int = field(default_factory=lambda: next(_ORDER))
    released: asyncio.Future[tuple[ProspectingQuota, int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SharedQuota:
    """
    What the triggers of one event loop share about one quota: its checks and its grants.

    Checks: one request in flight at a time; its answer (or error) serves every trigger that
    asks for an answer no older than it. Grants: after each answer, waiting gates are released
    in the order they started waiting, while the sum of their needs fits what remained at the
    window's first answer minus what the window already granted, and never more than remains
    now (a window is identified by ``resetAt``); nobody overtakes the head of the queue. Units
    the released runs spend are not counted twice, and a gate never over-subscribes. It lives
    while a trigger uses it; the last to leave removes it.
    """

    _boards: ClassVar[dict[asyncio.AbstractEventLoop, dict[QuotaKey, SharedQuota]]] = {}
    #: Each quota's window, kept after its last gate leaves and until its reset: a gate that comes
    #: later in the same window must not be granted again what the runs released before may not
    #: have spent yet.
    _windows: ClassVar[dict[asyncio.AbstractEventLoop, dict[QuotaKey, tuple[datetime | None, int, int]]]] = {}

    def __init__(self, key: QuotaKey) -> None:
        self.key = key
        self.users = 0
        self.waiters: list[Waiter] = []
        self.answer: ProspectingQuota | Exception | None = None
        self.asked_at: datetime | None = None
        #: The window grants are counted in: its resetAt, what remained at its first answer, units granted.
        self.window: tuple[datetime | None, int, int] | None = None
        self._inflight: asyncio.Future[ProspectingQuota | Exception] | None = None
        self._inflight_asked_at: datetime | None = None

    @classmethod
    @asynccontextmanager
    async def of(cls, hook: SonarlyHook, account_group_id: str, list_type: str | None) -> AsyncIterator[SharedQuota]:
        """Use the quota ``hook`` reads for ``account_group_id`` (its connection is looked up asynchronously)."""
        await hook.aget_checked_connection()
        key = (hook.conn_id, hook.base_url, account_group_id, list_type, hook.settings)
        from airflow_provider_quota.hooks.base import loop_local

        boards, windows = loop_local(cls._boards, dict), loop_local(cls._windows, dict)
        if key not in boards:
            now = wall_clock()
            for ended in [k for k, (reset_at, _, _) in windows.items() if reset_at is not None and reset_at <= now]:
                del windows[ended]
            boards[key] = cls(key)
            boards[key].window = windows.get(key)
        board = boards[key]
        board.users += 1
        try:
            yield board
        finally:
            board.users -= 1
            if board.users == 0 and boards.get(key) is board:
                del boards[key]
                if board.window is not None:
                    windows[key] = board.window
                if board._inflight is not None:
                    board._inflight.cancel()

    def wait(self, need: int, since: datetime) -> Waiter:
        """Join the queue of gates: ordered by when they started waiting, then by arrival."""
        waiter = Waiter(need, since)
        bisect.insort(self.waiters, waiter, key=lambda w: (w.since, w.order))
        return waiter

    def leave(self, waiter: Waiter) -> None:
        if waiter in self.waiters:
            self.waiters.remove(waiter)
        if not waiter.released.done():
            waiter.released.cancel()
        elif not waiter.released.cancelled():
            waiter.released.exception()  # read: a gate cancelled before it read its error is no "never retrieved"

    def ahead_of(self, waiter: Waiter) -> tuple[int, int]:
        """How many gates wait ahead of ``waiter`` without a grant yet, and how many units they need."""
        ahead = [w for w in self.waiters[: self.waiters.index(waiter)] if not w.released.done()]
        return len(ahead), sum(w.need for w in ahead)

    async def check(self, hook: SonarlyHook, not_before: datetime) -> ProspectingQuota | Exception:
        """The quota (or error) asked at ``not_before`` or later: the last answer, the one in flight, or a new one."""
        while True:
            if self.answer is not None and self.asked_at is not None and self.asked_at >= not_before:
                if not isinstance(self.answer, Exception):
                    self._release(self.answer)  # gates that joined since it came may fit
                return self.answer
            inflight, asked_here = self._inflight, self._inflight is None
            if inflight is None:
                self._inflight_asked_at = wall_clock()
                inflight = self._inflight = asyncio.ensure_future(self._ask(hook, self._inflight_asked_at))
            answer = await asyncio.shield(inflight)
            # A request this call sent serves it even if the clock stepped back past not_before.
            if asked_here or (self.asked_at is not None and self.asked_at >= not_before):
                return answer
            # The request in flight was asked before this gate needed a new answer: ask again.

    async def _ask(self, hook: SonarlyHook, asked_at: datetime) -> ProspectingQuota | Exception:
        try:
            answer: ProspectingQuota | Exception = await hook.aget_prospecting_quota(self.key[2], self.key[3])
        except Exception as exc:
            answer = exc
        finally:
            self._inflight = None
        self.answer, self.asked_at = answer, asked_at
        if not isinstance(answer, Exception):
            self._release(answer)
        elif is_permanent(answer):  # the same request for every gate here: it fails them all now
            for waiter in self.waiters:
                if not waiter.released.done():
                    waiter.released.set_exception(answer)
        return answer

    def _release(self, quota: ProspectingQuota) -> None:
        """
        Grant units to the gates that fit, in queue order.

        In one window, the gates are granted at most what remained at the window's first answer:
        units granted are never granted again, spent or not. And never more than the API says
        remains now, whoever spent the rest. A new window (another ``resetAt``, or more remaining
        than before while the reset time is unknown) starts the count again.
        """
        window, baseline, granted = self.window or (None, 0, 0)
        if self.window is None or quota.reset_at != window or (window is None and quota.remaining > baseline):
            window, baseline, granted = quota.reset_at, quota.remaining, 0
        available = 0 if quota.exhausted else min(quota.remaining, baseline - granted)
        for waiter in self.waiters:
            if waiter.released.done():
                continue
            if waiter.need > quota.limit:  # can never be met: it must not block the gates behind it
                waiter.released.set_exception(_above_limit(waiter.need, quota))
                continue
            if waiter.need > available:
                break
            available -= waiter.need
            granted += waiter.need
            waiter.released.set_result((quota, waiter.need))
        self.window = (window, baseline, granted)


def _above_limit(need: int, quota: ProspectingQuota) -> InvalidParameterError:
    return InvalidParameterError(
        f"min_remaining={need} can never be met: the {quota.list_type} quota allows {quota.limit} "
        "per window; lower min_remaining or split the job"
    )


def _fresh_for(jitter: float) -> float:
    """Seconds an answer serves the triggers that wake after it: the spread of their jitter."""
    return max(float(jitter), MIN_INTERVAL_SECONDS)


class SonarlyQuotaResetTrigger(BaseTrigger):
    """
    Wait for a prospecting quota to be usable and granted to this gate, checking it only when it can have changed.

    The trigger sleeps until ``reset_at`` plus a short grace and a random jitter (at once when
    ``reset_at`` is already past, e.g. after a triggerer outage, or when nothing was checked
    yet), then checks the quota through the process's :class:`SharedQuota` and fires when the
    quota releases ``min_remaining`` units to it (its XCom says ``granted``). Still spent: it
    sleeps until the next ``resetAt`` (``poke_interval`` when there is none). Usable but taken by
    gates that started waiting earlier: it checks again after ``poke_interval`` or at the reset,
    whichever comes first. A failed check (after the hook's own retries) is retried after a
    doubling backoff; 3 in a row, or any permanent error (400, 401, 403, 404, ``min_remaining``
    above the quota's ``limit``), end it with an error event. A next check after ``deadline`` ends
    it with a timeout event. Every path through the loop sleeps or ends.

    Its kwargs are plain values, never a credential; ``sonarly_conn_id``, ``account_group_id``,
    ``list_type`` and ``min_remaining`` may be templates rendered in the triggerer (the sensor's
    ``start_from_trigger``), where they arrive as text.

    :param sonarly_conn_id: the Sonarly connection id.
    :param account_group_id: the account group; None for the connection's default.
    :param list_type: the ``listType`` to ask for, or None.
    :param min_remaining: the units the gated run needs: granted to it when it fires.
    :param reset_at: when the quota resets, from the last check (timezone-aware), or None.
    :param poke_interval: seconds between checks when the reset time is unknown.
    :param jitter: the largest random delay after a reset, in seconds.
    :param hook_params: :class:`~airflow_provider_quota.hooks.base.HttpSettings` for the hook.
    :param deadline: when the sensor times out; None for never.
    :param waiting_since: when the gate started waiting (its place in the queue); None: now, and
        with no ``reset_at`` either (nothing checked yet), the first check is made at once.
    """

    def __init__(
        self,
        *,
        sonarly_conn_id: str,
        account_group_id: str | None,
        list_type: str | None,
        min_remaining: int | str,
        reset_at: datetime | None,
        poke_interval: float,
        jitter: float = 5.0,
        hook_params: dict[str, Any] | None = None,
        deadline: datetime | None = None,
        waiting_since: datetime | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.sonarly_conn_id = sonarly_conn_id
        self.account_group_id = account_group_id
        self.list_type = list_type
        self.min_remaining = min_remaining
        self.reset_at = reset_at
        self.poke_interval = poke_interval
        self.jitter = jitter
        self.hook_params = dict(hook_params or {})
        self.deadline = deadline
        self.waiting_since = waiting_since

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_quota.triggers.sonarly.SonarlyQuotaResetTrigger",
            {
                "sonarly_conn_id": self.sonarly_conn_id,
                "account_group_id": self.account_group_id,
                "list_type": self.list_type,
                "min_remaining": self.min_remaining,
                "reset_at": self.reset_at,
                "poke_interval": self.poke_interval,
                "jitter": self.jitter,
                "hook_params": self.hook_params,
                "deadline": self.deadline,
                "waiting_since": self.waiting_since,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_quota.hooks.sonarly import SonarlyHook

        checks = 0
        try:
            hook = SonarlyHook(self.sonarly_conn_id, **self.hook_params)
            await hook.aget_checked_connection()
            hook.base_url  # noqa: B018 (an unsafe host fails here, as an error event)
            group = hook.resolve_account_group_id(self.account_group_id or None)
            need = parse_count(self.min_remaining, name="min_remaining")  # text when rendered in the triggerer
        except Exception as exc:
            yield TriggerEvent(_error_event(exc, checks))
            return
        now = wall_clock()
        reset_at = self.reset_at
        # Nothing checked yet (started in the triggerer), or a reset already past (a late start, an outage).
        at_once = reset_at <= now if reset_at is not None else self.waiting_since is None
        wake_at = now if at_once else self._next(reset_at, 0)
        not_before = self._fresh_after(wake_at, reset_at)
        woke_for_reset = reset_at is not None
        failures = 0
        async with SharedQuota.of(hook, group, self.list_type or None) as board:
            waiter = board.wait(need, self.waiting_since or now)
            try:
                while True:
                    if self.deadline is not None and wake_at > self.deadline and not waiter.released.done():
                        yield TriggerEvent(self._timeout_event(wake_at, checks))
                        return
                    self.log.info("Next check of the prospecting quota of %s at %s", group, wake_at.isoformat())
                    await sleep_until(wake_at, unless=waiter.released)
                    if not waiter.released.done():
                        checks += 1
                        answer = await board.check(hook, not_before)
                    if waiter.released.done():
                        yield TriggerEvent(self._released_event(waiter, checks))
                        return
                    now = wall_clock()
                    if not isinstance(answer, Exception):
                        failures = 0
                        wake_at, not_before, woke_for_reset = self._plan(answer, board, waiter, now, woke_for_reset)
                        continue
                    failures += 1
                    woke_for_reset = False
                    if is_permanent(answer) or failures >= MAX_CONSECUTIVE_FAILURES:
                        yield TriggerEvent(_error_event(answer, checks, failures))
                        return
                    self.log.warning("Quota check %d failed (%s); failure %d in a row", checks, answer, failures)
                    # A Retry-After too long for the hook to wait in place is still the server's wish.
                    wake_at = max(self._next(None, failures), later(now, getattr(answer, "retry_after", 0) or 0))
                    not_before = wake_at  # a new request, not the error again
            finally:
                board.leave(waiter)

    def _plan(
        self, quota: ProspectingQuota, board: SharedQuota, waiter: Waiter, now: datetime, woke_for_reset: bool
    ) -> tuple[datetime, datetime, bool]:
        """
        When to check again a quota that did not release this gate, how fresh that answer must be, and
        whether that check is for a reset (the next reset after it is then awaited at least
        :data:`MIN_WINDOW_SECONDS`: a ``resetAt`` that keeps moving must not cost a request a second).
        """
        min_wait = MIN_WINDOW_SECONDS if woke_for_reset else 0.0
        reset = after_reset(quota.reset_at, now=now, jitter=self.jitter, min_wait=min_wait)
        if not quota.is_usable(waiter.need):  # spent, or too little left in this window: only a reset helps
            self.log.info(
                "Quota of %s not usable (exhausted=%s, %d of %d remaining, need %d); resets at %s",
                board.key[2],
                quota.exhausted,
                quota.remaining,
                quota.limit,
                waiter.need,
                quota.reset_at,
            )
            wake_at = reset or self._next(None, 0)
            return wake_at, self._fresh_after(wake_at, quota.reset_at), reset is not None
        count, units = board.ahead_of(waiter)
        self.log.info(
            "%d gate(s) ahead of this one need %d of the %d remaining (%d already granted in this window); "
            "checking again in %.0f s at most",
            count,
            units,
            quota.remaining,
            board.window[2] if board.window else 0,
            self.poke_interval,
        )
        wake_at = min(later(now, max(self.poke_interval, MIN_INTERVAL_SECONDS)), reset or later(now, MAX_WAIT_SECONDS))
        return wake_at, self._fresh_after(wake_at, quota.reset_at), wake_at == reset

    def _fresh_after(self, wake_at: datetime, reset_at: datetime | None) -> datetime:
        """
        How recent an answer must be for a check at ``wake_at``: asked within the jitter's spread before it
        (so that the gates waking together share one request), and after the reset it waited for.
        """
        fresh_after = wake_at - timedelta(seconds=_fresh_for(self.jitter))
        return max(fresh_after, reset_at) if reset_at is not None and reset_at <= wake_at else fresh_after

    def _next(self, reset_at: datetime | None, failures: int) -> datetime:
        return next_check_at(reset_at, failures=failures, poke_interval=self.poke_interval, jitter=self.jitter)

    def _released_event(self, waiter: Waiter, checks: int) -> dict[str, Any]:
        error = waiter.released.exception()
        if error is not None:
            return _error_event(error, checks)
        quota, granted = waiter.released.result()
        return {"status": "success", "xcom": {**quota.model_dump(mode="json"), "granted": granted}, "checks": checks}

    def _timeout_event(self, wake_at: datetime, checks: int) -> dict[str, Any]:
        message = (
            f"Sensor timed out: the next useful check of the prospecting quota is at {wake_at.isoformat()}, "
            f"after the sensor's timeout (at {self.deadline.isoformat() if self.deadline else 'never'})"
        )
        return {"status": "timeout", "message": message, "checks": checks}


def _error_event(exc: BaseException, checks: int, failures: int = 1) -> dict[str, Any]:
    suffix = f" (check {checks}, failure {failures} in a row)" if checks else ""
    return {"status": "error", "fail_fast": is_permanent(exc), "message": f"{exc}{suffix}", "checks": checks}


class SonarlyQuotaWindowTrigger(BaseEventTrigger):
    """
    Fire once per quota window in which a prospecting quota is usable: an asset watcher's trigger.

    Use it in an ``AssetWatcher`` to schedule a DAG on the quota itself: the asset gets one event
    per window (a window is identified by its ``resetAt``) in which the quota is not exhausted
    and ``remaining >= min_remaining``, never two for one window, none while it is spent. Between
    windows it sleeps until ``resetAt`` (``poke_interval`` when unknown). The event payload is the
    quota (``ProspectingQuota.model_dump(mode="json")``, with ``reset_at``), so that consumers
    can tell windows apart after a triggerer restart; where Airflow offers watchers an asset
    state store (3.3+), the last window fired is kept there, and a restart does not fire it again.

    ``run()`` never ends and never raises (Airflow restarts a watcher that does, every second):
    transient errors back off, permanent ones (a revoked key) are logged and retried every 15
    minutes. Checks go through the same :class:`SharedQuota` as the gates of this process.

    :param sonarly_conn_id: the Sonarly connection id.
    :param account_group_id: the account group; None for the connection's default.
    :param list_type: the ``listType`` to ask for, or None.
    :param min_remaining: the smallest ``remaining`` that makes a window worth an event.
    :param poke_interval: seconds between checks when the reset time is unknown.
    :param jitter: the largest random delay after a reset, in seconds.
    """

    #: The asset state store key of the last window fired.
    WATERMARK = "sonarly_quota_last_window"

    def __init__(
        self,
        *,
        sonarly_conn_id: str,
        account_group_id: str | None,
        list_type: str | None = None,
        min_remaining: int = 1,
        poke_interval: float = 60.0,
        jitter: float = 5.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if not isinstance(sonarly_conn_id, str) or not sonarly_conn_id:
            raise InvalidParameterError(f"sonarly_conn_id must be a connection id, not {sonarly_conn_id!r:.80}")
        check_seconds(poke_interval, name="poke_interval", low=MIN_INTERVAL_SECONDS)
        check_seconds(jitter, name="jitter")
        self.sonarly_conn_id = sonarly_conn_id
        self.account_group_id = account_group_id
        self.list_type = list_type
        self.min_remaining = parse_count(min_remaining, name="min_remaining")
        self.poke_interval = poke_interval
        self.jitter = jitter

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_quota.triggers.sonarly.SonarlyQuotaWindowTrigger",
            {
                "sonarly_conn_id": self.sonarly_conn_id,
                "account_group_id": self.account_group_id,
                "list_type": self.list_type,
                "min_remaining": self.min_remaining,
                "poke_interval": self.poke_interval,
                "jitter": self.jitter,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        last_fired = await self._watermark()
        wake_at = wall_clock()
        failures = 0
        woke_for_reset = False
        while True:
            await sleep_until(wake_at)
            answer = await self._check()
            now = wall_clock()
            if not isinstance(answer, Exception) and self.min_remaining > answer.limit:
                answer = _above_limit(self.min_remaining, answer)  # no window will ever do: say so, slowly
            if isinstance(answer, Exception):
                failures += 1
                woke_for_reset = False
                permanent = is_permanent(answer)
                delay = (
                    max(self.poke_interval, PERMANENT_ERROR_RETRY_SECONDS)
                    if permanent
                    else min(self.poke_interval * 2 ** min(failures, 16), MAX_FAILURE_BACKOFF_SECONDS)
                )
                self.log.error("Quota window check failed (%s); next try in %.0f s", answer, delay)
                wake_at = later(now, max(delay, MIN_INTERVAL_SECONDS))
                continue
            failures = 0
            payload = answer.model_dump(mode="json")
            window = payload["reset_at"] or "unknown"
            if answer.is_usable(self.min_remaining) and window != last_fired:
                last_fired = window
                await self._watermark(window)
                self.log.info("Quota window %s is usable: %d of %d remaining", window, answer.remaining, answer.limit)
                yield TriggerEvent(payload)
            # A resetAt that keeps moving just ahead must not make every check a new window (an event,
            # a DAG run): the second reset in a row is awaited at least MIN_WINDOW_SECONDS.
            reset_wake = after_reset(
                answer.reset_at, now=now, jitter=self.jitter, min_wait=MIN_WINDOW_SECONDS if woke_for_reset else 0.0
            )
            woke_for_reset = reset_wake is not None
            wake_at = reset_wake or later(now, max(self.poke_interval, MIN_INTERVAL_SECONDS))

    async def _check(self) -> ProspectingQuota | Exception:
        from airflow_provider_quota.hooks.sonarly import SonarlyHook

        try:
            hook = SonarlyHook(self.sonarly_conn_id)
            await hook.aget_checked_connection()
            group = hook.resolve_account_group_id(self.account_group_id or None)
            async with SharedQuota.of(hook, group, self.list_type or None) as board:
                return await board.check(hook, wall_clock() - timedelta(seconds=_fresh_for(self.jitter)))
        except Exception as exc:  # a connection that cannot be read, an id refused: never raise from a watcher
            return exc

    async def _watermark(self, window: str | None = None) -> str | None:
        """Read (or, given ``window``, write) the last window fired, where Airflow offers an asset state store."""
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return window
        try:
            if window is not None:
                await store.aset(self.WATERMARK, window)
                return window
            value = await store.aget(self.WATERMARK)
            return value if isinstance(value, str) else None
        except Exception as exc:  # several assets on one trigger, a store that is down: memory only
            self.log.warning("Asset state store unavailable for the quota window watermark: %s", exc)
            return window
