"""
Triggerer footprint: N concurrent triggers in one event loop, waiting and then all waking.

``python -m benchmarks.triggerer --impl project|anchor --count N --sandbox URL``

- project: ``SonarlyQuotaResetTrigger`` deferred on an exhausted quota of N searches whose window
  resets ``--wait`` seconds from now (the sandbox resets it for real), default jitter, each gate
  needing 1: the triggers share their checks and all are granted by the first check after the reset.
- anchor: ``HttpSensorTrigger`` on the same quota endpoint with ``poke_interval=--wait``: the
  sandbox answers each trigger's first request 404 (a fault rule for exactly N requests), so every
  trigger sleeps ``poke_interval`` and then fires on the 200 of its second request. (HttpSensorTrigger
  fires on any non-404 answer: 404 is the only way it can wait at all.)

Each trigger runs as the triggerer runs it: a task iterating ``trigger.run()`` to its first event.
Measured in this process: RSS (psutil) before and while the N triggers wait, after a warm-up
trigger of the same kind has loaded every lazy import; the lag of a 10 ms ticker (how late each
``asyncio.sleep(0.01)`` returns) while waiting and from the first wake to the last event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.common import (
    ACCOUNT_GROUP,
    QUOTA_ENDPOINT,
    airflow_home,
    define_connections,
    emit,
    percentile,
    quiet_logging,
)

TICK = 0.010


class Ticker:
    """Record how late a 10 ms ``asyncio.sleep`` wakes up: the event loop's lag."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (monotonic time, lag in seconds)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(TICK)
            end = time.perf_counter()
            self.samples.append((end, max(0.0, end - start - TICK)))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def between(self, start: float, end: float) -> dict[str, float]:
        window = [(at, lag) for at, lag in self.samples if start <= at <= end]
        lags = [lag for _, lag in window]
        worst = sorted(window, key=lambda sample: -sample[1])[:3]
        return {
            "ticks": len(lags),
            "p99_ms": percentile(lags, 0.99) * 1000,
            "max_ms": max(lags, default=0.0) * 1000,
            # When the worst stalls ended, in seconds from the window's start.
            "worst_at_s": [round(at - start, 2) for at, _ in worst],
        }


def rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def make_trigger(impl: str, wait: float, reset_at: datetime, jitter: float = 5.0) -> Any:
    """The trigger of one gated wait; the project's with its default jitter of 5 s."""
    if impl == "project":
        from airflow_provider_quota.triggers.sonarly import SonarlyQuotaResetTrigger

        return SonarlyQuotaResetTrigger(
            sonarly_conn_id="sonarly_default",
            account_group_id=ACCOUNT_GROUP,
            list_type="LINKEDIN_CLASSIC",
            min_remaining=1,
            reset_at=reset_at,
            poke_interval=60.0,
            jitter=jitter,
            waiting_since=reset_at - timedelta(seconds=wait),
        )
    from airflow.providers.http.triggers.http import HttpSensorTrigger

    # What HttpSensor(deferrable=True) defers with (without a response_check it may defer).
    return HttpSensorTrigger(
        endpoint=QUOTA_ENDPOINT,
        http_conn_id="sonarly_http",
        method="GET",
        data={"listType": "LINKEDIN_CLASSIC"},
        headers={},
        extra_options={},
        poke_interval=wait,
    )


async def first_event(trigger: Any, fired: list[float], failures: list[str]) -> None:
    """Run a trigger as the triggerer does, to its first event; record when it fired or failed."""
    try:
        async for event in trigger.run():
            payload = event.payload
            if payload is True or (isinstance(payload, dict) and payload.get("status") == "success"):
                fired.append(time.perf_counter())
            else:
                failures.append(str(payload)[:200])
            return
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}"[:200])
    finally:
        FINISHED.append(time.perf_counter())


FINISHED: list[float] = []


