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


class HostileServer:
    """
    A Sonarly API on 127.0.0.1 that answers as a hostile or broken server would, chosen by the account group:

    - ``gzip-bomb``: 64 KiB of gzip that inflate to 64 MiB;
    - ``endless``: a chunked body that never ends;
    - ``drip``: the headers, then one byte every half second, forever;
    - ``deep``: JSON nested 100,000 arrays deep;
    - ``corrupt-gzip``: a body announced as gzip that is not; ``raw-deflate``: a usable quota sent as
      raw deflate (no zlib header), as some servers send "deflate";
    - ``echo-html``: an HTML page whose ``Content-Type`` quotes the Authorization it received;
    - ``moved``: a 308 redirect to another host;
    - ``moving-reset``: a spent quota whose ``resetAt`` is always a tenth of a second away;
    - any other group: a usable quota, with a ``Set-Cookie``.

    ``requests`` records each request: (method, path, headers).
    """

    BOMB = 64 * 2**20

    def __init__(self) -> None:
        import gzip

        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._stop = threading.Event()
        self._bomb = gzip.compress(b"\0" * self.BOMB, compresslevel=9)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append((self.command, self.path, dict(self.headers)))
                group = self.path.split("?")[0].split("/")[3] if self.path.count("/") >= 3 else ""
                try:
                    getattr(self, f"answer_{group.replace('-', '_')}", self.answer_usable)()
                except (BrokenPipeError, ConnectionResetError):
                    return

            def do_POST(self) -> None:
                self.do_GET()

            def start(self, *headers: tuple[str, str]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()

            def answer_gzip_bomb(self) -> None:
                self.start(("Content-Encoding", "gzip"), ("Content-Length", str(len(server._bomb))))
                self.wfile.write(server._bomb)

            def answer_endless(self) -> None:
                self.start(("Transfer-Encoding", "chunked"))
                chunk = b" " * 65536
                while not server._stop.is_set():
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

            def answer_drip(self) -> None:
                self.start(("Transfer-Encoding", "chunked"))
                while not server._stop.wait(0.5):
                    self.wfile.write(b"1\r\n \r\n")
                    self.wfile.flush()

            def answer_corrupt_gzip(self) -> None:
                body = b"\x1f\x8b\x08\x00" + b"not gzip at all" * 10
                self.start(("Content-Encoding", "gzip"), ("Content-Length", str(len(body))))
                self.wfile.write(body)

            def answer_raw_deflate(self) -> None:
                import zlib

                deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
                quota = {"success": True, "data": QUOTA_DATA, "error": None, "traceId": "raw"}
                body = deflate.compress(json.dumps(quota).encode()) + deflate.flush()
                self.start(("Content-Encoding", "deflate"), ("Content-Length", str(len(body))))
                self.wfile.write(body)

            def answer_echo_html(self) -> None:
                body = b"<p>denied</p>"
                self.send_response(401)
                self.send_header("Content-Type", f"text/html-{self.headers.get('Authorization', '')}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def answer_moved(self) -> None:
                body = b'{"moved": true}'
                self.send_response(308)
                self.send_header("Location", "https://elsewhere.example/v1/accounts")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def answer_moving_reset(self) -> None:
                from datetime import datetime, timedelta, timezone

                reset_at = (datetime.now(timezone.utc) + timedelta(seconds=0.1)).isoformat()
                data = {**QUOTA_DATA, "used": 25, "remaining": 0, "exhausted": True, "resetAt": reset_at}
                body = json.dumps({"success": True, "data": data, "error": None, "traceId": "moving"}).encode()
                self.start(("Content-Length", str(len(body))))
                self.wfile.write(body)

            def answer_deep(self) -> None:
                body = b"[" * 100_000 + b"]" * 100_000
                self.start(("Content-Length", str(len(body))))
                self.wfile.write(body)

            def answer_usable(self) -> None:
                body = json.dumps({"success": True, "data": QUOTA_DATA, "error": None, "traceId": "ok"}).encode()
                self.start(("Content-Length", str(len(body))), ("Set-Cookie", "session=for-this-client; Path=/"))
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # clients hanging up on an endless answer is the point

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="hostile-server", daemon=True)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
