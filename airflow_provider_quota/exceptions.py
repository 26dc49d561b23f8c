"""Exceptions raised by airflow-provider-quota.

Every error carries what a person on call needs to act on it (HTTP status, the API's
error code and message, its traceId) and never a credential.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException

#: HTTP statuses after which the same request may succeed if it is sent again.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class QuotaProviderError(AirflowException):
    """Base class of every error raised by this provider."""


class ConnectionConfigError(QuotaProviderError):
    """An Airflow connection is missing a field, has the wrong type or an unsafe host."""


class InvalidParameterError(QuotaProviderError, ValueError):
    """A value given by a DAG author (an id, a table name, a setting) can never be valid."""


class InvalidMonthError(InvalidParameterError):
    """A month given by a DAG author is malformed, before 12/2024 or in the future."""


class QuotaApiError(QuotaProviderError):
    """
    An upstream API answered with an error, or could not be reached.

    :param message: the API's own error message, or what went wrong.
    :param api: name of the API ("Sonarly" or "Indeed").
    :param status: HTTP status of the answer; None when no answer arrived.
    :param code: the API's error code (``error.code`` or ``meta.errors[].type``).
    :param trace_id: the API's traceId, to quote to the vendor's support.
    :param retryable: whether sending the same request again may succeed.
    :param retry_after: seconds the server asked us to wait (``Retry-After``), if any.
    """

    def __init__(
        self,
        message: str = "",
        *,
        api: str = "upstream",
        status: int | None = None,
        code: str | None = None,
        trace_id: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.api = api
        self.status = status
        self.code = code
        self.api_message = message
        self.trace_id = trace_id
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(self._format())

    def _format(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no HTTP answer"
        code = f" {self.code}" if self.code else ""
        trace = f" (traceId {self.trace_id})" if self.trace_id else ""
        return f"{self.api} API error, {where}{code}: {self.api_message}{trace}"

    def __reduce__(self) -> tuple[Any, ...]:  # keep the keyword fields when the error is pickled
        return (
            _rebuild_api_error,
            (
                type(self),
                self.api_message,
                {
                    "api": self.api,
                    "status": self.status,
                    "code": self.code,
                    "trace_id": self.trace_id,
                    "retryable": self.retryable,
                    "retry_after": self.retry_after,
                },
            ),
        )

    @property
    def is_auth_error(self) -> bool:
        """True for 401 and 403: the credentials, not the request, must change."""
        return self.status in (401, 403)


def _rebuild_api_error(cls: type[QuotaApiError], message: str, fields: dict[str, Any]) -> QuotaApiError:
    return cls(message, **fields)


class UnexpectedResponseError(QuotaApiError):
    """The API answered something that is not a valid answer (HTML, malformed JSON, missing field)."""


class RetryAfterTooLongError(QuotaApiError):
    """The API asked us to wait longer than the hook's ``max_retry_wait``; failing beats holding a worker."""


class TlsVerificationError(QuotaApiError):
    """The server's TLS certificate failed verification: no retry can fix it, the certificate or host must change."""


def is_permanent(exc: BaseException) -> bool:
    """
    Whether retrying the task can not help: bad input, bad configuration, a TLS certificate that
    fails verification, a request the HTTP client refuses to send, or a 4xx answer (400, 401,
    403, 404...) other than 408 and 429. Such errors fail the task without retries.
    """
    from airflow.sdk.exceptions import AirflowNotFoundException

    if isinstance(exc, (InvalidParameterError, ConnectionConfigError, AirflowNotFoundException, TlsVerificationError)):
        return True
    if not isinstance(exc, QuotaApiError):
        return False
    if exc.code == "INVALID_REQUEST" and exc.status is None:  # refused by our own HTTP client
        return True
    return exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429)
