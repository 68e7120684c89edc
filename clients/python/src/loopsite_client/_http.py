"""HTTP with the standard library: one keep-alive connection per thread, ``Retry-After``, jittered backoff."""

from __future__ import annotations

import http.client
import random
import socket
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urlsplit

from loopsite_client import __version__

MAX_RETRY_AFTER = 600.0


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers.get("retry-after"))


TransportError = (OSError, http.client.HTTPException, socket.timeout)


class Transport(Protocol):
    """How the client reaches the server: ``Http`` (the default), or any object with this one method, such as an
    in-process server for a simulation or a test.

    ``path`` starts with ``/api/v1/``; ``headers`` carry ``Authorization``, ``Accept``, ``User-Agent`` and, with a
    body, ``Content-Type``. Return the server's answer whatever its status (headers' names in lower case); raise
    one of ``TransportError`` (an ``OSError`` will do) when the server could not be reached, and the client retries.
    The client calls it from its background threads (and from the caller's, in ``refresh()`` and, with
    ``background=False``, in ``flush()``): one call at a time per thread, but possibly two threads at once.
    An optional ``close()`` is called by ``Client.close()``.
    """

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response: ...


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(0.0, when - (time.time() if now is None else now)), MAX_RETRY_AFTER)


class Http:
    """One connection to the server, used by one thread only (``http.client`` is not thread-safe)."""

    def __init__(self, base_url: str, key: str, *, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port][/prefix], not {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._headers = {
            "Authorization": f"Bearer {key}",
            "Accept": "application/json",
            "User-Agent": f"loopsite-client/{__version__}",
        }
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=timeout)
        else:
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
        return self._conn

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """One request. Transport failures (refused, reset, timed out) raise one of ``TransportError``."""
        conn = self._connection(self.timeout if timeout is None else timeout)
        sent = {**self._headers, **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/json"
        try:
            conn.request(method, self._prefix + path, body=body, headers=sent)
            response = conn.getresponse()
            payload = response.read()
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, payload)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class Backoff:
    """Exponential backoff with jitter: the n-th delay is drawn from [d/2, d] with d = min(cap, base * 2^n),
    and is never shorter than the server's ``Retry-After``."""

    def __init__(self, *, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, retry_after + self._rng.uniform(0, max(0.05, retry_after * 0.1)))
        return delay

    def reset(self) -> None:
        self.attempt = 0
