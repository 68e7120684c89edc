"""The wire: a delivery's body in its webhook's format, its signature and headers, and one POST. No ORM here."""

import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

USER_AGENT = "loopsite-webhooks/1"


def body_render(*, payload: dict[str, Any], format: str) -> bytes:
    """The exact bytes POSTed (and signed). ``chat`` is the shape chat tools' incoming webhooks take."""
    if format == "chat":
        document: dict[str, Any] = {"text": f"{payload['summary']} {payload['url']}".strip()}
    else:
        document = payload
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signature(*, secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def headers_for(*, event: str, delivery_id: str, secret: str, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Loopsite-Event": event,
        "X-Loopsite-Delivery": delivery_id,
        "X-Loopsite-Signature": signature(secret=secret, body=body),
    }


@dataclass(frozen=True)
class Outcome:
    status_code: int | None  # None: no answer (refused, timed out, bad address)
    error: str  # empty when delivered

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer of its own (a failure): a signed POST is never re-sent somewhere else."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        text = " ".join(exc.read(300).decode("utf-8", "replace").split())
        return Outcome(exc.code, f"HTTP {exc.code} {exc.reason}" + (f": {text}" if text else ""))
    except urllib.error.URLError as exc:
        reason = exc.reason
        return Outcome(None, f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason))
    except (OSError, http.client.HTTPException, ValueError) as exc:  # timeouts, resets, a malformed answer
        return Outcome(None, f"{type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return Outcome(status, "")
    return Outcome(status, f"HTTP {status}")
