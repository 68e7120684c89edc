"""Settings, read from the environment.

With no environment at all the system runs embedded: SQLite (WAL) and a filesystem Celery broker under ``var/``.
``DATABASE_URL`` and ``REDIS_URL`` switch it to PostgreSQL and Redis. Bad values fail loudly at start-up.
"""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

VAR_DIR = Path(env.str("LOOPSITE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# The configured tier (DATABASE_URL set) is a deployment: it is secure by default and needs its own secret.
CONFIGURED = bool(env.str("DATABASE_URL", default=""))


def _embedded_secret_key(path: Path) -> str:
    """The embedded default's key: made once at random and kept under ``var/`` (readable by its owner only)."""
    if not path.exists():
        import secrets

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


if env.str("SECRET_KEY", default=""):
    SECRET_KEY = env.str("SECRET_KEY")
elif CONFIGURED:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: with DATABASE_URL set loopsite runs as a deployment and needs its own secret key "
        "(for example: python -c 'import secrets; print(secrets.token_urlsafe(50))')"
    )
else:
    try:
        SECRET_KEY = _embedded_secret_key(VAR_DIR / "secret_key")
    except FileExistsError:  # another process made it at the same moment
        SECRET_KEY = (VAR_DIR / "secret_key").read_text().strip()
DEBUG = env.bool("DEBUG", default=False)
# HTTPS: secure by default in the configured tier, each overridable by the environment variable of its name.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=CONFIGURED)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if CONFIGURED else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=CONFIGURED)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=CONFIGURED)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=CONFIGURED)
# Database sessions, read with one plain SELECT instead of the ORM's (loopsite/sessions.py).
SESSION_ENGINE = "loopsite.sessions"
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=CONFIGURED)
# Behind a proxy that terminates TLS: the header that says the original request was HTTPS ("" for none).
_proxy_header = env.str("SECURE_PROXY_SSL_HEADER", default="HTTP_X_FORWARDED_PROTO,https" if CONFIGURED else "")
SECURE_PROXY_SSL_HEADER = tuple(_proxy_header.split(",", 1)) if _proxy_header else None
# /healthz is probed over plain HTTP by load balancers and the test servers.
SECURE_REDIRECT_EXEMPT = [r"^healthz/?$"]
# Content-Security-Policy (django-csp), the same in both tiers: scripts, styles, fonts, images and requests come
# from this site's own files only, so the browser refuses an injected <script>, on*= handler, style or off-site
# fetch. Templates hold no inline script (a script's data is json_script, type="application/json", which is data,
# not code, or a data- attribute) and no style="" (a figure drawn from data is SVG geometry; Chart.js and htmx set
# styles through the CSSOM, which CSP allows). base.html tells htmx not to add its indicator <style> or to eval.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],  # data: for the pages' empty favicon and the icons in Swagger UI's CSS
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}
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
    "axes",
    "csp",
    "loopsite",
    "people",
    "thresholds",
    "auditlog",
    "rollouts",
    "tuner",
    "approvals",
    "simulation",
    "webhooks",
]

MIDDLEWARE = [
    "loopsite.key_requests.KeyRequestShortcut",  # first: an API request with a key skips BROWSER_ONLY_MIDDLEWARE
    "loopsite.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "loopsite.csp.CSPMiddleware",  # django-csp's, with the policy built once (loopsite/csp.py)
    "loopsite.input_checks.RefuseUnstorableText",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "loopsite.errors.PermissionDeniedMiddleware",  # a refusal: the 403 page and one log line, no traceback
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: it turns a lockout into its response
]
# What a request to /api/ with a bearer key does not go through (loopsite/key_requests.py): it is authenticated
# by its key alone, so the session, its user and CSRF never decide it; the rest serve pages and static files.
# CommonMiddleware stays: it gives every answer its Content-Length.
BROWSER_ONLY_MIDDLEWARE = [
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
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
    # The pool checks a connection before handing it out, so after a database restart no request gets a dead one;
    # Django's backend with that check made by the socket, not a round trip (loopsite/postgresql/base.py).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"]["ENGINE"] = "loopsite.postgresql"
    _pg_options = DATABASES["default"].setdefault("OPTIONS", {})
    _pg_options.setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=2))  # seconds; libpq's least is 2
    _statement_ms = env.int("DB_STATEMENT_TIMEOUT_MS", default=60_000)  # 0: no limit
    if _statement_ms:
        _pg_options.setdefault("options", f"-c statement_timeout={_statement_ms}")
    # Preparing on: ``loopsite.statements.fetch`` prepares the statements every request runs (the session's and
    # the signed-in user's reads) when asked; Django's own cursors never prepare. Behind a transaction-mode pooler
    # that cannot keep prepared statements (PgBouncer before 1.21), set DB_PREPARE=off.
    if env.bool("DB_PREPARE", default=True):
        _pg_options.setdefault("prepare_threshold", 5)
    _pg_options["pool"] = {
        "min_size": env.int("DB_POOL_MIN", default=1),
        "max_size": env.int("DB_POOL_MAX", default=20),
        # How long a request waits for a connection before it is answered 503 (the database is down or saturated).
        "timeout": env.float("DB_POOL_TIMEOUT", default=1.5),
        # A slot that cannot reconnect for this long is given up and a fresh attempt starts with the next request,
        # rather than waiting out a long backoff after the database is back.
        "reconnect_timeout": env.float("DB_POOL_RECONNECT_TIMEOUT", default=2.0),
    }
