"""
Exceptions raised by airflow-provider-quota, and the one rule for what is worth retrying.

Every error carries what a person on call needs to act on it (HTTP status, the API's error
code and message, its traceId) and never a credential.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

from airflow.sdk.exceptions import AirflowException

#: HTTP statuses after which the same request may succeed if it is sent again (the hook retries them).
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class QuotaProviderError(AirflowException):
    """Base class of every error raised by this provider."""


class ConnectionConfigError(QuotaProviderError):
    """An Airflow connection is missing a field, has the wrong type or an unsafe host."""


class InvalidParameterError(QuotaProviderError, ValueError):
    """A value given by a DAG author (an id, a table name, a setting) can never be valid."""


class InvalidMonthError(InvalidParameterError):
    """A month given by a DAG author is malformed, before 12/2024 or in the future."""


@dataclass(eq=False)
class QuotaApiError(QuotaProviderError):
    """
    An upstream API answered with an error, or could not be reached.

    :param api_message: the API's own error message, or what went wrong.
    :param api: name of the API ("Sonarly" or "Indeed").
    :param status: HTTP status of the answer; None when no answer arrived.
    :param code: the API's error code (``error.code`` or ``meta.errors[].type``).
    :param trace_id: the API's traceId, to quote to the vendor's support.
    :param retryable: whether the hook may send the same request again; by default, whether
        ``status`` is one of :data:`RETRYABLE_STATUSES`.
    :param permanent: whether no retry at all (hook or task) can help; by default, any 4xx
        answer that is not retryable (400, 401, 403, 404...).
    :param retry_after: seconds the server asked us to wait (``Retry-After``), if any.
    :param attempts: requests spent on this call, when more than one.
    """

    api_message: str = ""
    api: str = "upstream"
    status: int | None = None
    code: str | None = None
    trace_id: str | None = None
    retryable: bool | None = None
    permanent: bool | None = None
    retry_after: float | None = None
    attempts: int = 1

    def __post_init__(self) -> None:
        if self.retryable is None:
            self.retryable = self.status in RETRYABLE_STATUSES
        if self.permanent is None:
            self.permanent = self.status is not None and 400 <= self.status < 500 and not self.retryable

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no HTTP answer"
        code = f" {self.code}" if self.code else ""
        trace = f" (traceId {self.trace_id})" if self.trace_id else ""
        gave_up = f" (gave up after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{self.api} API error, {where}{code}: {self.api_message}{gave_up}{trace}"

    def serialize(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """Airflow's serde form: the fields themselves, so that a copy reads the same."""
        cls = type(self)
        return (
            f"{cls.__module__}.{cls.__qualname__}",
            (),
            {field.name: getattr(self, field.name) for field in fields(self)},
        )

    @property
    def is_auth_error(self) -> bool:
        """True for 401 and 403: the credentials, not the request, must change."""
        return self.status in (401, 403)


class UnexpectedResponseError(QuotaApiError):
    """The API answered something that is not a valid answer (HTML, malformed JSON, a field out of bounds)."""


class RetryAfterTooLongError(QuotaApiError):
    """The API asked us to wait longer than the hook's ``max_retry_wait``; failing beats holding a worker."""


class TlsVerificationError(QuotaApiError):
    """The server's TLS certificate failed verification: no retry can fix it, the certificate or host must change."""


def is_permanent(exc: BaseException) -> bool:
    """
    Whether retrying the task cannot help: bad input, bad configuration, a missing connection,
    or an API error marked permanent (a 4xx answer other than 408 and 429, a TLS certificate that
    fails verification, a request the HTTP client refuses to send, an answer too large or out of
    bounds). Such errors fail the task without retries.
    """
    from airflow.sdk.exceptions import AirflowNotFoundException

    if isinstance(exc, (InvalidParameterError, ConnectionConfigError, AirflowNotFoundException)):
        return True
    if isinstance(exc, QuotaApiError):
        return bool(exc.permanent)
    # DB-API 2.0 names the error for data a database refuses (out of range...) DataError in every driver.
    return any(cls.__name__ == "DataError" for cls in type(exc).__mro__)


@contextmanager
def fail_fast_on_permanent_errors() -> Iterator[None]:
    """Turn an error no retry can fix into ``AirflowFailException``, so that Airflow spends no task retry on it."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except Exception as exc:
        if is_permanent(exc):
            raise AirflowFailException(str(exc)) from exc
        raise
