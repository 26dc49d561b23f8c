"""In-memory state of the sandbox: keys, quotas, OAuth clients, tokens, injected faults and counters."""

from __future__ import annotations

import calendar
import hashlib
import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

#: Endpoint names used by the request counters and by fault rules.
ENDPOINTS = ("sonarly_accounts", "sonarly_quota", "indeed_token", "indeed_quota_usage")

FAULT_KINDS = (
    "429",  # 429 with an optional Retry-After (seconds or HTTP date)
    "500",
    "502",
    "503",
    "504",
    "status",  # any status with the API's error envelope
    "stall",  # wait `seconds` before answering normally
    "reset",  # TCP reset, no answer
    "truncate",  # headers announce the whole body, half of it is sent, then the connection drops
    "malformed",  # HTTP 200 with a body that is not JSON
    "html",  # an HTML error page from a "proxy"
    "success_false",  # HTTP 200 with an error envelope
    "patch",  # a normal answer whose data fields are changed or removed
)

DEFAULT_API_KEYS: dict[str, frozenset[str]] = {
    "sk_test_sandbox": frozenset({"prospecting:read", "prospecting:write"}),
    "sk_test_no_prospecting": frozenset(),
}
DEFAULT_ACCOUNT_GROUPS = {"ag_sandbox": "Sandbox team", "ag_growth": "Growth team"}
DEFAULT_CLIENTS = {"sandbox-client-id": "sandbox-client-secret"}
LIST_TYPES = {
    "LINKEDIN_CLASSIC": "linkedinClassicSearch",
    "SALES_NAVIGATOR": "salesNavigatorSearch",
    "LINKEDIN_RECRUITER": "linkedinRecruiterSearch",
}
FIRST_MONTH = date(2024, 12, 1)
#: Employers whose spend has many decimal places, to prove that nothing rounds it.
PRECISE_EMPLOYER_PREFIX = "emp-precise"