else:
    raise ImproperlyConfigured(f"DATABASE_URL: unsupported engine {_engine!r}; use sqlite:// or postgres://")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = _engine == "django.db.backends.postgresql"
# A streaming replica of that database (docs/running.md, "Beyond one machine"): the reads that may lag (the
# dashboard, the weekly metrics, the exports, a tuner cycle's window) go there inside loopsite.replica's scope,
# every other read and every write to the primary. Same pool and timeouts as the primary; a mirror of it in tests.
_replica_url = env.str("DATABASE_REPLICA_URL", default="")
if _replica_url:
    if not IS_POSTGRES:
        raise ImproperlyConfigured(
            "DATABASE_REPLICA_URL is set but DATABASE_URL is not PostgreSQL: a read replica needs the configured "
            "tier (DATABASE_URL=postgres://...); unset DATABASE_REPLICA_URL to run embedded"
        )
    try:
        _replica = environ.Env.db_url_config(_replica_url)
    except (KeyError, ValueError) as exc:
        raise ImproperlyConfigured(f"DATABASE_REPLICA_URL is not a database URL ({exc})") from None
    if _replica.get("ENGINE") != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            f"DATABASE_REPLICA_URL: engine {_replica.get('ENGINE') or 'missing'!r}; use "
            "postgres://user@host:port/name, a streaming replica of DATABASE_URL's database"
        )
    _primary = DATABASES["default"]
    DATABASES["replica"] = {
        **_replica,
        "ENGINE": _primary["ENGINE"],
        "CONN_MAX_AGE": _primary["CONN_MAX_AGE"],
        "CONN_HEALTH_CHECKS": _primary["CONN_HEALTH_CHECKS"],
        # The primary's options (connect and statement timeouts, a pool of its own size), then the URL's own.
        "OPTIONS": {**_primary["OPTIONS"], "pool": dict(_primary["OPTIONS"]["pool"]), **_replica.get("OPTIONS", {})},
        "TEST": {"MIRROR": "default"},
    }
    DATABASE_ROUTERS = ["loopsite.db_router.ReplicaRouter"]
# With the database unreachable the API answers 503 with this Retry-After (seconds).
DB_RETRY_AFTER = env.int("DB_RETRY_AFTER", default=5)

# --- The tuner's worker ----------------------------------------------------------------------------------
# One number sets the cycle task's hard time limit (tuner/tasks.py) and the Redis broker's visibility timeout below:
# a message a dead worker took is handed out again once it has been out this long, and no healthy cycle outlives it.
TUNER_TIME_LIMIT = env.int("TUNER_TIME_LIMIT", default=20 * 60)  # seconds
TUNER_SOFT_TIME_LIMIT = TUNER_TIME_LIMIT - min(300, TUNER_TIME_LIMIT // 4)  # the cycle is told to stop, then killed
# The worker computing a cycle writes TunerRun.heartbeat_at this often; three missed beats make the run stale, and
# the next delivery, `run_tuner` or API request takes it over.
TUNER_HEARTBEAT_SECONDS = env.float("TUNER_HEARTBEAT_SECONDS", default=60.0)
if TUNER_HEARTBEAT_SECONDS <= 0 or TUNER_TIME_LIMIT <= 3 * TUNER_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        f"TUNER_HEARTBEAT_SECONDS ({TUNER_HEARTBEAT_SECONDS:g}) must be above 0 and three beats must fit in "
        f"TUNER_TIME_LIMIT ({TUNER_TIME_LIMIT} s)"
    )

