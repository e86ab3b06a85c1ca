"""A local fake of the Telegram Bot API for the bot's tests, on 127.0.0.1 (a free port).

It serves `/bot<token>/<method>` for getMe, getUpdates (long polling), sendMessage,
editMessageText and answerCallbackQuery, records every call with its parameters, hands out
message ids, and queues updates for getUpdates or posts them to a webhook.

    server = TelegramServer(token="123:abc").start()
    settings.TELEGRAM_API_URL = server.url
    server.push(server.text(chat_id=7, from_id=7, text="/start CODE"))
    ... server.calls("sendMessage") ...
    server.stop()

Like Telegram, getUpdates returns the updates whose id is at least `offset` and forgets
those below it; `resend(update)` hands one out again whatever the offset, as Telegram
resends an update a crashed poller never confirmed.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


@dataclass(frozen=True)
class Call:
    method: str
    params: dict


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def do_POST(self):
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        params = json.loads(body or b"{}")
        prefix, _, method = self.path.lstrip("/").partition("/")
        if prefix != f"bot{owner.token}":
            return self._answer(
                401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            )
        status, answer = owner.answer(method, params)
        self._answer(status, answer)

    do_GET = do_POST

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: TelegramServer


class TelegramServer:
    def __init__(self, *, token: str = "4242:test-token") -> None:  # noqa: S107 - a fake
        self.token = token
        self.resent: list[dict] = []
        self.username = "oracle_test_bot"
        self.lock = threading.Condition()
        self.recorded: list[Call] = []
        self.updates: list[dict] = []
        self.failures: dict[str, list[int]] = {}
        self._message_ids = itertools.count(1000)
        self._update_ids = itertools.count(500)
        self._server = _HttpServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> TelegramServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.lock:
            self.lock.notify_all()
        self._server.shutdown()
        self._server.server_close()

    # --- what the bot called ---

    def calls(self, method: str | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.recorded if method is None or c.method == method]

    def fail_next(self, method: str, *statuses: int) -> None:
        """The next calls of `method` answer these HTTP statuses (Telegram's error shape)."""
        with self.lock:
            self.failures.setdefault(method, []).extend(statuses)

    def answer(self, method: str, params: dict) -> tuple[int, dict]:
        if method == "getUpdates":
            return 200, {"ok": True, "result": self._updates(params)}
        with self.lock:
            self.recorded.append(Call(method, params))
            failing = self.failures.get(method)
            if failing:
                status = failing.pop(0)
                return status, {"ok": False, "error_code": status, "description": "scripted"}
        if method == "getMe":
            result = {"id": 4242, "is_bot": True, "username": self.username}
        elif method in ("sendMessage", "editMessageText"):
            message_id = params.get("message_id") or next(self._message_ids)
            result = {
                "message_id": message_id,
                "chat": {"id": params.get("chat_id"), "type": "private"},
                "date": int(time.time()),
                "text": params.get("text", ""),
            }
        elif method in ("answerCallbackQuery", "setWebhook", "deleteWebhook"):
            result = True
        else:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        return 200, {"ok": True, "result": result}

    def _updates(self, params: dict) -> list[dict]:
        offset = params.get("offset") or 0
        # Short waits, so a stopping bot is not held for its whole timeout.
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 1.0)
        with self.lock:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while True:
                ready = self.resent + [u for u in self.updates if u["update_id"] >= offset]
                left = deadline - time.monotonic()
                if ready or left <= 0:
                    self.resent = []
                    return ready
                self.lock.wait(timeout=left)

    # --- updates, as Telegram would send them ---

    def push(self, update: dict) -> dict:
        """Queues `update` for getUpdates."""
        with self.lock:
            self.updates.append(update)
            self.lock.notify_all()
        return update

    def resend(self, update: dict) -> None:
        with self.lock:
            self.resent.append(update)
            self.lock.notify_all()

    def text(self, *, chat_id: int, from_id: int, text: str, reply_to: int | None = None):
        message = {
            "message_id": next(self._message_ids),
            "from": {"id": from_id, "is_bot": False, "first_name": "Ann", "username": "ann"},
            "chat": {"id": chat_id, "type": "private"},
            "date": int(time.time()),
            "text": text,
        }
        if reply_to is not None:
            message["reply_to_message"] = {"message_id": reply_to, "chat": {"id": chat_id}}
        return {"update_id": next(self._update_ids), "message": message}

    def tap(self, *, chat_id: int, from_id: int, message_id: int, data: str) -> dict:
        return {
            "update_id": next(self._update_ids),
            "callback_query": {
                "id": f"cb{next(self._update_ids)}",
                "from": {"id": from_id, "is_bot": False, "first_name": "Ann", "username": "ann"},
                "message": {
                    "message_id": message_id,
                    "chat": {"id": chat_id, "type": "private"},
                    "date": int(time.time()),
                    "text": "card",
                },
                "chat_instance": "1",
                "data": data,
            },
        }

    def post_to_webhook(self, url: str, update: dict, *, secret: str) -> requests.Response:
        """What Telegram does with a webhook set with secret_token."""
        return requests.post(
            url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}, timeout=30
        )

    # --- reading the cards sent ---

    def buttons(self, call: Call) -> dict[str, str]:
        """A sent or edited card's buttons: {label: callback data}."""
        rows = (call.params.get("reply_markup") or {}).get("inline_keyboard") or []
        return {button["text"]: button["callback_data"] for row in rows for button in row}
