"""
Local servers on 127.0.0.1 for the faults the sandbox cannot make: a refused port, a server that
accepts and never answers, and an HTTPS server whose certificate chain ends in a self-signed root
(made by trustme).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

#: A usable Sonarly quota, the answer of the HTTPS server.
QUOTA_DATA = {
    "listType": "LINKEDIN_CLASSIC",
    "quotaType": "linkedinClassicSearch",
    "used": 3,
    "limit": 25,
    "remaining": 22,
    "resetAt": "2099-01-01T00:00:00.000Z",
    "exhausted": False,
}


@contextmanager
def refused_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 that does not listen: every connection is refused (and no one else takes it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


class SilentServer:
    """Accepts TCP connections, reads nothing and never answers: only a read timeout ends a request."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self._held.append(conn)  # keep it open, say nothing

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()


class HttpsQuotaServer:
    """
    HTTPS on 127.0.0.1 with a certificate chain that ends in a self-signed root no client trusts.

    ``handshakes`` counts TLS handshakes attempted (accepted TCP connections); ``requests`` the
    requests that got through, i.e. from clients that trusted the certificate. ``cert_path`` is the
    root certificate, for a client that chooses to trust it.
    """

    def __init__(self, directory: Path) -> None:
        authority = trustme.CA()
        self.cert_path = directory / "root.pem"
        authority.cert_pem.write_to_path(self.cert_path)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = json.dumps({"success": True, "data": QUOTA_DATA, "error": None, "traceId": "tls"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        class CountingServer(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                sock, address = self.socket.accept()
                server.handshakes += 1
                return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # a client refusing our certificate is the point of this server

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        chain = directory / "server.pem"  # key, certificate, then the root: a verifying client sees it self-signed
        chain.write_bytes(
            authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.bytes() + authority.cert_pem.bytes()
        )
        context.load_cert_chain(chain)
        self.handshakes = 0
        self.requests = 0
        self._server = CountingServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="https-server", daemon=True)

    def __enter__(self) -> HttpsQuotaServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
