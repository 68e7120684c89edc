"""``GET /healthz``: is the database, the cache and the Celery broker usable? 200 when all are, else 503.

Anonymous callers (load balancers, uptime checks) learn only ``ok`` or ``degraded`` per component: the error text
names hosts and ports. A signed-in staff member gets the text."""

import functools
import os
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from loopsite.cache import DegradingRedisCache

OK = "ok"
DEGRADED = "degraded"


def _failure(exc: Exception) -> str:
    return f"error: {type(exc).__name__}: {exc}"[:300]


def database_check() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return _failure(exc)
    return OK


def cache_check() -> str:
    key, value = f"healthz:{uuid.uuid4().hex}", uuid.uuid4().hex
    backend = caches["default"]
    try:
        if isinstance(backend, DegradingRedisCache):
            same = backend.probe(key, value)  # past the breaker: the real state of Redis
        else:
            backend.set(key, value, timeout=10)
            same = backend.get(key) == value
            backend.delete(key)
    except Exception as exc:  # noqa: BLE001
        return _failure(exc)
    return OK if same else "error: the cache did not return what was written"


@functools.cache
def _redis_client(url: str) -> Any:
    """One client (and connection pool) per process: making a connection is costly in redis-py, so the health
    check reuses one rather than connecting on every probe."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def broker_check() -> str:
    """Redis answers PING; or, with the filesystem broker, its folders exist and can be written."""
    if settings.REDIS_URL:
        try:
            _redis_client(settings.REDIS_URL).ping()
        except Exception as exc:  # noqa: BLE001
            return _failure(exc)
        return OK
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    folders = {options.get(k) for k in ("data_folder_in", "data_folder_out", "processed_folder")} - {None}
    if not folders:
        return "error: no broker configured"
    for folder in sorted(str(f) for f in folders):
        path = Path(folder)
        if not path.is_dir():
            return f"error: broker folder {path.name!r} is missing"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"error: broker folder {path.name!r} is not writable"
    return OK


# The checks that may wait on the network run side by side, each given this long; the database check runs in the
# request's thread (its connection is that thread's) and is bounded by the pool's timeout. So /healthz answers
# within about two seconds whatever is down.
CHECK_SECONDS = 1.5
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="healthz")


def _bounded(future: Future[str], started: float) -> str:
    try:
        return future.result(timeout=max(0.0, CHECK_SECONDS - (time.monotonic() - started)))
    except FutureTimeout:
        return f"error: no answer within {CHECK_SECONDS:g} s"


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    started = time.monotonic()
    cache_future, broker_future = _checks.submit(cache_check), _checks.submit(broker_check)
    report = {
        "database": database_check(),
        "cache": _bounded(cache_future, started),
        "broker": _bounded(broker_future, started),
    }
    healthy = all(v == OK for v in report.values())
    if not getattr(request.user, "is_staff", False):
        report = {name: OK if value == OK else DEGRADED for name, value in report.items()}
    return JsonResponse(report, status=200 if healthy else 503)
