"""Trigger that sleeps until an employer's Indeed API quota month rolls over, then checks it once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_quota.triggers.base import wait_until_usable

if TYPE_CHECKING:
    from airflow_provider_quota.sensors.base import GateCheck


class IndeedApiQuotaTrigger(BaseTrigger):
    """
    Sleep until the month rolls over, check the employer's API quota once, and fire when it is usable.

    The waiting rules are :func:`~airflow_provider_quota.triggers.base.wait_until_usable`'s; the
    usable rule is :func:`~airflow_provider_quota.sensors.indeed.api_quota_check`'s. Its serialized
    kwargs hold the connection id and plain JSON values only, never a credential.

    :param indeed_conn_id: the Indeed connection id.
    :param employer_id: the employer whose quota is checked (None: the connection's extra).
    :param max_used: the share of ``apiQuota`` at or above which the quota is held, as a decimal string.
    :param min_requests_left: the requests the gated work needs.
    :param resets_at: when the month rolls over, from the last check (timezone-aware), or None.
    :param poke_interval: seconds between checks when the rollover is already past.
    :param jitter: the largest random delay after the rollover, in seconds.
    :param hook_params: :class:`~airflow_provider_quota.hooks.base.HttpSettings` for the hook.
    :param deadline: when the sensor times out; None for never.
    """

    def __init__(
        self,
        *,
        indeed_conn_id: str,
        employer_id: str | None,
        max_used: str,
        min_requests_left: int,
        resets_at: datetime | None,
        poke_interval: float,
        jitter: float = 5.0,
        hook_params: dict[str, Any] | None = None,
        deadline: datetime | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.indeed_conn_id = indeed_conn_id
        self.employer_id = employer_id
        self.max_used = max_used
        self.min_requests_left = min_requests_left
        self.resets_at = resets_at
        self.poke_interval = poke_interval
        self.jitter = jitter
        self.hook_params = dict(hook_params or {})
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_quota.triggers.indeed.IndeedApiQuotaTrigger",
            {
                "indeed_conn_id": self.indeed_conn_id,
                "employer_id": self.employer_id,
                "max_used": self.max_used,
                "min_requests_left": self.min_requests_left,
                "resets_at": self.resets_at,
                "poke_interval": self.poke_interval,
                "jitter": self.jitter,
                "hook_params": self.hook_params,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_quota.hooks.indeed import IndeedHook
        from airflow_provider_quota.sensors.indeed import api_quota_check

        hook = IndeedHook(self.indeed_conn_id, employer_id=self.employer_id, **self.hook_params)

        async def check() -> GateCheck:
            usage = await hook.aget_api_quota_usage(None)
            return api_quota_check(usage, max_used=Decimal(self.max_used), min_requests_left=self.min_requests_left)

        event = await wait_until_usable(
            check,
            resets_at=self.resets_at,
            poke_interval=self.poke_interval,
            jitter=self.jitter,
            deadline=self.deadline,
            what=f"the Indeed API quota of employer {self.employer_id or '(connection default)'}",
            log=self.log,
        )
        yield TriggerEvent(event)
