"""A local OpenAI-compatible chat-completions server, for the budget and fuzz tests.

It listens on 127.0.0.1 (a free port), counts every call that reaches it, and answers each
with the next scripted Reply (or the default one): any content, malformed or not, an HTTP
error, or a body that is not JSON at all.

    server = LlmTestServer().start()
    server.default = Reply(content='{"decision": "no_trade", ...}')
    server.script(Reply(content="not json"), Reply(status=500))
    ... server.base_url, server.calls, server.requests ...
    server.stop()
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    content: str | None = None
    status: int = 200
    prompt_tokens: int = 321
    completion_tokens: int = 45
    raw_body: str | None = None  # sent as is, instead of a chat completion
    delay: float = 0.0
    # Called with the request before answering (in the server's thread).
    before: Callable[[dict], None] | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        owner = self.server.owner
        with owner.lock:
            owner.calls += 1
            owner.requests.append(request)
            reply = owner.replies.popleft() if owner.replies else owner.default
            number = owner.calls
        if reply.before is not None:
            reply.before(request)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.raw_body is not None:
            body = reply.raw_body.encode()
        elif reply.status != 200:
            error = {"message": "test failure", "type": "server_error", "code": None}
            body = json.dumps({"error": error}).encode()
        else:
            usage = {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            }
            message = {"role": "assistant", "content": reply.content, "refusal": None}
            body = json.dumps(
                {
                    "id": f"chatcmpl-test-{number}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request.get("model", "test-model"),
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
                    ],
                    "usage": usage,
                }
            ).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: LlmTestServer


class LlmTestServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.requests: list[dict] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply(content=json.dumps({"decision": "no_trade"}))
        self.httpd = _HttpServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def script(self, *replies: Reply) -> None:
        """The next calls get these replies, in order; later ones get the default."""
        with self.lock:
            self.replies.extend(replies)

    def reset(self) -> None:
        with self.lock:
            self.calls = 0
            self.requests.clear()
            self.replies.clear()
            self.default = Reply(content=json.dumps({"decision": "no_trade"}))

    def start(self) -> LlmTestServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
