"""A local webhook receiver for the notification tests, on 127.0.0.1 (a free port).

It records every request (headers and the exact body bytes) and answers each with the next
scripted status (or `default`). `hang=True` makes it accept connections and never answer.

    server = WebhookServer().start()
    server.script(500, 200)
    ... server.url, server.requests ...
    server.stop()
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def do_POST(self):
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with owner.lock:
            owner.requests.append(Received(self.path, dict(self.headers.items()), body))
            status = owner.statuses.popleft() if owner.statuses else owner.default
        if owner.hang:
            # Never answer: the sender's read timeout has to end it.
            owner.release.wait(timeout=60)
            return
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: WebhookServer


class WebhookServer:
    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.default = 200
        self.statuses: deque[int] = deque()
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self._server = _HttpServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/oracle"

    def script(self, *statuses: int) -> None:
        self.statuses.extend(statuses)

    def start(self) -> WebhookServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
