"""
The HTTP base shared by the Sonarly and Indeed hooks.

One home for what both APIs need: the connection (resolved once), a safe base URL,
connect and read timeouts on every request, one retry policy (tenacity: 429 and 5xx
and transport errors, exponential backoff with jitter, ``Retry-After`` honoured up to
a cap), and one response handler that turns error envelopes and unexpected answers
into :class:`~airflow_provider_quota.exceptions.QuotaApiError`. The synchronous path
uses a reused :class:`requests.Session`; the asynchronous path (for triggers) uses an
:class:`httpx.AsyncClient` shared by every trigger on the event loop. Neither path
ever logs, raises or reprs a credential.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

from airflow.sdk import BaseHook

from airflow_provider_quota import __version__
from airflow_provider_quota.exceptions import (
    RETRYABLE_STATUSES,
    ConnectionConfigError,
    InvalidParameterError,
    QuotaApiError,
    RetryAfterTooLongError,
    TlsVerificationError,
    UnexpectedResponseError,
)

if TYPE_CHECKING:
    import ssl

    import requests
    from airflow.sdk import Connection
    from tenacity import RetryCallState

USER_AGENT = f"airflow-provider-quota/{__version__}"
_MAX_ID_LENGTH = 256


@dataclass(frozen=True)
class JsonResponse:
    """A decoded JSON answer and its HTTP status."""

    status: int
    payload: dict[str, Any]


def validate_id(value: object, *, name: str) -> str:
    """
    Check an id given by a DAG author (account group, employer) before it goes into a request.

    :param value: the id.
    :param name: the parameter's name, for the error message.
    :raise InvalidParameterError: for a non-string, an empty value, ``.`` or ``..``, control
        characters, surrounding whitespace or more than 256 characters.
    """
    if not isinstance(value, str):
        raise InvalidParameterError(f"{name} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidParameterError(f"{name} is empty")
    if value != value.strip():
        raise InvalidParameterError(f"{name} {value!r} has leading or trailing whitespace")
    if value in (".", ".."):
        raise InvalidParameterError(f"{name} {value!r} is not an id")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise InvalidParameterError(f"{name} {value!r} contains a control character")
    if len(value) > _MAX_ID_LENGTH:
        raise InvalidParameterError(f"{name} is {len(value)} characters long, more than {_MAX_ID_LENGTH}")
    return value


def quote_path_segment(value: object, *, name: str) -> str:
    """
    Validate an id (:func:`validate_id`) and URL-encode it as one path segment.

    ``/``, ``?``, ``#``, ``%``, spaces and non-ASCII characters are percent-encoded, so a
    value can never change the request's path or query.
    """
    return quote(validate_id(value, name=name), safe="")


#: Keyword arguments of every hook that tasks may pass through ``hook_params``: plain numbers.
HOOK_PARAM_NAMES = frozenset(
    {"connect_timeout", "read_timeout", "max_attempts", "backoff_initial", "backoff_max", "max_retry_wait"}
)


def validate_hook_params(hook_params: Mapping[str, Any] | None) -> dict[str, float]:
    """
    Check the ``hook_params`` of a sensor or operator: known settings with numeric values only.

    They travel to the triggerer and into rendered task fields, so nothing else may ride along.

    :raise InvalidParameterError: naming the unknown key or the non-numeric value.
    """
    params = dict(hook_params or {})
    unknown = set(params) - HOOK_PARAM_NAMES
    if unknown:
        raise InvalidParameterError(
            f"hook_params has unknown keys {sorted(unknown)}; allowed: {sorted(HOOK_PARAM_NAMES)}"
        )
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidParameterError(f"hook_params[{name!r}] must be a number, not {value!r}")
    return params


def clip_text(value: Any, limit: int = 500) -> str | None:
    """Return an API-provided value as text of bounded length (None stays None)."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_credential_text(value: str | None, *, what: str, conn_id: str) -> None:
    """
    Refuse a credential holding whitespace or control characters, without ever echoing it.

    A key pasted with a trailing line break is the usual case: sent in a header, it makes the HTTP
    client raise an error that quotes the whole header, key included.

    :raise ConnectionConfigError: naming the connection, the field and the first bad position.
    """
    for position, char in enumerate(value or "", start=1):
        if char.isspace() or not char.isprintable():
            kind = "a line break" if char in "\r\n" else "a space" if char == " " else "a control character"
            raise ConnectionConfigError(
                f"Connection {conn_id!r}: the {what} holds {kind} (character {position} of {len(value or '')}); "
                "enter it again without spaces or line breaks"
            )


