"""Settings, read from the environment.

With no environment at all the system runs embedded: SQLite (WAL) and a filesystem Celery broker under ``var/``.
``DATABASE_URL`` and ``REDIS_URL`` switch it to PostgreSQL and Redis. Bad values fail loudly at start-up.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

VAR_DIR = Path(env.str("LOOPSITE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env.str("SECRET_KEY", default="embedded-insecure-key-change-me-in-production-0123456789")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_htmx",
    "loopsite",
    "people",
    "thresholds",
    "auditlog",
    "tuner",
    "approvals",
    "simulation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "loopsite.urls"
WSGI_APPLICATION = "loopsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "loopsite.context_processors.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------
try:
    DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'loopsite.sqlite3'}")}
except (KeyError, ValueError) as exc:  # django-environ says KeyError('ENGINE') for a URL with no scheme
    raise ImproperlyConfigured(
        f"DATABASE_URL is not a database URL ({exc}); use sqlite:///path or postgres://user@host:port/name"
    ) from None
if "ENGINE" not in DATABASES["default"]:
    raise ImproperlyConfigured("DATABASE_URL has no scheme; use sqlite:///path or postgres://user@host:port/name")
_engine = DATABASES["default"]["ENGINE"]
if _engine == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web process read while the worker writes; IMMEDIATE avoids lock upgrades mid-transaction.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }
elif _engine == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django requires 0 with it
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN", default=1),
        "max_size": env.int("DB_POOL_MAX", default=20),
        "timeout": 10,
    }
else:
    raise ImproperlyConfigured(f"DATABASE_URL: unsupported engine {_engine!r}; use sqlite:// or postgres://")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = _engine == "django.db.backends.postgresql"

# --- Redis: cache and broker ----------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://")):
        raise ImproperlyConfigured(f"REDIS_URL must start with redis:// or rediss://, got {REDIS_URL!r}")
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = REDIS_URL
else:
    # A file cache is shared by the web, worker and beat processes of `serve`, so an invalidation is seen by all.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CACHES["default"]["KEY_PREFIX"] = env.str("CACHE_KEY_PREFIX", default="loopsite")

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task leaves the task for the next one
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Auth, i18n, static ----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request when it is missing
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- Email ---------------------------------------------------------------------------------------------
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="loopsite <loopsite@localhost>")

# --- API -----------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "people.authentication.BearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "loopsite.exception_handlers.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "loopsite API",
    "DESCRIPTION": "Decisions, human responses, live thresholds, tuner runs and proposals.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}
# Request bodies are read whole; the API answers 413 itself above these sizes.
DATA_UPLOAD_MAX_MEMORY_SIZE = 11 * 1024 * 1024
API_MAX_BODY_BYTES = 1024 * 1024
API_MAX_BATCH_BODY_BYTES = 10 * 1024 * 1024

# --- Logging: structured JSON events named entity.action --------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"message": "event", "asctime": "time", "levelname": "level"},
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "loopsite": {"level": LOG_LEVEL, "propagate": True},
        "thresholds": {"level": LOG_LEVEL, "propagate": True},
        "auditlog": {"level": LOG_LEVEL, "propagate": True},
        "tuner": {"level": LOG_LEVEL, "propagate": True},
        "approvals": {"level": LOG_LEVEL, "propagate": True},
        "people": {"level": LOG_LEVEL, "propagate": True},
    },
}

# --- Shared data sets -------------------------------------------------------------------------------------
LOOPSITE_DATA_DIR = Path(env.str("LOOPSITE_DATA_DIR", default=str(BASE_DIR.parent / "shared" / "data")))

# --- The rules that bind every change (contract rules 1-9). Read-only: nothing in the tuner writes them. ------
LOOPSITE_RULES = {
    "MAX_PROPOSALS_PER_CYCLE": 3,
    "MIN_EVIDENCE_ENTRIES": 5,
    "MAX_MOVE_FRACTION": 0.20,
    "HEALTHY_DISMISSAL_RATE": 0.15,
    "MIN_RESPONSE_RATE": 0.60,
    "BASELINE_WEEKS": 2,
    "DEFAULT_WINDOW_WEEKS": 4,
    "DISMISS_CLUSTER_MIN_SIZE": 5,
    "DISMISS_CLUSTER_SIMILARITY": 0.8,
    "ESCALATE_CLUSTER_MIN_SIZE": 3,
    "ESCALATE_CLUSTER_SIMILARITY": 0.7,
    "MISS_TOLERANCE": 0.05,
    "REJECTIONS_BEFORE_MEMORY": 3,
    "WATCHDOG_MIN_RESPONSES": env.int("WATCHDOG_MIN_RESPONSES", default=50),
    "WATCHDOG_TOLERANCE": 0.10,
    "WATCHDOG_BASELINE_WEEKS": 2,
    "WATCHDOG_ALPHA": 0.05,
    "PROPOSAL_EXPIRY_DAYS": 14,
    "CLAIM_MINUTES": 10,
    "LOW_RESPONSE_WARNING": 0.60,
}
TUNER_MODEL = env.str("TUNER_MODEL", default="claude-sonnet-5-5")
TUNER_LLM_TIMEOUT = env.float("TUNER_LLM_TIMEOUT", default=60.0)
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