async def main(impl: str, count: int, sandbox_url: str, wait: float, wake_deadline: float) -> dict[str, Any]:
    from airflow_provider_quota.sandbox.client import SandboxClient

    # Import the trigger's module (and Airflow with it) before any deadline is computed.
    make_trigger(impl, wait, datetime.now(timezone.utc))
    control = SandboxClient(sandbox_url)
    control.reset()

    # Warm-up: one trigger of the same kind to its event, so lazy imports and caches are loaded
    # before the baseline is taken.
    warm: list[float] = []
    warm_failures: list[str] = []
    warm_trigger = make_trigger(impl, 0.1, datetime.now(timezone.utc) + timedelta(seconds=0.1), jitter=0.0)
    await first_event(warm_trigger, warm, warm_failures)
    if warm_failures or not warm:
        raise RuntimeError(f"warm-up trigger failed: {warm_failures}")
    control.reset()
    gc.collect()
    await asyncio.sleep(0.2)
    rss_before = rss()

    ticker = Ticker()
    ticker.start()
    fired: list[float] = []
    failures: list[str] = []
    t_start = time.perf_counter()
    if impl == "project":
        control.set_quota(ACCOUNT_GROUP, limit=count, used=count, reset_in_seconds=wait)
        reset_at = datetime.now(timezone.utc) + timedelta(seconds=wait)
    else:
        control.add_fault("status", status=404, endpoint="sonarly_quota", count=count)
        reset_at = datetime.now(timezone.utc)
    tasks = [
        asyncio.create_task(first_event(make_trigger(impl, wait, reset_at), fired, failures)) for _ in range(count)
    ]

    # Settled: every trigger is asleep (the anchor's after its first request was answered 404).
    if impl == "anchor":
        while (await asyncio.to_thread(control.requests_to, "sonarly_quota")) < count and not failures:
            await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    t_settled = time.perf_counter()
    settle_seconds = t_settled - t_start
    gc.collect()
    rss_waiting = rss()
    t_wait_from = time.perf_counter()
    # Measure the quiet wait until just before the first wake.
    # The project's triggers wake at reset_at plus their grace; the anchor's poke_interval after their 404.
    first_wake = t_start + wait + (0.5 if impl == "project" else 0.0)
    await asyncio.sleep(max(0.0, first_wake - time.perf_counter() - 0.3))
    t_wait_to = time.perf_counter()

    # Wake: wait for every event, at most --deadline seconds after the first wake.
    deadline = first_wake + wake_deadline
    while not all(task.done() for task in tasks) and time.perf_counter() < deadline:
        await asyncio.sleep(0.5)
    unfinished = sum(not task.done() for task in tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    t_done = max(FINISHED[-count:], default=time.perf_counter()) if not unfinished else time.perf_counter()
    await ticker.stop()
    requests_total = control.requests_to("sonarly_quota")
    waiting = ticker.between(t_wait_from, t_wait_to)
    waking = ticker.between(t_wait_to, t_done)
    jitter = 5.0 if impl == "project" else 0.0
    return {
        "impl": impl,
        "count": count,
        # The last event after the reset, its grace and the longest jitter (negative: before the last wake).
        "last_event_after_reset_and_jitter_s": t_done - (first_wake + jitter),
        "wait_s": wait,
        "rss_before_mb": rss_before / 2**20,
        "rss_waiting_mb": rss_waiting / 2**20,
        "kib_per_trigger": (rss_waiting - rss_before) / count / 1024,
        "settle_s": settle_seconds,
        "waiting_window_s": t_wait_to - t_wait_from,
        "waiting_lag": waiting,
        "wake_lag": waking,
        "first_wake_to_last_event_s": t_done - first_wake,
        "settle_overlapped_wake": t_settled > first_wake,
        "fired": len(fired),
        "failures": len(failures),
        "unfinished": unfinished,
        "failure_sample": failures[:3],
        "quota_requests": requests_total,
    }


def use_legacy_client() -> None:
    """
    Put back the shared async client as it was before the fix, to measure before and after in one run.

    Before: ``httpx.Limits(max_connections=100, max_keepalive_connections=20)``, every request
    queued inside httpx's pool, and every trigger looking its connection up as soon as it woke;
    after: 10 kept-alive connections, the excess queued on a semaphore, and at most 10 connection
    lookups in progress at once.
    """
    import httpx

    from airflow_provider_quota.hooks import base

    def legacy_init(self: Any) -> None:
        self.client = httpx.AsyncClient(
            headers={"User-Agent": base.USER_AGENT},
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            follow_redirects=False,
        )
        self.slots = asyncio.Semaphore(2**30)  # never waited on: the pool queues everything
        self.users = 0
        self._closing = self._closed = None

    unlimited: dict[Any, asyncio.Semaphore] = {}

    def no_lookup_limit() -> asyncio.Semaphore:
        return unlimited.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(2**30))

    base._ConnectionClient.__init__ = legacy_init  # type: ignore[method-assign]
    base._connection_lookup_slots = no_lookup_limit


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=("project", "anchor"), required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--sandbox", required=True)
    parser.add_argument("--wait", type=float, default=20.0, help="seconds from the start to the first wake")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds after the first wake to give up")
    parser.add_argument("--legacy-client", action="store_true", help="the project's async client before the fix")
    args = parser.parse_args()
    airflow_home()
    define_connections(args.sandbox)
    quiet_logging()
    if args.legacy_client:
        use_legacy_client()
    emit(asyncio.run(main(args.impl, args.count, args.sandbox, args.wait, args.deadline)))


if __name__ == "__main__":
    cli()