@dataclass
class QuotaWindow:
    """A prospecting quota that resets every ``window_seconds``."""

    limit: int
    used: int
    window_seconds: float
    window_start: float
    #: When set, the window ends this many seconds after the next quota request (for demos).
    reset_after_first_check: float | None = None

    @property
    def reset_at(self) -> float:
        return self.window_start + self.window_seconds

    def roll(self, now: float) -> None:
        """Start a new window (and forget what was used) once the reset time has passed."""
        if now >= self.reset_at:
            windows = int((now - self.window_start) // self.window_seconds)
            self.window_start += windows * self.window_seconds
            self.used = 0


@dataclass
class Fault:
    """A rule that makes the next ``count`` matching requests fail in one way."""

    kind: str
    endpoint: str | None = None
    count: int | None = 1
    probability: float = 1.0
    status: int | None = None
    retry_after: str | None = None
    retry_after_http_date_in: float | None = None
    seconds: float = 0.0
    patch: dict[str, Any] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    #: An error message that quotes what the request sent (its Authorization header, its form), as a buggy API may.
    echo_request: bool = False

    def __post_init__(self) -> None:
        # The control API parses JSON numbers with decimals as Decimal; timings are floats.
        self.seconds = float(self.seconds)
        self.probability = float(self.probability)
        if self.retry_after_http_date_in is not None:
            self.retry_after_http_date_in = float(self.retry_after_http_date_in)
        if self.retry_after is not None:
            self.retry_after = str(self.retry_after)
        self.count = None if self.count is None else int(self.count)
        self.status = None if self.status is None else int(self.status)


@dataclass
class TokenGrant:
    """An access token the sandbox issued."""

    employer: str | None
    scope: frozenset[str]
    expires_at: float


class SandboxState:
    """
    Everything the sandbox remembers, guarded by one lock.

    :param quota_window: seconds between prospecting quota resets.
    :param quota_limit: prospecting searches per window.
    :param exhausted: start every account group with its quota used up.
    :param token_lifetime: lifetime of Indeed access tokens, in seconds.
    :param seed: seed of the random choices of probabilistic faults.
    """

    def __init__(
        self,
        *,
        quota_window: float = 3600.0,
        quota_limit: int = 25,
        exhausted: bool = False,
        token_lifetime: int = 3600,
        seed: int = 0,
    ) -> None:
        self.quota_window = float(quota_window)
        self.quota_limit = int(quota_limit)
        self.start_exhausted = exhausted
        self.initial_token_lifetime = int(token_lifetime)
        self.seed = seed
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget counters, faults, tokens and quota usage: back to the start-up state."""
        now = time.time()
        with self.lock:
            self.api_keys = dict(DEFAULT_API_KEYS)
            self.account_groups = dict(DEFAULT_ACCOUNT_GROUPS)
            self.quotas = {
                group: QuotaWindow(
                    limit=self.quota_limit,
                    used=self.quota_limit if self.start_exhausted else 0,
                    window_seconds=self.quota_window,
                    window_start=now,
                )
                for group in self.account_groups
            }
            self.clients = dict(DEFAULT_CLIENTS)
            self.token_lifetime = self.initial_token_lifetime
            self.tokens: dict[str, TokenGrant] = {}
            self.faults: list[Fault] = []
            self.requests: Counter[str] = Counter()
            self.faults_injected: Counter[str] = Counter()
            self.tokens_issued: Counter[str] = Counter()
            self.usage: dict[tuple[str, date], dict[str, Any]] = {}
            self.rng = random.Random(self.seed)

    # ------------------------------------------------------------------ faults

    def add_fault(self, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; one of {', '.join(FAULT_KINDS)}")
        if fault.endpoint is not None and fault.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {fault.endpoint!r}; one of {', '.join(ENDPOINTS)}")
        with self.lock:
            self.faults.append(fault)

    def count_and_take_fault(self, endpoint: str) -> Fault | None:
        """Count a request to ``endpoint`` and return the fault it must suffer, if any."""
        with self.lock:
            self.requests[endpoint] += 1
            for fault in self.faults:
                if fault.endpoint not in (None, endpoint) or fault.count == 0:
                    continue
                if fault.probability < 1.0 and self.rng.random() >= fault.probability:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                self.faults_injected[fault.kind] += 1
                self.faults = [f for f in self.faults if f.count != 0]
                return fault
        return None

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": {name: self.requests.get(name, 0) for name in ENDPOINTS},
                "total_requests": sum(self.requests.values()),
                "faults_injected": dict(self.faults_injected),
                "tokens_issued": dict(self.tokens_issued),
                "pending_faults": len(self.faults),
            }

    # ------------------------------------------------------------------ Sonarly

    def quota(self, group: str, now: float, *, is_check: bool = True) -> QuotaWindow:
        """The quota of ``group`` at ``now``; ``is_check`` is False for the control API's own reads."""
        with self.lock:
            window = self.quotas[group]
            if is_check and window.reset_after_first_check is not None:
                window.window_start = now + window.reset_after_first_check - window.window_seconds
                window.reset_after_first_check = None
            window.roll(now)
            return QuotaWindow(window.limit, window.used, window.window_seconds, window.window_start)

    def set_quota(
        self,
        group: str,
        *,
        limit: int | None = None,
        used: int | None = None,
        window_seconds: float | None = None,
        reset_in_seconds: float | None = None,
        reset_after_first_check: float | None = None,
    ) -> None:
        """
        Change an account group's quota.

        ``reset_in_seconds`` makes the current window end that many seconds from now;
        ``reset_after_first_check`` makes it end that many seconds after the next quota request.
        """
        now = time.time()
        with self.lock:
            window = self.quotas.setdefault(group, QuotaWindow(self.quota_limit, 0, self.quota_window, now))
            self.account_groups.setdefault(group, group)
            window.roll(now)
            if limit is not None:
                window.limit = int(limit)
            if window_seconds is not None:
                window.window_seconds = float(window_seconds)
            if reset_in_seconds is not None:
                window.window_start = now + float(reset_in_seconds) - window.window_seconds
            if used is not None:
                window.used = int(used)
            window.reset_after_first_check = None if reset_after_first_check is None else float(reset_after_first_check)

    # ------------------------------------------------------------------ Indeed

    def issue_token(self, employer: str | None, scope: frozenset[str]) -> tuple[str, int]:
        token = "sbx_at_" + secrets.token_urlsafe(24)
        with self.lock:
            lifetime = self.token_lifetime
            self.tokens[token] = TokenGrant(employer=employer, scope=scope, expires_at=time.time() + lifetime)
            self.tokens_issued[employer or "(none)"] += 1
        return token, lifetime

    def token_grant(self, token: str, now: float) -> TokenGrant | None:
        with self.lock:
            grant = self.tokens.get(token)
        if grant is None or grant.expires_at <= now:
            return None
        return grant

    def set_usage(
        self,
        employer: str,
        *,
        month: str | None = None,
        spend: Decimal | int | str | None = None,
        requests_count: int | None = None,
        api_quota: int | None = None,
    ) -> dict[str, Any]:
        """Set an employer's spend, requests and ``apiQuota`` for ``month`` (``MMyyyy``; default the current month)."""
        now = time.time()
        first = month_now(now) if month is None else date(int(month[2:]), int(month[:2]), 1)
        changes: dict[str, Any] = {}
        if spend is not None:
            changes["sponsoredJobsSpendAmount"] = Decimal(str(spend))
        if requests_count is not None:
            changes["apiUsage"] = [{"requestsCount": int(requests_count)}]
        if api_quota is not None:
            changes["apiQuota"] = int(api_quota)
        with self.lock:
            self.usage.setdefault((employer, first), {}).update(changes)
        return self.usage_data(employer, first, now)

    def usage_data(self, employer: str, month: date, now: float) -> dict[str, Any]:
        """What the API answers for an employer and a month: :func:`quota_usage_data`, with what was set."""
        with self.lock:
            changes = dict(self.usage.get((employer, month), {}))
        return {**quota_usage_data(employer, month, now), **changes}

    def expire_tokens(self) -> int:
        with self.lock:
            for grant in self.tokens.values():
                grant.expires_at = 0.0
            return len(self.tokens)


def month_now(now: float) -> date:
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    return date(moment.year, moment.month, 1)


def quota_usage_data(employer: str, month: date, now: float) -> dict[str, Any]:
    """Deterministic usage, quota and spend of an employer for a month (month to date when current)."""
    digest = hashlib.sha256(f"{employer}|{month:%m%Y}".encode()).digest()
    api_quota = (1500, 3000, 5000)[digest[0] % 3]
    full_requests = int.from_bytes(digest[1:3], "big") % (api_quota + 1)
    full_spend = Decimal(int.from_bytes(digest[3:6], "big") % 1_000_000) / 100
    if employer.startswith(PRECISE_EMPLOYER_PREFIX):
        full_spend = Decimal("1234.567890123456789012345") + Decimal(month.month)
    today = datetime.fromtimestamp(now, tz=timezone.utc)
    if month == month_now(now):
        days = calendar.monthrange(month.year, month.month)[1]
        fraction = Decimal(today.day) / Decimal(days)
        full_requests = int(full_requests * today.day / days)
        if not employer.startswith(PRECISE_EMPLOYER_PREFIX):
            full_spend = (full_spend * fraction).quantize(Decimal("0.01"))
    parts = 1 + digest[6] % 3
    counts = [full_requests // parts] * parts
    counts[0] += full_requests - sum(counts)
    return {
        "mmyyyy": f"{month:%m%Y}",
        "apiQuota": api_quota,
        "sponsoredJobsSpendAmount": full_spend,
        "currencyCode": "EUR" if employer.startswith("emp-eu") else "USD",
        "apiUsage": [{"requestsCount": count} for count in counts],
    }
