"""
The sandbox's HTTP API: Sonarly and Indeed as documented, plus a control API under ``/_sandbox``.

Control API (JSON bodies; numbers with decimals stay exact):

- ``GET /_sandbox/stats``: requests received per endpoint, faults injected, tokens issued.
- ``GET /_sandbox/requests``: the last requests received (time, endpoint, method, raw path, query).
- ``POST /_sandbox/reset``: back to the start-up state (counters, faults, tokens, quotas).
- ``POST /_sandbox/faults``: add a fault rule, e.g. ``{"kind": "429", "count": 3, "retry_after": "1"}``;
  fields: kind, endpoint, count (null = forever), probability, status, retry_after,
  retry_after_http_date_in, seconds, patch, remove, echo_request. ``DELETE`` clears them.
- ``PUT /_sandbox/quota/{account_group_id}``: ``{"limit", "used", "window_seconds", "reset_in_seconds",
  "reset_after_first_check"}``.
- ``PUT /_sandbox/usage/{employer_id}``: ``{"spend", "requests_count", "api_quota", "month"}``: the
  employer's Indeed usage for ``month`` (``MMyyyy``, default the current month, which follows the clock).
- ``PUT /_sandbox/config``: ``{"token_lifetime": seconds}``.
- ``POST /_sandbox/tokens/expire``: expire every access token issued so far.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import struct
import time
from collections import deque
from datetime import datetime, timezone
from decimal import Decimal
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import FastAPI, Request
from fastapi.responses import Response

from airflow_provider_quota.sandbox.encoding import dump_json
from airflow_provider_quota.sandbox.state import (
    FIRST_MONTH,
    LIST_TYPES,
    Fault,
    SandboxState,
    month_now,
)

SONARLY, INDEED = "sonarly", "indeed"
_MONTH_YEAR = re.compile(r"(0[1-9]|1[0-2])(\d{4})")
_INVALID_MONTH = (
    "monthYear: Invalid month format. Use MMyyyy format (e.g., 122024). "
    "Month cannot be in the future or before December 2024."
)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dump_json(body), status_code=status, headers=headers, media_type="application/json")


def _trace_id() -> str:
    return secrets.token_hex(12)


def _error(api: str, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    if api == SONARLY:
        body: dict[str, Any] = {
            "success": False,
            "data": None,
            "error": {"code": code, "message": message, "details": None},
            "traceId": _trace_id(),
        }
    else:
        body = _indeed_envelope(None, status=status, errors=[{"type": code, "description": message}])
    return _json(body, status, headers)


def _indeed_envelope(data: Any, *, status: int = 200, errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "meta": {
            "status": status,
            "errors": errors,
            "rootLocation": "https://apis.indeed.com/ads",
            "perPage": None,
            "links": None,
        },
        "data": data,
    }


def _patched(data: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
    if fault is None or fault.kind != "patch":
        return data
    data = {**data, **fault.patch}
    for name in fault.remove:
        data.pop(name, None)
    return data


class _DropConnection(Response):
    """Answer nothing (TCP reset), or half a body and then close: faults only a raw transport can make."""

    def __init__(self, transports: dict[tuple[str, int], Any], *, partial_body: bytes | None = None) -> None:
        super().__init__()
        self.transports = transports
        self.partial_body = partial_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        client = scope.get("client")
        transport = self.transports.get((client[0], client[1])) if client else None
        if transport is None:
            raise RuntimeError("the sandbox cannot reach this connection's transport")
        if self.partial_body is None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            return
        full_length = len(self.partial_body) * 2
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(full_length).encode())],
            }
        )
        await send({"type": "http.response.body", "body": self.partial_body, "more_body": True})
        transport.close()


def create_app(state: SandboxState, transports: dict[tuple[str, int], Any] | None = None) -> FastAPI:
    """
    Build the sandbox application.

    :param state: what the sandbox remembers.
    :param transports: the server's open transports by client address, for connection-level faults.
    """
    transports = transports if transports is not None else {}
    recent: deque[dict[str, Any]] = deque(maxlen=100)
    app = FastAPI(title="airflow-provider-quota sandbox", docs_url=None, redoc_url=None)
    app.state.sandbox = state

    async def fault_response(request: Request, endpoint: str, api: str) -> tuple[Response | None, Fault | None]:
        recent.append(
            {
                "at": time.time(),
                "endpoint": endpoint,
                "method": request.method,
                "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
                "query": request.scope.get("query_string", b"").decode("latin-1"),
            }
        )
        fault = state.count_and_take_fault(endpoint)
        if fault is None:
            return None, None
        kind = fault.kind
        if kind == "stall":
            await asyncio.sleep(fault.seconds)
            return None, None
        if kind == "patch":
            return None, fault
        if kind == "reset":
            return _DropConnection(transports), fault
        if kind == "truncate":
            body = dump_json({"success": True, "data": {"listType": "LINKEDIN_CLASSIC"}, "traceId": _trace_id()})
            return _DropConnection(transports, partial_body=body[: len(body) // 2]), fault
        if kind == "malformed":
            return Response(b'{"success": true, "data": {"used": 3,', 200, media_type="application/json"), fault
        if kind == "html":
            status = fault.status or 502
            page = f"<html><head><title>{status}</title></head><body><h1>{status} Bad Gateway</h1></body></html>"
            return Response(page.encode(), status, media_type="text/html"), fault
        if kind == "success_false":
            response = _error(api, 200, "INTERNAL_ERROR", "The request could not be processed.")
            return response, fault
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.retry_after_http_date_in is not None:
            headers["Retry-After"] = formatdate(time.time() + fault.retry_after_http_date_in, usegmt=True)
        status = fault.status if kind == "status" and fault.status else int(kind) if kind.isdigit() else 500
        codes = {429: "RATE_LIMITED", 500: "INTERNAL_SERVER_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE"}
        code = codes.get(status, f"HTTP_{status}")
        message = f"Injected fault: HTTP {status}."
        if fault.echo_request:
            sent = (await request.body()).decode("latin-1")
            message += f" Received Authorization: {request.headers.get('authorization', '')!r}, body: {sent!r}"
        return _error(api, status, code, message, headers), fault

    # ------------------------------------------------------------------ Sonarly

    def sonarly_key(request: Request) -> tuple[frozenset[str] | None, Response | None]:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        permissions = state.api_keys.get(key) if scheme.lower() == "bearer" else None
        if permissions is None:
            return None, _error(SONARLY, 401, "UNAUTHORIZED", "Invalid or missing API key")
        return permissions, None

    def sonarly_ok(data: dict[str, Any], fault: Fault | None) -> Response:
        return _json({"success": True, "data": _patched(data, fault), "error": None, "traceId": _trace_id()})

    @app.get("/v1/accounts")
    async def list_account_groups(request: Request) -> Response:
        response, fault = await fault_response(request, "sonarly_accounts", SONARLY)
        if response is not None:
            return response
        _, denied = sonarly_key(request)
        if denied is not None:
            return denied
        items = [{"id": group, "name": name} for group, name in state.account_groups.items()]
        return sonarly_ok({"items": items}, fault)

    @app.get("/v1/accounts/{rest:path}")
    async def prospecting_quota(request: Request, rest: str) -> Response:
        # Route on the raw path: an id holding an encoded "/" must stay one segment.
        raw = request.scope.get("raw_path", b"").decode("latin-1")
        segments = raw.split("/")
        if len(segments) != 6 or segments[4:] != ["prospecting", "quota"]:
            return _error(SONARLY, 404, "NOT_FOUND", "No such endpoint")
        response, fault = await fault_response(request, "sonarly_quota", SONARLY)
        if response is not None:
            return response
        permissions, denied = sonarly_key(request)
        if denied is not None:
            return denied
        if "prospecting:read" not in (permissions or ()):
            return _error(SONARLY, 403, "FORBIDDEN", "Missing required permission: prospecting:read")
        group = unquote(segments[3])
        if group not in state.quotas:
            return _error(SONARLY, 404, "NOT_FOUND", f"Account group {group!r} not found")
        list_type = request.query_params.get("listType", "LINKEDIN_CLASSIC")
        if list_type not in LIST_TYPES:
            return _error(SONARLY, 400, "VALIDATION_ERROR", f"listType must be one of {', '.join(LIST_TYPES)}")
        window = state.quota(group, time.time())
        remaining = max(0, window.limit - window.used)
        reset_at = datetime.fromtimestamp(window.reset_at, tz=timezone.utc)
        data = {
            "listType": list_type,
            "quotaType": LIST_TYPES[list_type],
            "used": window.used,
            "limit": window.limit,
            "remaining": remaining,
            "resetAt": reset_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "exhausted": remaining == 0,
        }
        return sonarly_ok(data, fault)

    # ------------------------------------------------------------------ Indeed

    @app.post("/oauth/v2/tokens")
    async def issue_token(request: Request) -> Response:
        response, fault = await fault_response(request, "indeed_token", INDEED)
        if response is not None:
            return response
        form = {name: values[0] for name, values in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return _json({"error": "unsupported_grant_type", "error_description": "Use client_credentials"}, 400)
        client_id = form.get("client_id", "")
        if state.clients.get(client_id) is None or not secrets.compare_digest(
            state.clients[client_id], form.get("client_secret", "")
        ):
            return _json({"error": "invalid_client", "error_description": "Client authentication failed"}, 401)
        scope = frozenset(form.get("scope", "").split())
        if not scope:
            return _json({"error": "invalid_scope", "error_description": "scope is required"}, 400)
        token, lifetime = state.issue_token(form.get("employer") or None, scope)
        return _json(
            _patched(
                {
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": lifetime,
                    "scope": " ".join(sorted(scope)),
                },
                fault,
            )
        )

    @app.get("/ads/v1/apiquotausage")
    async def api_quota_usage(request: Request) -> Response:
        response, fault = await fault_response(request, "indeed_quota_usage", INDEED)
        if response is not None:
            return response
        now = time.time()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        grant = state.token_grant(token, now) if scheme.lower() == "bearer" else None
        if grant is None:
            return _error(INDEED, 401, "INVALID_TOKEN", "Invalid OAuth access token.")
        if "employer.advertising.account.read" not in grant.scope:
            return _error(
                INDEED,
                403,
                "INSUFFICIENT_SCOPE",
                "This API requires employer.advertising.account.read or employer.advertising.subaccount.read "
                "scope depending on the type of access token. For details, see the API documentation.",
            )
        if grant.employer is None:
            return _error(INDEED, 403, "INSUFFICIENT_SCOPE", "The access token must represent an employer.")
        month_year = request.query_params.get("monthYear")
        this_month = month_now(now)
        month = this_month
        if month_year is not None:
            match = _MONTH_YEAR.fullmatch(month_year)
            if match is None:
                return _error(INDEED, 400, "INVALID_REQUEST", _INVALID_MONTH)
            month = datetime(int(match.group(2)), int(match.group(1)), 1).date()
            if month < FIRST_MONTH or month > this_month:
                return _error(INDEED, 400, "INVALID_REQUEST", _INVALID_MONTH)
        data = _patched(state.usage_data(grant.employer, month, now), fault)
        return _json(_indeed_envelope(data))

    # ------------------------------------------------------------------ control API

    async def control_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        body = json.loads(raw, parse_float=Decimal) if raw.strip() else {}
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    @app.get("/_sandbox/stats")
    async def stats() -> Response:
        return _json(state.stats())

    @app.get("/_sandbox/requests")
    async def recent_requests() -> Response:
        return _json(list(recent))

    @app.post("/_sandbox/reset")
    async def reset() -> Response:
        state.reset()
        recent.clear()
        return _json(state.stats())

    @app.post("/_sandbox/faults")
    async def add_fault(request: Request) -> Response:
        try:
            state.add_fault(Fault(**await control_body(request)))
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"pending_faults": len(state.faults)})

    @app.delete("/_sandbox/faults")
    async def clear_faults() -> Response:
        with state.lock:
            state.faults.clear()
        return _json({"pending_faults": 0})

    @app.put("/_sandbox/quota/{group:path}")
    async def set_quota(group: str, request: Request) -> Response:
        try:
            state.set_quota(group, **await control_body(request))
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, 400)
        window = state.quota(group, time.time(), is_check=False)
        return _json({"limit": window.limit, "used": window.used, "reset_at": window.reset_at})

    @app.put("/_sandbox/usage/{employer:path}")
    async def set_usage(employer: str, request: Request) -> Response:
        try:
            return _json(state.set_usage(employer, **await control_body(request)))
        except (TypeError, ValueError, ArithmeticError) as exc:
            return _json({"error": str(exc)}, 400)

    @app.put("/_sandbox/config")
    async def configure(request: Request) -> Response:
        body = await control_body(request)
        if "token_lifetime" in body:
            with state.lock:
                state.token_lifetime = int(body["token_lifetime"])
        return _json({"token_lifetime": state.token_lifetime})

    @app.post("/_sandbox/tokens/expire")
    async def expire_tokens() -> Response:
        return _json({"expired": state.expire_tokens()})

    return app