def _is_loopback(hostname: str) -> bool:
    name = hostname.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def build_base_url(host: str | None, port: int | None, *, default: str, allow_insecure_http: bool, conn_id: str) -> str:
    """
    Turn a connection's host into a base URL.

    Accepts a full URL (``https://api.sonarly.io``, ``http://127.0.0.1:8765``) or a bare
    host name (``https://`` is assumed). Plain ``http://`` is refused for any host that is
    not loopback unless the connection allows insecure transport explicitly.

    :raise ConnectionConfigError: naming the connection and what is wrong with its host.
    """
    raw = (host or "").strip()
    if not raw:
        return default
    url = raw if "://" in raw else f"https://{raw}"
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
    except ValueError as exc:
        raise ConnectionConfigError(f"Connection {conn_id!r}: host is not a valid URL ({exc})") from None
    if parts.username is not None or parts.password is not None:
        # Never echo this host: it carries credentials.
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: the host must not contain credentials; put them in the "
            "connection's login and password fields"
        )
    scheme = parts.scheme.lower()
    # Name the host by scheme and host name only: a query or path could carry a key.
    shown = f"{scheme}://{parts.hostname or ''}"
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: the host starting {shown!r} must be an http(s) URL or a bare host name"
        )
    if parts.query or parts.fragment:
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: the host starting {shown!r} must not have a query or fragment"
        )
    if scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise ConnectionConfigError(
            f"Connection {conn_id!r}: host {shown!r} uses plain http:// to a host that is not loopback, "
            "which would send credentials unencrypted. Use https://, or set the connection extra "
            '"allow_insecure_http": true to accept that risk.'
        )
    netloc = parts.netloc
    if port and explicit_port is None:
        netloc = f"{netloc}:{int(port)}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """
    Read a ``Retry-After`` header: delta-seconds or an HTTP date.

    :return: seconds to wait (never negative), or None when absent or unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN or infinity
        return None
    return max(0.0, seconds)


def _reject_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def decode_json_body(body: bytes, content_type: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """
    Decode a JSON object, keeping every non-integer number an exact Decimal.

    :return: ``(payload, None)`` on success, or ``(None, what was wrong)``.
    """
    if not body.strip():
        return None, "an empty body"
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == "text/html" or body.lstrip()[:1] == b"<":
        return None, f"an HTML page (Content-Type {media_type or 'unset'}), not JSON; a proxy or a wrong host?"
    try:
        payload = json.loads(body, parse_float=Decimal, parse_constant=_reject_json_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"malformed JSON ({exc})"
    if not isinstance(payload, dict):
        return None, f"JSON that is not an object (a {type(payload).__name__})"
    return payload, None


#: Requests in flight at once through one event loop's shared client, and its kept-alive connections.
#: httpx's pool gets slower with every request queued inside it and counts that queueing against
#: the pool timeout (encode/httpx#3215, #1171): thousands of triggers waking together made it time
#: out. The excess waits on a semaphore instead, outside the pool (see benchmarks/ and
#: docs/performance.md).
ASYNC_MAX_CONNECTIONS = 10

_LOOKUP_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _connection_lookup_slots() -> asyncio.Semaphore:
    """The running event loop's limit on connection lookups in progress at once."""
    loop = asyncio.get_running_loop()
    slots = _LOOKUP_SLOTS.get(loop)
    if slots is None:
        slots = _LOOKUP_SLOTS[loop] = asyncio.Semaphore(ASYNC_MAX_CONNECTIONS)
    return slots


class _SharedAsyncClient:
    """One httpx.AsyncClient per event loop, shared by every trigger on it and closed by the last user."""

    _by_loop: ClassVar[dict[asyncio.AbstractEventLoop, _SharedAsyncClient]] = {}

    def __init__(self) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=ASYNC_MAX_CONNECTIONS, max_keepalive_connections=ASYNC_MAX_CONNECTIONS),
            follow_redirects=False,
        )
        #: A request holds a slot from sending to reading the last byte of the answer.
        self.slots = asyncio.Semaphore(ASYNC_MAX_CONNECTIONS)
        self.users = 0

    @classmethod
    @asynccontextmanager
    async def borrow(cls) -> AsyncIterator[_SharedAsyncClient]:
        loop = asyncio.get_running_loop()
        shared = cls._by_loop.get(loop)
        if shared is None:
            shared = cls._by_loop[loop] = cls()
        shared.users += 1
        try:
            yield shared
        finally:
            shared.users -= 1
            if shared.users == 0 and cls._by_loop.get(loop) is shared:
                del cls._by_loop[loop]
                await shared.client.aclose()


