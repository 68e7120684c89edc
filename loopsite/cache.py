"""The cache is an optimisation: with Redis unreachable, reads miss and writes are skipped, so every caller goes to
the database instead of failing.

``DegradingRedisCache`` is Django's Redis cache with short socket timeouts and a breaker: after one failure the
process leaves Redis alone for ``DOWN_PAUSE`` seconds (every read a miss, every write skipped), then tries again.
A delete that must land (a config change invalidating the cached live config) goes through ``cache_delete_strict``,
which raises ``CacheUnavailable`` so that the caller can record it in the outbox and have it retried.

Copies kept in process or in the cache (live configs, agent keys, a reviewer's last answer) are trusted only under a
*stamp*: a random value in the shared cache that every change deletes. ``stamp_get`` reads (or makes) one, and
``stamps_delete`` deletes them, through the outbox when the cache is down.
"""

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.core.cache import cache, caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.db import connection, transaction
from redis.exceptions import NoScriptError, RedisError

logger = logging.getLogger(__name__)

FAILURES = (RedisError, OSError)

# ``DegradingRedisCache.read_and_count``: KEYS[1] the counter, made (with ARGV[1] seconds to live) when absent and
# counted; KEYS[2..] read. Returns the count, then the values read (false for an absent key). One command, where
# a pipeline of MGET, SET NX EX and INCR took a fifth of the throttle's client time more (every request counts).
_READ_AND_COUNT = """
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
local count = redis.call('INCR', KEYS[1])
if #KEYS == 1 then return {count} end
local read = redis.call('MGET', unpack(KEYS, 2))
table.insert(read, 1, count)
return read
"""
_READ_AND_COUNT_SHA = hashlib.sha1(_READ_AND_COUNT.encode()).hexdigest()


class CacheUnavailable(Exception):
    """The cache could not be reached."""


class _Breaker:
    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.open_until = 0.0
        self._lock = threading.Lock()

    def allows(self) -> bool:
        return time.monotonic() >= self.open_until

    def trip(self, exc: BaseException) -> None:
        with self._lock:
            was_closed = self.open_until == 0.0
            self.open_until = time.monotonic() + self.pause
        if was_closed:
            logger.warning("cache.unavailable", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})

    def reset(self) -> None:
        if self.open_until:
            with self._lock:
                self.open_until = 0.0
            logger.info("cache.available")


