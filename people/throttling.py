"""How often the API may be called: agent keys per agent, people per user, and failed bearer keys per address.

Each rate is a fixed window counted in the cache (one atomic increment a request on Redis), read from
``settings.LOOPSITE_THROTTLE_RATES`` at each request. A throttled request gets 429 with ``Retry-After``, the
seconds until its window ends. The cache is an optimisation here as everywhere: when it cannot count, the request
is let through rather than refused (an agent must never be blocked by a cache outage).
"""

import functools
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from rest_framework.throttling import BaseThrottle

from loopsite.cache import DegradingRedisCache
from people.authentication import AgentPrincipal

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count} per {self.seconds} s"


@functools.lru_cache(maxsize=64)  # read from settings at every request; parsed once per text
def rate_parse(text: str) -> Rate:
    """``"6000/min"``, ``"20/10min"``, ``"100/s"``: a count per (optionally several) seconds, minutes, hours, days."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*", text)
    if not match or match.group(3) not in _UNITS or int(match.group(1)) < 1:
        raise ValueError(f"not a rate: {text!r}; write a count per unit, for example 6000/min or 20/10min")
    return Rate(int(match.group(1)), int(match.group(2) or 1) * _UNITS[match.group(3)])


def rate(scope: str) -> Rate:
    return rate_parse(settings.LOOPSITE_THROTTLE_RATES[scope])


@dataclass(frozen=True)
class _Window:
    """The fixed window ``now`` falls in, for one scope and caller: its cache key, limit and remaining seconds."""

    key: str
    limit: int
    seconds: int
    left: float

    @classmethod
    def at(cls, scope: str, ident: object, now: float | None) -> "_Window":
        limit = rate(scope)
        now = time.time() if now is None else now
        index = int(now // limit.seconds)
        left = max(1.0, (index + 1) * limit.seconds - now)
        return cls(f"throttle:{scope}:{ident}:{index}", limit.count, limit.seconds, left)


def _read_and_count(read: Sequence[str], key: str, seconds: int) -> tuple[dict[str, Any], int | None]:
    """Read the keys ``read`` and add one to the counter ``key``, made (expiring after ``seconds``) when absent:
    their values (the absent left out) and the count, None when it cannot count. On Redis in one round trip
    (``DegradingRedisCache.read_and_count``): throttling runs at every request."""
    backend = caches["default"]
    if isinstance(backend, DegradingRedisCache):
        return backend.read_and_count(read, key, seconds)
    seen = cache.get_many(read) if read else {}
    cache.add(key, 0, timeout=seconds)
    return seen, cache.incr(key)


def window_hit(scope: str, ident: object, *, now: float | None = None) -> float | None:
    """Count one request of ``ident`` in ``scope``; None when it is allowed, else the seconds to wait."""
    return window_hit_reading(scope, ident, (), now=now)[1]


def window_hit_reading(
    scope: str, ident: object, read: Sequence[str], *, now: float | None = None
) -> tuple[dict[str, Any], float | None]:
    """``window_hit``, reading the cache keys ``read`` in the same round trip: their values (the absent left out;
    none when the cache cannot be read) and the seconds to wait, None when the request is allowed."""
    window = _Window.at(scope, ident, now)
    try:
        seen, count = _read_and_count(read, window.key, window.seconds + 1)
    except Exception:  # noqa: BLE001 - a cache that cannot count lets the request through
        return {}, None
    return seen, None if count is None or count <= window.limit else window.left


_UNREAD: Any = object()


def window_key(scope: str, ident: object, *, now: float | None = None) -> str:
    """The cache key of the window ``now`` falls in, for a caller that reads it together with other keys."""
    return _Window.at(scope, ident, now).key


def window_full(scope: str, ident: object, *, now: float | None = None, seen: Any = _UNREAD) -> float | None:
    """Like ``window_hit`` without counting: the seconds to wait when ``ident`` has used up its window.
    ``seen``: the counter's value (None when absent) a caller already read under ``window_key`` at the same
    ``now``, in one round trip with other keys."""
    window = _Window.at(scope, ident, now)
    if seen is _UNREAD:
        try:
            seen = cache.get(window.key)
        except Exception:  # noqa: BLE001
            return None
    return None if not isinstance(seen, int) or seen < window.limit else window.left


def client_address(request: Any) -> str:
    """The caller's address, as DRF reads it (``REST_FRAMEWORK["NUM_PROXIES"]`` for X-Forwarded-For)."""
    return str(BaseThrottle().get_ident(request))


class _WindowThrottle(BaseThrottle):
    scope = ""

    def ident(self, request: Any) -> object | None:
        raise NotImplementedError

    def allow_request(self, request: Any, view: Any) -> bool:
        ident = self.ident(request)
        self._wait = None if ident is None else window_hit(self.scope, ident)
        return self._wait is None

    def wait(self) -> float | None:
        return math.ceil(self._wait) if self._wait is not None else None


class AgentKeyThrottle(_WindowThrottle):
    """Requests made with an agent's keys, per agent (all its keys together). Usually counted already, in the key's
    own round trip to the cache (``AgentPrincipal.counted``)."""

    scope = "agent"

    def allow_request(self, request: Any, view: Any) -> bool:
        user = getattr(request, "user", None)
        if isinstance(user, AgentPrincipal) and user.counted is not None and user.counted[0] == user.agent.pk:
            self._wait = user.counted[1]
            return self._wait is None
        return super().allow_request(request, view)

    def ident(self, request: Any) -> object | None:
        user = getattr(request, "user", None)
        return user.agent.pk if isinstance(user, AgentPrincipal) else None


class PersonThrottle(_WindowThrottle):
    """Requests made by a person (a personal token or a signed-in session), per user."""

    scope = "person"

    def ident(self, request: Any) -> object | None:
        user = getattr(request, "user", None)
        if user is None or isinstance(user, AgentPrincipal) or not getattr(user, "is_authenticated", False):
            return None
        return user.pk
