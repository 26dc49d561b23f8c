"""
The HTTP base shared by the Sonarly and Indeed hooks.

One home for what both APIs need: the connection (resolved once), a safe base URL, the
settings of every request (:class:`HttpSettings`: timeouts, an overall deadline, a cap on
the answer's size, one retry policy), and one response handler that turns error envelopes and
unexpected answers into :class:`~airflow_provider_quota.exceptions.QuotaApiError`.

There is one implementation of a request, asynchronous (httpx), used directly by triggers and
through a process-wide I/O thread by the synchronous methods tasks call. Each connection has
its own client (pool, request slots, no cookies), so nothing learned for one connection is sent
for another and one slow host cannot take the slots of another. Nothing here logs, raises or
reprs a credential, and text from the network is stripped of the connection's secrets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from functools import cached_property
from http.cookiejar import DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from airflow.sdk import BaseHook
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airflow_provider_quota import __version__
from airflow_provider_quota.exceptions import (
    ConnectionConfigError,
    InvalidParameterError,
    QuotaApiError,
    RetryAfterTooLongError,
    TlsVerificationError,
    UnexpectedResponseError,
)

if TYPE_CHECKING:
    import ssl

    import httpx
    from airflow.sdk import Connection
    from tenacity import RetryCallState

USER_AGENT = f"airflow-provider-quota/{__version__}"
_MAX_ID_LENGTH = 256
T = TypeVar("T")


class HttpSettings(BaseModel):
    """
    Timeouts, limits and retries of every request a hook sends: the one place they are defined.

    Tasks pass them as ``hook_params`` (plain numbers). What a failure costs, end to end: a call
    sends at most ``max_attempts`` requests (the first, then retries of 408, 429, 5xx and
    transport failures after a jittered exponential backoff, or after the server's
    ``Retry-After`` when that is longer; a ``Retry-After`` above ``max_retry_wait`` fails at once).
    Anything else (400, 401, 403, 404, an untrusted certificate, an answer too large or out of
    bounds) is permanent: no retry by the hook, and none by Airflow either. A transient failure
    fails the task, which Airflow retries ``retries`` times. A deferred gate's trigger makes one
    call per check and ends after 3 failed checks in a row. So a quota gate whose API keeps
    failing costs at most ``max_attempts x (1 + 3) x (retries + 1)`` requests.

    :param connect_timeout: seconds to wait for a TCP and TLS connection.
    :param read_timeout: seconds to wait for the server between bytes of the answer.
    :param deadline: seconds for a whole attempt, from connecting to the last byte, however slowly
        the server drips its answer.
    :param max_response_bytes: the largest answer read (after gzip or deflate), in bytes.
    :param max_attempts: requests per call, the first one included (1 disables retries).
    :param backoff_initial: first backoff in seconds; it doubles on each retry, with jitter.
    :param backoff_max: the longest backoff between two attempts, in seconds.
    :param max_retry_wait: the longest ``Retry-After`` honoured, in seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    connect_timeout: float = Field(10.0, gt=0, allow_inf_nan=False)
    read_timeout: float = Field(30.0, gt=0, allow_inf_nan=False)
    deadline: float = Field(60.0, gt=0, allow_inf_nan=False)
    max_response_bytes: int = Field(4 * 2**20, ge=1024)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_initial: float = Field(1.0, gt=0, allow_inf_nan=False)
    backoff_max: float = Field(30.0, gt=0, allow_inf_nan=False)
    max_retry_wait: float = Field(300.0, ge=0, allow_inf_nan=False)

    @classmethod
    def of(cls, params: Mapping[str, Any] | None) -> HttpSettings:
        """
        Validate settings given as keyword arguments or ``hook_params``.

        :raise InvalidParameterError: naming each unknown key and bad value.
        """
        try:
            return cls.model_validate(dict(params or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors(include_url=False)
            )
            raise InvalidParameterError(f"hook settings: {problems} (allowed: {', '.join(cls.model_fields)})") from None

    @classmethod
    def params(cls, hook_params: Mapping[str, Any] | None) -> dict[str, Any]:
        """The given ``hook_params``, validated: what a task stores and sends to its trigger."""
        return cls.of(hook_params).model_dump(exclude_unset=True)


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
    if len(value) > _MAX_ID_LENGTH:
        raise InvalidParameterError(f"{name} is {len(value)} characters long, more than {_MAX_ID_LENGTH}")
    if value != value.strip():
        raise InvalidParameterError(f"{name} {value!r} has leading or trailing whitespace")
    if value in (".", ".."):
        raise InvalidParameterError(f"{name} {value!r} is not an id")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise InvalidParameterError(f"{name} {value!r} contains a control character")
    return value


def quote_path_segment(value: object, *, name: str) -> str:
    """
    Validate an id (:func:`validate_id`) and URL-encode it as one path segment.

    ``/``, ``?``, ``#``, ``%``, spaces and non-ASCII characters are percent-encoded, so a
    value can never change the request's path or query.
    """
    return quote(validate_id(value, name=name), safe="")


def check_credential_text(value: str | None, *, what: str, conn_id: str) -> None:
    """
    Refuse a credential that is not printable ASCII without spaces, without ever echoing it.

    A key pasted with a trailing line break is the usual case: sent in a header, it makes the HTTP
    client raise an error that quotes the whole header, key included. Non-ASCII characters have no
    single encoding in a header.

    :raise ConnectionConfigError: naming the connection, the field and the first bad position.
    """
    for position, char in enumerate(value or "", start=1):
        if not "!" <= char <= "~":
            kind = (
                "a line break"
                if char in "\r\n"
                else "a space"
                if char.isspace()
                else "a non-ASCII character"
                if char.isprintable()
                else "a control character"
            )
            raise ConnectionConfigError(
                f"Connection {conn_id!r}: the {what} holds {kind} (character {position} of {len(value or '')}); "
                "enter it again as printable ASCII without spaces or line breaks"
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

    :return: seconds to wait (never negative, finite), or None when absent or unreadable.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN or infinity
        return None
    return max(0.0, seconds)


#: What a body nested past Python's recursion limit is called: an answer no retry can fix.
JSON_TOO_DEEP = "JSON nested too deep"


def _reject_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int | Decimal:
    # Past 40 digits no count is plausible: keep it a Decimal, which every count field refuses by name
    # (int() of thousands of digits is slow, and past 4,300 a bare ValueError).
    return int(text) if len(text) <= 40 else Decimal(text)


_COMMON_MEDIA_TYPES = frozenset({"text/html", "text/plain", "text/xml", "application/xml", "application/json"})


def decode_json_body(body: bytes, content_type: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """
    Decode a JSON object, keeping every non-integer number an exact Decimal.

    :return: ``(payload, None)`` on success, or ``(None, what was wrong)``.
    """
    if not body.strip():
        return None, "an empty body"
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == "text/html" or body.lstrip()[:1] == b"<":
        # Named only when it is a common type: a header is the server's text and may quote a credential.
        named = media_type if media_type in _COMMON_MEDIA_TYPES else "unset" if not media_type else "unusual"
        return None, f"an HTML page (Content-Type {named}), not JSON; a proxy or a wrong host?"
    try:
        payload = json.loads(body, parse_float=Decimal, parse_int=_bounded_int, parse_constant=_reject_json_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"malformed JSON ({str(exc)[:200]})"
    except RecursionError:
        return None, JSON_TOO_DEEP
    if not isinstance(payload, dict):
        return None, f"JSON that is not an object (a {type(payload).__name__})"
    return payload, None


class _AnswerRefusedError(Exception):
    """An answer the hook stops reading: too large, in an encoding it did not ask for, or corrupt."""

    def __init__(self, message: str, code: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent


class _BodyReader:
    """An answer's body, inflated here (gzip, deflate) and refused past ``limit`` bytes."""

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        # 32 + MAX_WBITS reads gzip or zlib-wrapped deflate, by the stream's header; some servers send
        # "deflate" raw, without the zlib header: that is tried on the first error.
        wbits = 32 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip", "deflate") else None
        self._raw_deflate_fallback = encoding == "deflate"
        if wbits is None and encoding != "identity":
            raise _AnswerRefusedError(
                f"the answer's Content-Encoding {encoding[:40]!r} was not asked for", "UNEXPECTED_RESPONSE"
            )
        self._inflater = None if wbits is None else zlib.decompressobj(wbits)
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        while chunk:
            if self._inflater is None:
                data, chunk = chunk, b""
            else:  # inflate at most what fits, so a small bomb never becomes a big buffer
                data, chunk = self._inflate(chunk)
            self._size += len(data)
            if self._size > self._limit:
                raise _AnswerRefusedError(
                    f"the answer is larger than max_response_bytes={self._limit}", "RESPONSE_TOO_LARGE"
                )
            self._parts.append(data)

    def _inflate(self, chunk: bytes) -> tuple[bytes, bytes]:
        assert self._inflater is not None
        try:
            data = self._inflater.decompress(chunk, self._limit + 1 - self._size)
        except zlib.error as exc:
            if not self._raw_deflate_fallback or self._size:
                raise _AnswerRefusedError(
                    f"the answer's compressed body is corrupt ({exc})", "UNEXPECTED_RESPONSE", permanent=False
                ) from None
            self._raw_deflate_fallback, self._inflater = False, zlib.decompressobj(-zlib.MAX_WBITS)
            return b"", chunk
        return data, self._inflater.unconsumed_tail

    def body(self) -> bytes:
        if self._inflater is not None and not self._inflater.eof:
            raise _AnswerRefusedError("the answer's compressed body ends early", "UNEXPECTED_RESPONSE", permanent=False)
        return b"".join(self._parts)


def _ssl_context() -> ssl.SSLContext | bool:
    """Verification always on; a private CA from the variables requests users set, else httpx's defaults."""
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if not cafile:
        return True
    import ssl

    return ssl.create_default_context(cafile=cafile)


#: Requests in flight at once per connection and event loop, and that connection's kept-alive sockets.
#: httpx's pool gets slower with every request queued inside it and counts that queueing against
#: the pool timeout (encode/httpx#3215, #1171): thousands of triggers waking together made it time
#: out. The excess waits on a semaphore instead, outside the pool (see docs/performance.md).
ASYNC_MAX_CONNECTIONS = 10
#: Seconds an idle client stays open, so that calls in a row reuse its connections.
CLIENT_IDLE_SECONDS = 5.0


V = TypeVar("V")


def loop_local(registry: dict[asyncio.AbstractEventLoop, V], make: Callable[[], V]) -> V:
    """
    The running event loop's entry of a per-loop registry, made on first use.

    Entries of closed loops are dropped here: their locks, timers and clients hold their loop, so
    a weak mapping would never let go of it (every ``asyncio.run`` is a new loop).
    """
    loop = asyncio.get_running_loop()
    for closed in [other for other in registry if other.is_closed()]:
        del registry[closed]
    if loop not in registry:
        registry[loop] = make()
    return registry[loop]


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***``, the longest first (one may hold another)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _LibraryLogRedactor(logging.Filter):
    """
    Takes the hooks' credentials out of httpx's and httpcore's own log records.

    Their DEBUG traces quote response headers, a server's text, which may quote the key it got.
    Airflow masks connection passwords in the logs it formats; this also covers any other handler.
    A logger's filters do not apply to its children's records, so each logger is named.
    """

    LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy")
    MAX_SECRETS = 256

    def __init__(self) -> None:
        super().__init__()
        self._secrets: dict[str, None] = {}  # the latest first out, bounded (access tokens rotate)
        self._lock = threading.Lock()
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)

    def remember(self, secrets: list[str]) -> None:
        with self._lock:
            for secret in filter(None, secrets):
                self._secrets.pop(secret, None)
                self._secrets[secret] = None
            while len(self._secrets) > self.MAX_SECRETS:
                del self._secrets[next(iter(self._secrets))]

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets = list(self._secrets)
        if secrets:
            original = record.getMessage()
            message = mask_secrets(original, secrets)
            if message != original:
                record.msg, record.args = message, None
        return True


_LIBRARY_LOGS = _LibraryLogRedactor()


class _ConnectionClient:
    """One httpx.AsyncClient per (event loop, connection, base URL), closed a few seconds after its last user."""

    _registry: ClassVar[dict[asyncio.AbstractEventLoop, dict[tuple[str, str], _ConnectionClient]]] = {}

    def __init__(self) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
            limits=httpx.Limits(max_connections=ASYNC_MAX_CONNECTIONS, max_keepalive_connections=ASYNC_MAX_CONNECTIONS),
            follow_redirects=False,
            verify=_ssl_context(),
        )
        # No cookies kept: no answer can make the client send something back, to this host or another.
        self.client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        #: A request holds a slot from sending to reading the last byte of the answer.
        self.slots = asyncio.Semaphore(ASYNC_MAX_CONNECTIONS)
        self.users = 0
        self._closing: asyncio.TimerHandle | None = None
        self._closed: asyncio.Future[None] | None = None

    @classmethod
    @asynccontextmanager
    async def borrow(cls, key: tuple[str, str]) -> AsyncIterator[_ConnectionClient]:
        loop = asyncio.get_running_loop()
        clients = loop_local(cls._registry, dict)
        shared = clients.get(key)
        if shared is None:
            shared = clients[key] = cls()
        if shared._closing is not None:
            shared._closing.cancel()
            shared._closing = None
        shared.users += 1
        try:
            yield shared
        finally:
            shared.users -= 1
            if shared.users == 0:
                shared._closing = loop.call_later(CLIENT_IDLE_SECONDS, shared._close_if_idle, clients, key)

    def _close_if_idle(self, clients: dict[tuple[str, str], _ConnectionClient], key: tuple[str, str]) -> None:
        if self.users == 0 and clients.get(key) is self:
            del clients[key]
            self._closed = asyncio.ensure_future(self.client.aclose())


_LOOKUP_SLOTS: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def _connection_lookup_slots() -> asyncio.Semaphore:
    """The running event loop's limit on connection lookups in progress at once."""
    return loop_local(_LOOKUP_SLOTS, lambda: asyncio.Semaphore(ASYNC_MAX_CONNECTIONS))


class _IoThread:
    """The event loop that runs the synchronous hook calls of this process, in a daemon thread."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _loop: ClassVar[asyncio.AbstractEventLoop | None] = None
    _pid: ClassVar[int | None] = None

    @classmethod
    def run(cls, coroutine: Coroutine[Any, Any, T]) -> T:
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid():  # a forked worker needs its own thread
                cls._loop, cls._pid = asyncio.new_event_loop(), os.getpid()
                threading.Thread(target=cls._loop.run_forever, name="quota-hook-io", daemon=True).start()
            loop = cls._loop
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # the caller gave up (task timeout, kill): so does the request
            raise


@dataclass(frozen=True)
class JsonResponse:
    """A decoded JSON answer and its HTTP status."""

    status: int
    payload: dict[str, Any]


class QuotaApiHook(BaseHook):
    """
    Base of the provider's hooks: connection, timeouts, retries and envelopes, shared by both APIs.

    Subclasses set the class attributes below and implement :meth:`_check_credentials`,
    :meth:`_secrets` and :meth:`_error_details`.

    :param conn_id: the Airflow connection id.
    :param settings: :class:`HttpSettings` as keyword arguments (``read_timeout=10``...).
    """

    conn_name_attr: ClassVar[str]
    default_conn_name: ClassVar[str]
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]
    #: Name of the API in messages ("Sonarly", "Indeed").
    api_name: ClassVar[str]
    #: Base URL used when the connection has no host.
    default_host: ClassVar[str]

    def __init__(self, conn_id: str, **settings: Any) -> None:
        super().__init__()
        if not isinstance(conn_id, str) or not conn_id:
            raise InvalidParameterError(f"{self.conn_name_attr} must be a non-empty string, not {conn_id!r}")
        self.conn_id = conn_id
        self.settings = HttpSettings.of(settings)

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
        except (ValueError, RecursionError):
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

    # ------------------------------------------------------------------ subclass API

    def _check_credentials(self, conn: Connection) -> None:
        """Raise ConnectionConfigError when the connection lacks a required credential."""
        raise NotImplementedError

    def _secrets(self) -> list[str]:
        """The credentials this hook holds (key, client secret, access tokens): never echoed back."""
        raise NotImplementedError

    def _error_details(self, payload: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
        """Return ``(code, message, trace_id)`` of an error answer, or Nones."""
        raise NotImplementedError

    def _is_error_payload(self, payload: dict[str, Any]) -> bool:
        """Whether a 2xx answer is nevertheless an error envelope."""
        return False

    def redact(self, text: str) -> str:
        """``text`` without any of this hook's credentials: for text that came from the network."""
        return mask_secrets(text, self._secrets())

    # ------------------------------------------------------------------ requests

    def run_sync(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """
        Run one of the hook's coroutines for a synchronous caller (a task), on the I/O thread.

        The connection is resolved first, in the caller's thread, as tasks expect.
        """
        try:
            self.connection  # noqa: B018 (resolve it here)
        except BaseException:
            coroutine.close()
            raise
        return _IoThread.run(coroutine)

    async def arequest_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> JsonResponse:
        """
        Send a request with the hook's settings and retry policy and return the decoded answer.

        Call :meth:`aget_checked_connection` (or read :attr:`connection`) first.

        :param method: HTTP method.
        :param path: path below the base URL, already URL-encoded.
        :param params: query parameters; None values are left out.
        :param form: form fields for a form-encoded body.
        :param token: the Bearer credential to send, if any (the only credential sent).
        :raise QuotaApiError: on an error answer, once retries are spent.
        """
        from tenacity import AsyncRetrying

        query = None if params is None else {key: value for key, value in params.items() if value is not None}
        _LIBRARY_LOGS.remember([*self._secrets(), token or ""])
        retrying = AsyncRetrying(sleep=self._asleep, **self._retry_policy(method, path))
        try:
            async with _ConnectionClient.borrow((self.conn_id, self.base_url)) as shared:
                return await retrying(self._send_once, shared, method, path, query, form, token)
        except QuotaApiError as exc:
            exc.attempts = retrying.statistics.get("attempt_number", 1)
            raise

    async def _send_once(
        self,
        shared: _ConnectionClient,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        form: Mapping[str, str] | None,
        token: str | None,
    ) -> JsonResponse:
        import httpx

        settings = self.settings

        async def exchange() -> tuple[int, httpx.Headers, bytes]:
            async with (
                shared.client.stream(
                    method,
                    self.base_url + path,
                    params=params,
                    data=form,
                    # The only credential sent: httpx adds none of its own (no netrc, no cookies).
                    headers={"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
                    timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
                ) as response,
            ):
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > settings.max_response_bytes:
                    limit = settings.max_response_bytes
                    raise _AnswerRefusedError(
                        f"the answer announces {length} bytes, more than max_response_bytes={limit}",
                        "RESPONSE_TOO_LARGE",
                    )
                reader = _BodyReader(response.headers.get("Content-Encoding"), settings.max_response_bytes)
                async for chunk in response.aiter_raw():
                    reader.feed(chunk)
                return response.status_code, response.headers, reader.body()

        try:
            async with shared.slots:  # waiting for a slot is not part of the deadline: sending is
                status, headers, body = await asyncio.wait_for(exchange(), settings.deadline)
        except (httpx.TransportError, asyncio.TimeoutError) as exc:
            raise self._transport_error(exc, method, path) from None
        except _AnswerRefusedError as exc:
            raise UnexpectedResponseError(
                f"{method} {path}: {exc}; not read further",
                api=self.api_name,
                code=exc.code,
                retryable=not exc.permanent,
                permanent=exc.permanent,
            ) from None
        return self._handle_response(status, headers, body, method=method, path=path)

    async def _asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    # ------------------------------------------------------------------ policy

    def _retry_policy(self, method: str, path: str) -> dict[str, Any]:
        from tenacity import retry_if_exception, stop_after_attempt, wait_exponential, wait_random

        settings = self.settings
        backoff = wait_exponential(multiplier=settings.backoff_initial, max=settings.backoff_max) + wait_random(
            0, settings.backoff_initial
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
                settings.max_attempts - 1,
                wait_seconds,
            )

        return {
            "stop": stop_after_attempt(settings.max_attempts),
            "wait": wait,
            "retry": retry_if_exception(lambda exc: isinstance(exc, QuotaApiError) and bool(exc.retryable)),
            "before_sleep": log_retry,
            "reraise": True,
        }

    def _transport_error(self, exc: Exception, method: str, path: str) -> QuotaApiError:
        import ssl

        import httpx

        causes = _causes(exc)
        unverified = next((cause for cause in causes if isinstance(cause, ssl.SSLCertVerificationError)), None)
        if unverified is not None:  # no retry can make an untrusted certificate trusted
            return TlsVerificationError(
                f"{method} {path}: the TLS certificate of {self.base_url} failed verification "
                f"({getattr(unverified, 'verify_message', None) or unverified}); not retried. Fix the server's "
                "certificate or the connection's host; a private CA can be trusted with the "
                "SSL_CERT_FILE or REQUESTS_CA_BUNDLE environment variables",
                api=self.api_name,
                code="TLS_VERIFICATION_FAILED",
                permanent=True,
            )
        name = type(exc).__name__
        if isinstance(exc, (httpx.LocalProtocolError, httpx.UnsupportedProtocol)):
            # The client refused to build the request (a header or URL it cannot send): the same
            # request can never succeed, and the client's message may quote the header, credential included.
            return QuotaApiError(
                f"{method} {path} could not be sent: the HTTP client refused a header or the URL "
                f"({name}; details withheld, they may quote a credential). Check the connection",
                api=self.api_name,
                code="INVALID_REQUEST",
                permanent=True,
            )
        if isinstance(exc, asyncio.TimeoutError):
            detail = f"no complete answer within deadline={self.settings.deadline:g} s"
        else:  # the OS's error behind it says what happened ("ConnectionRefusedError: ...")
            root = causes[-1]
            behind = f" ({type(root).__name__}: {root})" if isinstance(root, OSError) and root is not exc else ""
            detail = self.redact(f"{name}: {exc}{behind}")[:400]
        return QuotaApiError(
            f"{method} {path} got no complete answer: {detail}",
            api=self.api_name,
            code="TIMEOUT" if "Timeout" in name else "CONNECTION_ERROR",
            retryable=True,
        )

    def _handle_response(
        self, status: int, headers: Mapping[str, str], body: bytes, *, method: str, path: str
    ) -> JsonResponse:
        payload, problem = decode_json_body(body, headers.get("Content-Type"))
        problem = problem and self.redact(problem)
        if status >= 400 or (payload is not None and self._is_error_payload(payload)):
            raise self._api_error(status, headers, payload, problem, method=method, path=path)
        redirect = 300 <= status < 400
        if redirect:  # never followed (a credential must not go to another host): the same request gets it again
            where = self.redact(urlsplit(headers.get("Location", "")).netloc[:100]) or "an unnamed place"
            problem = f"a redirect to {where}, which is not followed: point the connection's host at the API"
        if payload is None or not 200 <= status < 300:
            raise UnexpectedResponseError(
                f"{method} {path} answered HTTP {status} with {problem or 'a status other than 2xx'}",
                api=self.api_name,
                status=status,
                code="UNEXPECTED_RESPONSE",
                permanent=redirect or problem == JSON_TOO_DEEP,
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
        code, message, trace_id = self._error_details(payload) if payload is not None else (None, None, None)
        code, message, trace_id = (None if text is None else self.redact(text) for text in (code, message, trace_id))
        if not message:
            message = f"{method} {path} answered HTTP {status}" + (f" with {problem}" if problem else "")
        error = QuotaApiError(message, api=self.api_name, status=status, code=code, trace_id=trace_id)
        if error.retryable:
            error.retry_after = parse_retry_after(headers.get("Retry-After"))
        if error.retry_after is not None and error.retry_after > self.settings.max_retry_wait:
            return RetryAfterTooLongError(
                f"{message}; the server asked to retry after {error.retry_after:.0f} s, more than "
                f"max_retry_wait={self.settings.max_retry_wait:.0f} s, so the request fails now instead of "
                "holding a worker",
                api=self.api_name,
                status=status,
                code=code,
                trace_id=trace_id,
                retryable=False,
                permanent=False,  # the server may answer later: the task's own retries still apply
                retry_after=error.retry_after,
            )
        return error


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors behind it (httpx wraps the OS's or the TLS library's error twice)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