class _ReusedClients(RedisCacheClient):
    """Django makes a new ``redis.Redis`` for every operation, and redis-py's constructor fills a table of ~170
    response callbacks each time (a fifth of a logged decision's CPU). One client per connection pool does the
    same work: the client is thread-safe, taking a connection from its pool per command."""

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        clients: dict[int, Any] = self.__dict__.setdefault("_reused", {})
        client = clients.get(id(pool))
        if client is None:
            client = clients[id(pool)] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class DegradingRedisCache(RedisCache):
    """``OPTIONS`` as for Django's ``RedisCache`` (socket timeouts go to redis-py), plus ``DOWN_PAUSE`` seconds."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS") or {})
        pause = float(options.pop("DOWN_PAUSE", 5.0))
        super().__init__(server, {**params, "OPTIONS": options})
        self._class = _ReusedClients
        self.breaker = _Breaker(pause)

    def _guard(self, fallback: Any, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.breaker.allows():
            return fallback
        try:
            result = operation(*args, **kwargs)
        except FAILURES as exc:
            self.breaker.trip(exc)
            return fallback
        self.breaker.reset()
        return result

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return bool(self._guard(False, super().add, key, value, timeout, version=version))

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        return self._guard(default, super().get, key, default, version=version)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> None:
        self._guard(None, super().set, key, value, timeout, version=version)

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        """None when Redis is down (the throttles then let the request through)."""
        return self._guard(None, super().incr, key, delta, version=version)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return bool(self._guard(False, super().touch, key, timeout, version=version))

    def delete(self, key: Any, version: Any = None) -> bool:
        return bool(self._guard(False, super().delete, key, version=version))

    def get_many(self, keys: Any, version: Any = None) -> dict[Any, Any]:
        return dict(self._guard({}, super().get_many, keys, version=version))

    def has_key(self, key: Any, version: Any = None) -> bool:
        return bool(self._guard(False, super().has_key, key, version=version))

    def set_many(self, data: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> list[Any]:
        return list(self._guard(list(data), super().set_many, data, timeout, version=version))

    def read_and_count(
        self, keys: Any, key: Any, timeout: int, version: Any = None
    ) -> tuple[dict[Any, Any], int | None]:
        """``get_many(keys)``, and one added to the counter ``key``, made (expiring after ``timeout`` seconds) when
        absent, in one command (``_READ_AND_COUNT``, a Lua script Redis runs as one step) where ``get_many``,
        ``add`` and ``incr`` take four round trips: (the values read, the count); ({}, None) when Redis is down."""
        full_keys = {self.make_and_validate_key(k, version=version): k for k in keys}
        count_key = self.make_and_validate_key(key, version=version)

        def read_and_count() -> tuple[dict[Any, Any], int]:
            client = self._cache.get_client(count_key, write=True)
            keys_and_args: tuple[str | int, ...] = (count_key, *full_keys, timeout)
            try:
                count, *read = client.evalsha(_READ_AND_COUNT_SHA, 1 + len(full_keys), *keys_and_args)
            except NoScriptError:  # a server that has not seen the script yet (new, restarted, SCRIPT FLUSH)
                count, *read = client.eval(_READ_AND_COUNT, 1 + len(full_keys), *keys_and_args)
            loads = self._cache._serializer.loads  # type: ignore[attr-defined]
            values = zip(full_keys.values(), read, strict=True)
            return {k: loads(v) for k, v in values if v is not None}, int(count)

        result: tuple[dict[Any, Any], int | None] = self._guard(({}, None), read_and_count)
        return result

    def delete_many(self, keys: Any, version: Any = None) -> None:
        self._guard(None, super().delete_many, keys, version=version)

    def clear(self) -> None:
        """Delete this cache's keys only. Django's own ``clear`` is FLUSHDB, which would also empty whatever else
        shares the Redis database: the Celery broker's queues, another deployment's cache."""
        self._guard(None, self._delete_own_keys)

    def _delete_own_keys(self) -> None:
        client = self._cache.get_client(write=True)
        pattern = self.make_key("*").replace(f":{self.version}:*", ":*")  # every version of every key
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)

    # --- Undegraded: for what must know whether Redis answered ------------------------------------------------

    def delete_strict(self, key: str) -> None:
        try:
            super().delete(key)
        except FAILURES as exc:
            self.breaker.trip(exc)
            raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self.breaker.reset()

    def probe(self, key: str, value: str) -> bool:
        """Write, read back and delete ``key``, raising on any failure (the health check)."""
        super().set(key, value, 10)
        seen = super().get(key)
        super().delete(key)
        return bool(seen == value)


def cache_delete_strict(key: str) -> None:
    """Delete ``key`` from the default cache; raise ``CacheUnavailable`` when the cache could not be reached."""
    backend = caches["default"]
    if isinstance(backend, DegradingRedisCache):
        backend.delete_strict(key)
    else:
        try:
            backend.delete(key)
        except OSError as exc:
            raise CacheUnavailable(str(exc)) from exc


def stamp_get(key: str, *, timeout: float | None, seen: Any = None) -> str | None:
    """The stamp under ``key`` in the shared cache, made when absent; None when the cache cannot be read (then
    nothing may be kept under it). ``seen``: the value a caller already read for ``key`` in the same round trip
    as its kept copy."""
    stamp = cache.get(key) if seen is None else seen
    if stamp is None:
        cache.add(key, uuid.uuid4().hex, timeout=timeout)
        stamp = cache.get(key)
    return stamp if isinstance(stamp, str) else None


def stamps_delete(*keys: str) -> None:
    """Delete each stamp (or kept copy), so that every process reads again; a delete the cache could not take goes
    to the outbox and is retried until it lands, so a cache that comes back does not go on vouching for the old
    copy."""
    from loopsite.outbox import outbox_send

    for key in keys:
        try:
            cache_delete_strict(key)
        except CacheUnavailable:
            outbox_send("cache.delete", key=key)


def stamps_delete_on_commit(*keys: str) -> None:
    """``stamps_delete`` for a write whose transaction may still be open: once it commits, as a read between the
    write and its commit would keep the rows from before under the stamp; inside a transaction at once too, for the
    reads of that same transaction, which see the write."""
    if connection.in_atomic_block:
        cache.delete_many(keys)
    transaction.on_commit(lambda: stamps_delete(*keys), robust=True)
