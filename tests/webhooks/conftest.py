"""A local receiver for webhook deliveries (an HTTP server on 127.0.0.1, a free port, in a thread of the test), and
deliveries sent at once instead of through the broker."""

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from webhooks.models import Webhook


@dataclass
class Received:
    path: str
    headers: Message  # case-insensitive, as HTTP headers are
    body: bytes


@dataclass
class Receiver:
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, *codes: int) -> None:
        """The next requests to ``path`` get these status codes, then 200."""
        self.script[path] = list(codes)

    def to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with received.lock:
                received.requests.append(Received(self.path, self.headers, body))
                codes = received.script.get(self.path)
                code = codes.pop(0) if codes else 200
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def send_at_once(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The outbox's hand-off to the broker runs the task here instead; returns the ids handed off."""
    from webhooks import tasks

    handed: list[int] = []

    def delay(delivery_pk: int) -> None:
        handed.append(delivery_pk)
        tasks.webhook_deliver_task(delivery_pk)

    monkeypatch.setattr(tasks.webhook_deliver_task, "delay", delay)
    return handed


def make_webhook(receiver: Receiver, path: str, *, events: list[str], **fields: Any) -> Webhook:
    return Webhook.objects.create(name=path.strip("/") or "hook", url=receiver.url(path), events=events, **fields)
