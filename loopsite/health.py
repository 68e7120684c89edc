"""``GET /healthz``: is the database, the cache and the Celery broker usable? 200 when all are, else 503."""

import functools
import os
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

OK = "ok"


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
    try:
        cache.set(key, value, timeout=10)
        seen = cache.get(key)
        cache.delete(key)
    except Exception as exc:  # noqa: BLE001
        return _failure(exc)
    return OK if seen == value else "error: the cache did not return what was written"


@functools.cache
def _redis_client(url: str) -> Any:
    """One client (and connection pool) per process: making a connection is costly in redis-py, so the health
    check reuses one rather than connecting on every probe."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


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


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    report = {"database": database_check(), "cache": cache_check(), "broker": broker_check()}
    healthy = all(v == OK for v in report.values())
    return JsonResponse(report, status=200 if healthy else 503)