class QuotaApiHook(BaseHook):
    """
    Base of the provider's hooks: connection, timeouts, retries and envelopes, shared by both APIs.

    Subclasses set the class attributes below and implement :meth:`_auth_headers`,
    :meth:`_check_credentials` and :meth:`_error_details`.

    :param conn_id: the Airflow connection id.
    :param connect_timeout: seconds to wait for a TCP/TLS connection.
    :param read_timeout: seconds to wait for the server between bytes of the answer.
    :param max_attempts: attempts per request, the first one included (1 disables retries).
    :param backoff_initial: first backoff in seconds; it doubles on each retry, with jitter.
    :param backoff_max: the longest backoff between two attempts, in seconds.
    :param max_retry_wait: the longest ``Retry-After`` the hook will honour, in seconds; a
        longer one fails at once with :class:`RetryAfterTooLongError` instead of holding a worker.
    """

    conn_name_attr: ClassVar[str]
    default_conn_name: ClassVar[str]
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]
    #: Name of the API in messages ("Sonarly", "Indeed").
    api_name: ClassVar[str]
    #: Base URL used when the connection has no host.
    default_host: ClassVar[str]

    def __init__(
        self,
        conn_id: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_attempts: int = 5,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_wait: float = 300.0,
    ) -> None:
        super().__init__()
        if not isinstance(conn_id, str) or not conn_id:
            raise InvalidParameterError(f"{self.conn_name_attr} must be a non-empty string, not {conn_id!r}")
        for name, number in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("backoff_initial", backoff_initial),
            ("backoff_max", backoff_max),
        ):
            if not number > 0:
                raise InvalidParameterError(f"{name} must be a positive number of seconds, not {number!r}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidParameterError(f"max_attempts must be an integer >= 1, not {max_attempts!r}")
        if not max_retry_wait >= 0:
            raise InvalidParameterError(f"max_retry_wait must be >= 0 seconds, not {max_retry_wait!r}")
        self.conn_id = conn_id
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.max_attempts = max_attempts
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.max_retry_wait = float(max_retry_wait)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.conn_name_attr}={self.conn_id!r})"

    # ------------------------------------------------------------------ connection

    @cached_property
    def connection(self) -> Connection:
        """The Airflow connection, fetched once and checked."""
        return self._checked(self.get_connection(self.conn_id))

    async def aget_checked_connection(self) -> Connection:
        """Fetch and check the connection without blocking the event loop (for triggers)."""
        if "connection" not in self.__dict__:
            # A lookup runs about a millisecond without yielding: thousands of triggers waking
            # together take turns, so that the event loop keeps turning between them.
            async with _connection_lookup_slots():
                if "connection" not in self.__dict__:
                    self.__dict__["connection"] = self._checked(await self.aget_connection(self.conn_id))
        return self.connection

    def _checked(self, conn: Connection) -> Connection:
        if conn.conn_type != self.conn_type:
            raise ConnectionConfigError(
                f"Connection {self.conn_id!r} is of type {conn.conn_type!r}; "
                f"{type(self).__name__} needs a connection of type {self.conn_type!r}"
            )
        self._check_credentials(conn)
        return conn

    @cached_property
    def extras(self) -> dict[str, Any]:
        """The connection's extra fields (none of them secret), parsed without side effects."""
        raw = self.connection.extra
        if not raw:
            return {}
        try:
            extras = json.loads(raw)
        except ValueError:
            raise ConnectionConfigError(f"Connection {self.conn_id!r}: the extra field is not valid JSON") from None
        if not isinstance(extras, dict):
            raise ConnectionConfigError(f"Connection {self.conn_id!r}: the extra field must be a JSON object")
        return extras

    def _extra_str(self, name: str) -> str | None:
        value = self.extras.get(name)
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise ConnectionConfigError(f"Connection {self.conn_id!r}: extra {name!r} must be a string")
        return value

    @cached_property
    def base_url(self) -> str:
        """``scheme://host[:port][/path]`` of the API, from the connection's host or the default."""
        allow_insecure = self.extras.get("allow_insecure_http", False)
        if isinstance(allow_insecure, str):
            allow_insecure = allow_insecure.strip().lower() in ("1", "true", "yes")
        return build_base_url(
            self.connection.host,
            self.connection.port,
            default=self.default_host,
            allow_insecure_http=bool(allow_insecure),
            conn_id=self.conn_id,
        )

    @cached_property
    def session(self) -> requests.Session:
        """The requests session reused by every synchronous call of this hook."""
        import requests

        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        return session

    # ------------------------------------------------------------------ subclass API

    def _check_credentials(self, conn: Connection) -> None:
        """Raise ConnectionConfigError when the connection lacks a required credential."""
        raise NotImplementedError

    def _error_details(self, payload: dict[str, Any] | None) -> tuple[str | None, str | None, str | None]:
        """Return ``(code, message, trace_id)`` from an error envelope, or Nones."""
        raise NotImplementedError

    def _is_error_payload(self, payload: dict[str, Any]) -> bool:
        """Whether a 2xx answer is nevertheless an error envelope."""
        return False

    # ------------------------------------------------------------------ requests

    def _timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JsonResponse:
        """
        Send a request with the hook's timeouts and retry policy and return the decoded answer.

        :param method: HTTP method.
        :param path: path below the base URL, already URL-encoded.
        :param params: query parameters; None values are left out.
        :param form: form fields for a form-encoded body.
        :param headers: extra headers (the credential header is added by the caller).
        :raise QuotaApiError: on an error answer, once retries are spent.
        """
        from tenacity import Retrying

        url = self.base_url + path
        query = _drop_none(params)
        retrying = Retrying(sleep=self._sleep, **self._retry_policy(method, path))
        try:
            return retrying(self._send, method, url, path, query, form, headers)
        except QuotaApiError as exc:
            raise _after_attempts(exc, retrying.statistics.get("attempt_number", 1)) from None

    def _send(
        self,
        method: str,
        url: str,
        path: str,
        params: dict[str, Any] | None,
        form: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> JsonResponse:
        import requests

        try:
            response = self.session.request(
                method,
                url,
                params=params,
                data=form,
                headers=headers,
                timeout=self._timeout(),
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, method, path) from None
        return self._handle_response(response.status_code, response.headers, response.content, method=method, path=path)

    async def arequest_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JsonResponse:
        """
        Asynchronous :meth:`request_json`, for triggers: the same policy, never blocking the loop.

        Call :meth:`aget_checked_connection` first.
        """
        from tenacity import AsyncRetrying

        url = self.base_url + path
        query = _drop_none(params)
        retrying = AsyncRetrying(sleep=self._asleep, **self._retry_policy(method, path))
        try:
            async with _SharedAsyncClient.borrow() as shared:
                return await retrying(self._asend, shared, method, url, path, query, form, headers)
        except QuotaApiError as exc:
            raise _after_attempts(exc, retrying.statistics.get("attempt_number", 1)) from None

    async def _asend(
        self,
        shared: _SharedAsyncClient,
        method: str,
        url: str,
        path: str,
        params: dict[str, Any] | None,
        form: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> JsonResponse:
        import httpx

        try:
            async with shared.slots:
                response = await shared.client.request(
                    method,
                    url,
                    params=params,
                    data=form,
                    headers=headers,
                    timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
                )
        except httpx.TransportError as exc:
            raise self._transport_error(exc, method, path) from None
        return self._handle_response(response.status_code, response.headers, response.content, method=method, path=path)

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def _asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    # ------------------------------------------------------------------ policy

    def _retry_policy(self, method: str, path: str) -> dict[str, Any]:
        from tenacity import retry_if_exception, stop_after_attempt, wait_exponential, wait_random

        backoff = wait_exponential(multiplier=self.backoff_initial, max=self.backoff_max) + wait_random(
            0, self.backoff_initial
        )

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            delay = float(backoff(state))
            if isinstance(exc, QuotaApiError) and exc.retry_after is not None:
                # Retry-After is a floor, never a shortcut: "0" or an HTTP date already past (clock
                # skew) must not turn a 429 storm into retries without backoff or jitter.
                return max(exc.retry_after, delay)
            return delay

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait_seconds = state.next_action.sleep if state.next_action else 0.0
            self.log.warning(
                "%s %s %s failed (%s); retry %d of %d in %.1f s",
                self.api_name,
                method,
                path,
                exc,
                state.attempt_number,
                self.max_attempts - 1,
                wait_seconds,
            )

        return {
            "stop": stop_after_attempt(self.max_attempts),
            "wait": wait,
            "retry": retry_if_exception(lambda exc: isinstance(exc, QuotaApiError) and exc.retryable),
            "before_sleep": log_retry,
            "reraise": True,
        }

    def _transport_error(self, exc: Exception, method: str, path: str) -> QuotaApiError:
        unverified = _certificate_verification_error(exc)
        if unverified is not None:  # no retry can make an untrusted certificate trusted
            why = getattr(unverified, "verify_message", None) or getattr(unverified, "reason", None) or unverified
            return TlsVerificationError(
                f"{method} {path}: the TLS certificate of {self.base_url} failed verification "
                f"({why}); not retried. Fix the server's "
                "certificate or the connection's host; a private CA can be trusted with the "
                "REQUESTS_CA_BUNDLE and SSL_CERT_FILE environment variables",
                api=self.api_name,
                code="TLS_VERIFICATION_FAILED",
                retryable=False,
            )
        name = type(exc).__name__
        if _refused_before_sending(exc):
            # The client refused to build the request (a header or URL it cannot send): the same
            # request can never succeed, and the client's message quotes the header, credential included.
            return QuotaApiError(
                f"{method} {path} could not be sent: the HTTP client refused a header or the URL "
                f"({name}; details withheld, they may quote a credential). Check the connection",
                api=self.api_name,
                code="INVALID_REQUEST",
                retryable=False,
            )
        timeout = "Timeout" in name
        return QuotaApiError(
            f"{method} {path} got no complete answer: {name}: {exc}",
            api=self.api_name,
            code="TIMEOUT" if timeout else "CONNECTION_ERROR",
            retryable=True,
        )

    def _handle_response(
        self, status: int, headers: Mapping[str, str], body: bytes, *, method: str, path: str
    ) -> JsonResponse:
        payload, problem = decode_json_body(body, headers.get("Content-Type"))
        if status >= 400 or (payload is not None and self._is_error_payload(payload)):
            raise self._api_error(status, headers, payload, problem, method=method, path=path)
        if payload is None:
            raise UnexpectedResponseError(
                f"{method} {path} answered HTTP {status} with {problem}",
                api=self.api_name,
                status=status,
                code="UNEXPECTED_RESPONSE",
            )
        if not 200 <= status < 300:
            raise UnexpectedResponseError(
                f"{method} {path} answered HTTP {status}, expected 2xx",
                api=self.api_name,
                status=status,
                code="UNEXPECTED_RESPONSE",
            )
        return JsonResponse(status=status, payload=payload)

    def _api_error(
        self,
        status: int,
        headers: Mapping[str, str],
        payload: dict[str, Any] | None,
        problem: str | None,
        *,
        method: str,
        path: str,
    ) -> QuotaApiError:
        code, message, trace_id = self._error_details(payload)
        if not message:
            message = f"{method} {path} answered HTTP {status}" + (f" with {problem}" if problem else "")
        retryable = status in RETRYABLE_STATUSES
        retry_after = parse_retry_after(headers.get("Retry-After")) if retryable else None
        if retry_after is not None and retry_after > self.max_retry_wait:
            return RetryAfterTooLongError(
                f"{message}; the server asked to retry after {retry_after:.0f} s, more than "
                f"max_retry_wait={self.max_retry_wait:.0f} s, so the request fails now instead of "
                "holding a worker",
                api=self.api_name,
                status=status,
                code=code,
                trace_id=trace_id,
                retryable=False,
                retry_after=retry_after,
            )
        return QuotaApiError(
            message,
            api=self.api_name,
            status=status,
            code=code,
            trace_id=trace_id,
            retryable=retryable,
            retry_after=retry_after,
        )


def _drop_none(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {key: value for key, value in params.items() if value is not None}


def _refused_before_sending(exc: BaseException) -> bool:
    """Whether the HTTP client refused to build the request (requests' InvalidHeader, httpx's LocalProtocolError...)."""
    import httpx
    import requests

    return isinstance(
        exc,
        (
            requests.exceptions.InvalidHeader,
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
            httpx.LocalProtocolError,
            httpx.UnsupportedProtocol,
        ),
    )


def _certificate_verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """
    The certificate verification failure behind a transport error, if that is what it is.

    requests wraps it as SSLError(MaxRetryError(reason=urllib3 SSLError(SSLCertVerificationError)));
    httpx as ConnectError caused by it. Other TLS errors (an EOF mid-handshake...) may be transient.
    """
    import ssl

    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args)
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return None


def _after_attempts(exc: QuotaApiError, attempts: int) -> QuotaApiError:
    """Say in the error how many attempts were spent when the last one was retryable."""
    if attempts <= 1 or not exc.retryable:
        return exc
    return type(exc)(
        f"{exc.api_message} (gave up after {attempts} attempts)",
        api=exc.api,
        status=exc.status,
        code=exc.code,
        trace_id=exc.trace_id,
        retryable=exc.retryable,
        retry_after=exc.retry_after,
    )
