"""Bad settings stop the start-up with a message that says what to fix, rather than failing later."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

# What a deployment sets; the test run's own values of these are not passed on.
LOOPSITE_VARIABLES = {
    "DATABASE_URL",
    "DB_PREPARE",
    "DATABASE_REPLICA_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_PROXY_SSL_HEADER",
}
DEPLOYED = {
    "DATABASE_URL": "postgres://loopsite@db.internal:5432/loopsite",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "SECRET_KEY": "k3Jd9-vQ_2mZ8xLr0pW7sNc4bYh6tGf1aEu5iOyT0RqXw9zVnB",
    "ALLOWED_HOSTS": "loopsite.example.com",
}


def django_setup(tmp_path: Path, then: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """``django.setup()`` in a fresh interpreter with only ``env`` set of the loopsite variables."""
    base = {k: v for k, v in os.environ.items() if k not in LOOPSITE_VARIABLES}
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
    result = django_setup(tmp_path, DATABASE_URL=url, SECRET_KEY=DEPLOYED["SECRET_KEY"])

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


def test_settings__configured_without_a_secret_key__refuses_to_start_naming_it(tmp_path: Path) -> None:
    env = {k: v for k, v in DEPLOYED.items() if k != "SECRET_KEY"}
    result = django_setup(tmp_path, **env)

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr


def test_settings__embedded__a_random_key_made_once_and_kept_under_var(tmp_path: Path) -> None:
    show = "from django.conf import settings as s; print(s.SECRET_KEY)"
    first, again = django_setup(tmp_path, show), django_setup(tmp_path, show)
    other = django_setup(tmp_path / "elsewhere", show)

    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    assert len(key) >= 50 and key == again.stdout.strip() != other.stdout.strip()
    assert "embedded-insecure-key" not in key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_settings__configured__https_settings_secure_by_default_and_each_from_its_variable(tmp_path: Path) -> None:
    show = (
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER)"
    )
    deployed = django_setup(tmp_path, show, **DEPLOYED)
    relaxed = django_setup(tmp_path, show, **DEPLOYED, SECURE_SSL_REDIRECT="false", SESSION_COOKIE_SECURE="0")
    embedded = django_setup(tmp_path, show)

    assert deployed.stdout.strip() == "True True True True ('HTTP_X_FORWARDED_PROTO', 'https')", deployed.stderr
    assert relaxed.stdout.strip().startswith("False True False True")
    assert embedded.stdout.strip() == "False False False False None"


def test_settings__check_deploy_with_the_four_variables__no_warning(tmp_path: Path) -> None:
    # As a deployment would run it: without the test run's own relaxations (conftest allows async-unsafe calls).
    unset = LOOPSITE_VARIABLES | {"DJANGO_ALLOW_ASYNC_UNSAFE"}
    base = {k: v for k, v in os.environ.items() if k not in unset}
    base.update(DJANGO_SETTINGS_MODULE="loopsite.settings", LOOPSITE_VAR_DIR=str(tmp_path), **DEPLOYED)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


REPLICA_URL = "postgres://loopsite@db-replica.internal:5432/loopsite?sslmode=require"


def test_settings__replica_url_with_the_embedded_sqlite__refuses_to_start_naming_it(tmp_path: Path) -> None:
    result = django_setup(tmp_path, DATABASE_REPLICA_URL=REPLICA_URL)

    assert result.returncode != 0
    assert (
        "ImproperlyConfigured: DATABASE_REPLICA_URL is set but DATABASE_URL is not PostgreSQL: a read replica needs "
        "the configured tier" in result.stderr
    )


@pytest.mark.parametrize(
    ("url", "engine"),
    [
        ("mysql://root@127.0.0.1/loopsite", "'django.db.backends.mysql'"),
        ("sqlite:///replica.sqlite3", "'django.db.backends.sqlite3'"),
        ("nonsense", "'missing'"),
    ],
)
def test_settings__replica_url_not_postgres__refuses_to_start_naming_it(tmp_path: Path, url: str, engine: str) -> None:
    result = django_setup(tmp_path, **DEPLOYED, DATABASE_REPLICA_URL=url)

    assert result.returncode != 0
    assert f"ImproperlyConfigured: DATABASE_REPLICA_URL: engine {engine}; use postgres://" in result.stderr


def test_settings__replica_url_that_does_not_parse__refuses_to_start_naming_it(tmp_path: Path) -> None:
    result = django_setup(tmp_path, **DEPLOYED, DATABASE_REPLICA_URL="postgres://loopsite@db-replica:port/loopsite")

    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_REPLICA_URL is not a database URL (Port could not be cast" in result.stderr


SHOW_REPLICA = (
    "import json; from django.conf import settings as s; r = s.DATABASES.get('replica') or {}; "
    "print(json.dumps({'host': r.get('HOST'), 'options': r.get('OPTIONS'), 'test': r.get('TEST'), "
    "'primaryPool': s.DATABASES['default']['OPTIONS']['pool'], 'routers': s.DATABASE_ROUTERS}))"
)


def test_settings__replica_url__a_replica_alias_with_the_primary_s_pool_and_timeouts__mirrored_in_tests(
    tmp_path: Path,
) -> None:
    result = django_setup(tmp_path, SHOW_REPLICA, **DEPLOYED, DATABASE_REPLICA_URL=REPLICA_URL, DB_POOL_MAX="7")

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["host"] == "db-replica.internal"
    assert shown["options"]["pool"] == shown["primaryPool"] and shown["options"]["pool"]["max_size"] == 7
    assert shown["options"]["connect_timeout"] == 2 and "statement_timeout=60000" in shown["options"]["options"]
    assert shown["options"]["sslmode"] == "require"
    assert shown["test"]["MIRROR"] == "default"
    assert shown["routers"] == ["loopsite.db_router.ReplicaRouter"]


def test_settings__no_replica_url__no_replica_alias_and_no_router(tmp_path: Path) -> None:
    result = django_setup(tmp_path, SHOW_REPLICA, **DEPLOYED)

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["host"], shown["test"], shown["routers"]) == (None, None, [])


@pytest.mark.parametrize(("prepare", "threshold"), [(None, 5), ("on", 5), ("off", None), ("false", None)])
def test_settings__configured__statements_prepared_unless_db_prepare_off(
    tmp_path: Path, prepare: str | None, threshold: int | None
) -> None:
    show = "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'].get('prepare_threshold'))"
    env = {**DEPLOYED, **({"DB_PREPARE": prepare} if prepare is not None else {})}
    result = django_setup(tmp_path, show, **env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(threshold)
