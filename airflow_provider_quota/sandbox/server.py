"""Run the sandbox with uvicorn on loopback, in the foreground or in a background thread."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from airflow_provider_quota.sandbox.app import create_app
from airflow_provider_quota.sandbox.state import SandboxState


def _tracking_protocol(transports: dict[tuple[str, int], Any]) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, remembering each connection's transport (for reset and truncate faults)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # httptools is optional for uvicorn
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class TrackingProtocol(Base):
        _sandbox_peer: tuple[str, int] | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            peer = transport.get_extra_info("peername")
            if peer:
                self._sandbox_peer = (peer[0], peer[1])
                transports[self._sandbox_peer] = transport

        def connection_lost(self, exc: Exception | None) -> None:
            if self._sandbox_peer is not None:
                transports.pop(self._sandbox_peer, None)
            super().connection_lost(exc)

    return TrackingProtocol


class _QuietDeliberateDrops(logging.Filter):
    """uvicorn reports an app that drops a connection on purpose as an error; here it is a fault we inject."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("ASGI callable returned without")


_QUIET_DELIBERATE_DROPS = _QuietDeliberateDrops()


def _require_loopback(host: str) -> None:
    import ipaddress

    if host == "localhost":
        return
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the sandbox listens on loopback only, not on {host}")


class SandboxServer:
    """
    The sandbox on ``http://127.0.0.1:<port>``.

    :param port: TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
    :param host: a loopback address.
    :param state: the sandbox state; a default one when None.
    :param log_level: uvicorn's log level.
    """

    def __init__(
        self, port: int = 0, *, host: str = "127.0.0.1", state: SandboxState | None = None, log_level: str = "warning"
    ) -> None:
        import uvicorn

        _require_loopback(host)
        self.host = host
        self.state = state or SandboxState()
        transports: dict[tuple[str, int], Any] = {}
        config = uvicorn.Config(
            create_app(self.state, transports),
            host=host,
            port=port,
            http=_tracking_protocol(transports),
            log_level=log_level,
            access_log=False,
            lifespan="off",
            backlog=4096,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        logging.getLogger("uvicorn.error").addFilter(_QUIET_DELIBERATE_DROPS)  # idempotent
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def url(self) -> str:
        """Base URL to put in a connection's host."""
        return f"http://{self.host}:{self.port}"

    def _bound_port(self) -> int:
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted."""
        self._server.run()

    def start(self, timeout: float = 10.0) -> SandboxServer:
        """Serve in a daemon thread and return once the port is bound."""
        self._thread = threading.Thread(target=self._server.run, name="quota-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.01)
        self.port = self._bound_port()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
