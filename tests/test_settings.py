"""Bad settings stop the start-up with a message that says what to fix, rather than failing later."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings


def django_setup(tmp_path: Path, then: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """``django.setup()`` in a fresh interpreter with only ``env`` set of the loopsite variables."""
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    base.update(DJANGO_SETTINGS_MODULE="loopsite.settings", LOOPSITE_VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {then}"],
        cwd=settings.BASE_DIR,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@127.0.0.1/loopsite", "DATABASE_URL: unsupported engine 'django.db.backends.mysql'"),
        ("foo://somewhere/db", "DATABASE_URL: unsupported engine 'foo'; use sqlite:// or postgres://"),
        ("redis://127.0.0.1:6379/0", "DATABASE_URL: unsupported engine 'redis'"),
        ("nonsense", "DATABASE_URL has no scheme; use sqlite:///path or postgres://user@host:port/name"),
    ],
)
def test_settings__database_url_with_unsupported_scheme__improperly_configured(
    tmp_path: Path, url: str, message: str
) -> None:
    result = django_setup(tmp_path, DATABASE_URL=url)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/0", "127.0.0.1:6379", "memcached://127.0.0.1"])
def test_settings__redis_url_not_redis__improperly_configured(tmp_path: Path, url: str) -> None:
    result = django_setup(tmp_path, REDIS_URL=url)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"REDIS_URL must start with redis:// or rediss://, got {url!r}" in result.stderr


def test_settings__no_environment__embedded_sqlite_and_filesystem_broker_under_var_dir(tmp_path: Path) -> None:
    result = django_setup(
        tmp_path,
        "from django.conf import settings as s; print(s.DATABASES['default']['NAME']); print(s.CELERY_BROKER_URL)",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "loopsite.sqlite3"), "filesystem://"]
    assert (tmp_path / "broker" / "queue").is_dir()