# --- Redis: cache and broker ----------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://")):
        raise ImproperlyConfigured(f"REDIS_URL must start with redis:// or rediss://, got {REDIS_URL!r}")
    # The cache is an optimisation: unreachable, it misses (see loopsite/cache.py) and callers use the database.
    CACHE_TIMEOUT = env.float("CACHE_TIMEOUT", default=0.5)  # seconds to connect to / hear from Redis
    CACHES = {
        "default": {
            "BACKEND": "loopsite.cache.DegradingRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_connect_timeout": CACHE_TIMEOUT,
                "socket_timeout": CACHE_TIMEOUT,
                "DOWN_PAUSE": env.float("CACHE_DOWN_PAUSE", default=5.0),  # seconds without trying after a failure
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    # Work for the broker goes through the outbox (loopsite/outbox.py): a send that fails is retried from there,
    # so a send need not wait long for a broker that is down.
    CELERY_BROKER_CONNECTION_TIMEOUT = env.float("BROKER_TIMEOUT", default=2.0)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
        "socket_timeout": 5.0,  # above the worker's 1 s blocking poll of the queue
        # A late-acknowledged message whose worker died goes back to the queue after this long (kombu's default is
        # an hour). It equals the tuner's time limit, the longest of the tasks' limits (keep it so, and keep retry
        # countdowns below it), so a live task is never handed out twice. Workers look for such messages every
        # few seconds.
        "visibility_timeout": TUNER_TIME_LIMIT,
        "unacked_restore_interval": max(1, min(10, TUNER_TIME_LIMIT // 20)),
        "unacked_restore_throttle": 1,
    }
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

# Webhooks (docs/webhooks.md): each POST's timeout, and attempts before a delivery is marked failed.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
if WEBHOOK_TIMEOUT_SECONDS <= 0 or WEBHOOK_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("WEBHOOK_TIMEOUT_SECONDS must be above 0 and WEBHOOK_MAX_ATTEMPTS at least 1")

# --- Auth, i18n, static ----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sign-in lockout (django-axes): after LOGIN_FAILURE_LIMIT failures for one username, or from one address, that
# username or address is refused for LOGIN_COOLOFF_HOURS. Unlock in the admin (Axes > Access attempts: delete) or
# with `manage.py axes_reset_username NAME` / `axes_reset_ip ADDRESS` / `axes_reset`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "people.backends.UserBackend",  # Django's ModelBackend, the user read with their groups in one statement
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = env.float("LOGIN_COOLOFF_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
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
    "DEFAULT_PARSER_CLASSES": ["loopsite.input_checks.CheckedJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "loopsite.negotiation.UsualRequestNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "loopsite.exception_handlers.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": ["people.throttling.AgentKeyThrottle", "people.throttling.PersonThrottle"],
    # Addresses of trusted proxies in front of the app, for X-Forwarded-For (the failed-key throttle's address).
    "NUM_PROXIES": env.int("NUM_PROXIES", default=None) if env.str("NUM_PROXIES", default="") else None,
}
# API rates (people/throttling.py): a count per window, e.g. 6000/min or 20/10min. Throttled: 429 + Retry-After.
LOOPSITE_THROTTLE_RATES = {
    # Per agent, all its keys together (requests, not entries): far above the ingest benchmark's busiest phase,
    # 3,200 single-entry requests in a few seconds.
    "agent": env.str("THROTTLE_AGENT_RATE", default="200000/min"),
    # Per person, through a personal token or a signed-in session.
    "person": env.str("THROTTLE_PERSON_RATE", default="6000/min"),
    # Failed bearer keys per address: past this, every bearer request from the address waits for the window's end.
    "failed_key": env.str("THROTTLE_FAILED_KEY_RATE", default="20/10min"),
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
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "loopsite.schema_hooks.throttled_responses",
    ],
    # Proposals and tuner runs both have a "status": the proposal's enum gets a name of its own.
    "ENUM_NAME_OVERRIDES": {
        "ProposalStatusEnum": [
            "pending",
            "accepted",
            "modified",
            "rejected",
            "superseded",
            "expired",
            "rolled_back",
            "canary",
        ],
    },
}
# Request bodies are read whole; the API answers 413 itself above these sizes.
DATA_UPLOAD_MAX_MEMORY_SIZE = 11 * 1024 * 1024
API_MAX_BODY_BYTES = 1024 * 1024
API_MAX_BATCH_BODY_BYTES = 10 * 1024 * 1024
# Decisions and responses dated before this year are refused as input errors (contract, "Bad input").
API_EARLIEST_YEAR = env.int("API_EARLIEST_YEAR", default=2000)

# --- The decision log's weeks (auditlog.partitions, auditlog.retention) ------------------------------------
# PostgreSQL: weekly partitions are made this many weeks ahead of the current one (a daily beat task).
DECISION_PARTITION_WEEKS_AHEAD = env.int("DECISION_PARTITION_WEEKS_AHEAD", default=4)
# Weeks of decisions kept; older weeks are archived to DECISION_ARCHIVE_DIR (a .csv.gz file per week) and
# removed, except decisions cited as evidence, which move to the evidence table first. 0: keep everything.
DECISION_RETENTION_WEEKS = env.int("DECISION_RETENTION_WEEKS", default=26)
DECISION_ARCHIVE_DIR = Path(env.str("DECISION_ARCHIVE_DIR", default=str(VAR_DIR / "archive")))
if DECISION_PARTITION_WEEKS_AHEAD < 1 or DECISION_RETENTION_WEEKS < 0:
    raise ImproperlyConfigured("DECISION_PARTITION_WEEKS_AHEAD must be at least 1 and DECISION_RETENTION_WEEKS >= 0")

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
        "webhooks": {"level": LOG_LEVEL, "propagate": True},
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
    "REJECTIONS_BEFORE_MEMORY": 3,
    # The miss side (contract rule 10): what a move may give up, per cycle and against the agent's reference.
    "MISS_TOLERANCE": 0.10,
    # The miss budget's absolute slack, a share of the real cases: misses may exceed the reference by the
    # tolerance or by this, whichever is larger, so a reference of zero still leaves room for noise.
    "MISS_BUDGET_SLACK": 0.003,
    # ...and never less than this many real cases of the window: below one case a replay cannot tell loss from noise.
    "MISS_BUDGET_SLACK_CASES": 1,
    # The highest rate of reviewers' slips the tuner subtracts as noise from a population; above it is signal.
    "NOISE_FLOOR_MAX": 0.05,
    # A replayed rise in misses is a material risk (flagged) when it exceeds this share of today's misses.
    "RISK_MATERIAL_SHARE": 0.10,
    # Threshold creep: no verdict on fewer escalations than this, before and since the change together.
    "CREEP_MIN_ESCALATIONS": 20,
    # Threshold creep: the one-sided p-value under which the fall in escalations since a rise is not chance.
    "CREEP_ALPHA": 0.01,
    # The watchdog (contract rule 7).
    "WATCHDOG_MIN_RESPONSES": env.int("WATCHDOG_MIN_RESPONSES", default=50),
    "WATCHDOG_TOLERANCE": 0.10,
    "WATCHDOG_BASELINE_WEEKS": 2,
    "WATCHDOG_ALPHA": 0.05,
    "WATCHDOG_WATCH_DAYS": env.int("WATCHDOG_WATCH_DAYS", default=14),
    "WATCHDOG_BASELINE_MIN_RESPONSES": env.int("WATCHDOG_BASELINE_MIN_RESPONSES", default=50),
    # Shadow values and canaries (rollouts): the share of weakest-action decisions the pending proposal's shadow
    # would have fired on that are queued for review (beyond the uniform sample), and a canary's defaults.
    "SHADOW_REVIEW_RATE": env.float("SHADOW_REVIEW_RATE", default=0.5),
    "CANARY_SHARE": 0.20,
    "CANARY_DAYS": 7,
    "PROPOSAL_EXPIRY_DAYS": 14,
    "CLAIM_MINUTES": 10,
    # How long a reviewer may amend their own response; approvers may amend any at any time.
    "AMEND_WINDOW_HOURS": env.int("AMEND_WINDOW_HOURS", default=24),
    "LOW_RESPONSE_WARNING": 0.60,
}
TUNER_MODEL = env.str("TUNER_MODEL", default="claude-sonnet-5-5")
TUNER_LLM_TIMEOUT = env.float("TUNER_LLM_TIMEOUT", default=60.0)
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
