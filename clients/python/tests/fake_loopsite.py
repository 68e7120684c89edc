"""A fake loopsite server (standard library only) that the client's unit tests start, stop and misdirect."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = "lsa_fake_secret"
CONFIG = {
    "agentId": "triage",
    "version": 1,
    "activatedAt": "2026-03-02T09:00:00Z",
    "thresholds": {"flag_threshold": 0.6, "escalate_threshold": 0.85},
    "actions": ["auto-resolve", "flag", "escalate"],
    "gatedActions": {"flag_threshold": "flag", "escalate_threshold": "escalate"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeServer:
    """Stores entries by id like the real batch API: ``created``, ``duplicate`` for the same id again, ``invalid``
    for an action the agent does not have. ``respond`` overrides the answer to the next requests."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config: dict[str, Any] = dict(CONFIG)
        self.stored: dict[str, dict[str, Any]] = {}
        self.received: list[str] = []  # every id in every batch, resends included
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.overrides: list[Callable[[str, dict[str, Any] | None], tuple[int, dict[str, str], bytes] | None]] = []
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # --- Behaviour ------------------------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests.append((method, path, headers))
            parsed = json.loads(body) if body else None
            for override in list(self.overrides):
                answer = override(path, parsed)
                if answer is not None:
                    return answer
            if headers.get("authorization") != f"Bearer {KEY}":
                return 401, {}, b'{"error":{"code":"not_authenticated","message":"no key","field":null}}'
            if method == "GET" and path == "/api/v1/config":
                etag = f'"{self.config["agentId"]}-v{self.config["version"]}"'
                if headers.get("if-none-match") == etag:
                    return 304, {"ETag": etag}, b""
                return 200, {"ETag": etag}, json.dumps(self.config).encode()
            if method == "POST" and path == "/api/v1/decisions/batch":
                assert parsed is not None
                results = []
                for entry in parsed["entries"]:
                    self.received.append(entry["id"])
                    if entry["decision"]["action"] not in self.config["actions"]:
                        results.append(
                            {"id": entry["id"], "status": "invalid", "errors": {"decision.action": "not an action"}}
                        )
                    elif entry["id"] in self.stored:
                        results.append({"id": entry["id"], "status": "duplicate"})
                    else:
                        self.stored[entry["id"]] = entry
                        results.append({"id": entry["id"], "status": "created"})
                return 200, {}, json.dumps({"results": results}).encode()
            return 404, {}, b'{"error":{"code":"not_found","message":"no route","field":null}}'

    # --- Process --------------------------------------------------------------------------------------------

    def start(self) -> FakeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # headers and body in one write: no Nagle / delayed-ACK stall per answer

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, payload = server.answer(self.command, self.path, headers, body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def entry(**decision: Any) -> dict[str, Any]:
    return {
        "sessionId": "s-1",
        "decision": {"action": "flag", "confidence": 0.7, "thresholdUsed": 0.6, "reasoning": "r", **decision},
        "context": {"inputHash": "sha256:0", "features": {"x": 1.0}, "matchedRules": []},
    }
