"""Herald settings, driven by the environment.

With no environment set Herald runs on the embedded default: SQLite in var/ and
kombu's filesystem transport as the Celery broker, so `make run` needs no server.
DATABASE_URL and REDIS_URL (or CELERY_BROKER_URL) switch to PostgreSQL and Redis,
which is what CI and production use. docs/decisions.md says why.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HERALD_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


DEBUG = env_bool("DEBUG", False)
INSECURE_SECRET_KEY = "herald-insecure-local-default-key-change-me"  # noqa: S105
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and env_bool("HERALD_REQUIRE_SECRET_KEY", False):
        raise RuntimeError("SECRET_KEY must be set in production")
    # Local/demo default only; production sets SECRET_KEY (see README).
    SECRET_KEY = INSECURE_SECRET_KEY
# Provider credentials are encrypted at rest with these Fernet keys (comma-separated:
# the first encrypts, all decrypt, for rotation). A local install (SECRET_KEY unset:
# `make run`, tests) falls back to a key generated in the var dir; a deployment must
# set HERALD_SECRETS_KEY (system check core.E001). core/secrets.py, docs/deploy.md.
HERALD_SECRETS_KEYS = [
    key.strip() for key in os.environ.get("HERALD_SECRETS_KEY", "").split(",") if key.strip()
]
HERALD_SECRETS_LOCAL_KEY_FILE: Path | None = (
    VAR_DIR / "secrets.key" if SECRET_KEY == INSECURE_SECRET_KEY else None
)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "*").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "core.admin_site.HeraldAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc files, served by us (no CDN)
    "django_celery_beat",
    "core",
    "segments",
    "delivery",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (HERALD_CSP below; core/csp.py), and
    # X-Frame-Options (moved up from the end: static files get it too).
    "core.csp.ContentSecurityPolicyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Browsers may call the app routes (/v1/) from any site: core/cors.py says why.
    "core.cors.ClientCorsMiddleware",
    # Static files (the console's CSS and JS) with DEBUG off, from this process:
    # runserver in `make run` and any WSGI server in production (docs/decisions.md).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Counts requests by route pattern and status (after WhiteNoise: static files
    # are not counted). core/metrics.py.
    "core.metrics.RequestMetricsMiddleware",
    "core.throttling.RateLimitHeadersMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Keeps the request for the audit trail's actor (core/audit.py).
    "core.audit.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # The console's idle timeout (after sessions and messages; core/session_timeout.py).
    "core.session_timeout.SessionIdleTimeoutMiddleware",
]

# --- Browser security: CSP, framing, TLS, sessions ----------------------------------
# (docs/deploy.md, "TLS, cookies and the console session")
# Every response's Content-Security-Policy (core/csp.py; docs/decisions.md, "Console
# hardening"): no inline script anywhere, no inline style in the console; images from
# any https host because the composer and the campaign page preview a campaign's
# image_url wherever it is hosted. The API docs pages replace style-src, img-src and
# worker-src (core/views.py, DOCS_CSP).
HERALD_CSP: dict[str, list[str]] = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:", "https:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# HERALD_HTTPS=1: the console is reached over https (directly or through a TLS proxy).
# Cookies are then sent over TLS only and browsers are told to stay on https (HSTS).
# Off by default so `make run` (plain http on 127.0.0.1) keeps working.
HERALD_HTTPS = env_bool("HERALD_HTTPS", False)
SESSION_COOKIE_SECURE = HERALD_HTTPS
CSRF_COOKIE_SECURE = HERALD_HTTPS
SECURE_HSTS_SECONDS = env_int("HERALD_HSTS_SECONDS", 31_536_000) if HERALD_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HERALD_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("HERALD_HSTS_PRELOAD", False)
# Redirect http to https here (usually the proxy does it); probes stay on http.
SECURE_SSL_REDIRECT = HERALD_HTTPS and env_bool("HERALD_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Behind a TLS-terminating proxy: the header it sets to "https" on requests that came
# in over TLS (e.g. X-Forwarded-Proto). Only set it when the proxy always sets or
# strips that header: a client could otherwise claim https itself.
HERALD_PROXY_SSL_HEADER = os.environ.get("HERALD_PROXY_SSL_HEADER", "").strip()
if HERALD_PROXY_SSL_HEADER:
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + HERALD_PROXY_SSL_HEADER.upper().replace("-", "_"),
        "https",
    )
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# console.js reads the CSRF token from this cookie when a page has no form; Django's
# docs: an HttpOnly CSRF cookie adds no protection.
CSRF_COOKIE_HTTPONLY = False
# Idle timeout: a console session ends this long after its last request (refreshed at
# most once a minute, never by background polls), and when the browser closes.
# Database sessions that know their stored expiry: core/session_timeout.py; why not
# SESSION_SAVE_EVERY_REQUEST or cached/cookie sessions: docs/decisions.md.
SESSION_ENGINE = "core.session_timeout"
SESSION_COOKIE_AGE = env_int("HERALD_SESSION_IDLE_MINUTES", 8 * 60) * 60
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_SAVE_EVERY_REQUEST = False

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    # Persistent connections: one per web/pool process, reused for this many seconds
    # (docs/deploy.md counts them against PostgreSQL's max_connections).
    conn_max_age = env_int("HERALD_DB_CONN_MAX_AGE", 60)
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=conn_max_age)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("HERALD_SQLITE_PATH", str(VAR_DIR / "herald.sqlite3")),
            # Web, worker and beat share one file: wait for locks instead of failing,
            # and take the write lock at BEGIN so upgrades never deadlock.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": str(VAR_DIR / "test-herald.sqlite3")},
        }
    }
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ModelBackend logs users in; ProjectRoleBackend answers `user.has_perm(perm, project)`
# from the user's role in that project (core/access.py).
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "core.access.ProjectRoleBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# collectstatic's output (var/ by default, like the embedded database); it exists from
# the start so WhiteNoise, which also reads the apps' folders, has nothing to warn about.
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # collectstatic (run_stack runs it) also writes gzip/brotli copies WhiteNoise serves.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve from the apps' static folders too, so a checkout that has not run
# collectstatic (tests, a fresh clone) still has a styled console.
WHITENOISE_USE_FINDERS = True

# --- Redis / Celery ---------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_BROKER_URL = (
    os.environ.get("CELERY_BROKER_URL", "") or REDIS_URL or "filesystem://localhost/"
)
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    # Redis redelivers unacked messages after this; tasks are idempotent and ETAs
    # are kept shorter than this window (docs/decisions.md).
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("in", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "in"),
        "data_folder_out": str(BROKER_DIR / "in"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(BROKER_DIR / "control"),
        "polling_interval": 0.1,
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 2,
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
DJANGO_CELERY_BEAT_TZ_AWARE = True

# --- Cache (API throttling) -------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "herald",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- REST framework ---------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.auth.ApiKeyAuthentication",
        "core.auth.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.auth.IsAuthenticatedForProject"],
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.ApiRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.ObjectJSONParser"],
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.schema.HeraldAutoSchema",
    "UNAUTHENTICATED_USER": None,
}
# Per API key (or staff user): at most this many requests a second (burst) and a
# minute (sustained); over either, 429 RATE_LIMITED with Retry-After. 0 turns a tier
# off. core/throttling.py; docs/api.md, "Rate limits" (the Ocamba reference's 10 and
# 150 are the documented example).
HERALD_API_BURST_PER_SECOND = env_int("HERALD_API_BURST_PER_SECOND", 100)
HERALD_API_RATE_PER_MINUTE = env_int("HERALD_API_RATE_PER_MINUTE", 1200)
# Per client IP: after this many failed credential checks in a minute (API keys on
# the REST API and MCP, console logins), that IP's further attempts answer 429
# RATE_LIMITED until the minute ends, before any key is checked. 0 turns it off.
# core/throttling.py; docs/api.md, "Rate limits".
HERALD_AUTH_FAILURES_PER_MINUTE = env_int("HERALD_AUTH_FAILURES_PER_MINUTE", 20)
# How many reverse proxies (nginx, a load balancer) stand in front of the web nodes
# and append the address they received from to X-Forwarded-For. 0: the client IP is
# the TCP peer (REMOTE_ADDR). core/client_ip.py; docs/deploy.md.
HERALD_TRUSTED_PROXIES = env_int("HERALD_TRUSTED_PROXIES", 0)

SPECTACULAR_SETTINGS = {
    "TITLE": "Herald API",
    "DESCRIPTION": "Self-hosted push campaigns over APNs, FCM and web push.",
    # 0.2: operationIds and enum names changed; 0.3: types (uuid ids, bounds, typed
    # JSON fields, image_url may be ""). docs/api.md, "Schema".
    "VERSION": "0.3.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs (Swagger UI) and /api/redoc from drf-spectacular-sidecar's copies.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Keep the key entered in "Authorize" across reloads of the docs page.
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "deepLinking": True},
    # One enum component per choice set, named after the model choices, wherever a
    # provider, platform or delivery status field appears (tokens, deliveries,
    # registration input, test push results).
    "ENUM_NAME_OVERRIDES": {
        "ProviderEnum": "delivery.models.Provider",
        "PlatformEnum": "delivery.models.Platform",
        "DeliveryStatusEnum": "delivery.models.PushDelivery.Status",
        "QuietHoursActionEnum": "campaigns.serializers.QUIET_HOURS_ACTIONS",
        "MoEngageTargetPlatformEnum": "campaigns.compat.moengage.TARGET_PLATFORMS",
        "MoEngageTargetAudienceEnum": "campaigns.compat.moengage.AUDIENCES",
        "MoEngageUserAttributeEnum": "campaigns.compat.moengage.USER_ATTRIBUTES",
        "MoEngageComparisonEnum": "campaigns.compat.moengage.COMPARISONS",
        "MoEngageRequestTypeEnum": "campaigns.compat.moengage.REQUEST_TYPES",
    },
}

# App events (segments/events.py) older than this many days are deleted by the daily
# purge (segments.purge_events); 0 keeps them forever. docs/api.md, "Events".
HERALD_EVENT_RETENTION_DAYS = env_int("HERALD_EVENT_RETENTION_DAYS", 90)
# Audit events (core/audit.py) older than this many days are deleted by the daily
# purge (core.purge_audit_events); 0 keeps them forever. docs/deploy.md.
HERALD_AUDIT_RETENTION_DAYS = env_int("HERALD_AUDIT_RETENTION_DAYS", 365)

# Largest accepted request body (Django refuses bigger ones before parsing).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("HERALD_MAX_BODY_BYTES", 1024 * 1024)

# --- Metrics (/metrics, Prometheus) --------------------------------------------
# Every process of a node (web workers, Celery pool children, beat, commands) keeps
# its counters and histograms in files in HERALD_METRICS_DIR, and /metrics adds them
# up: prometheus-client's multiprocess mode. It reads PROMETHEUS_MULTIPROC_DIR when it
# is first imported, so that is set here, from HERALD_METRICS_DIR, before any app
# module imports it (and overwritten: a child started with another var dir must not
# write to its parent's folder). run_stack empties the folder when a node starts;
# one folder per node (docs/deploy.md, "Metrics").
PROMETHEUS_MULTIPROC_DIR = Path(os.environ.get("HERALD_METRICS_DIR", VAR_DIR / "metrics"))
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)
# A scraper's `Authorization: Bearer <token>`; empty: staff sessions only.
HERALD_METRICS_TOKEN = os.environ.get("HERALD_METRICS_TOKEN", "")
# Computed when /metrics is scraped (bounded queries), beside the processes' files.
HERALD_METRICS_COLLECTORS = ["campaigns.collector.ScrapeTimeCollector"]

# --- Delivery ---------------------------------------------------------------
HERALD_FANOUT_CHUNK_SIZE = env_int("HERALD_FANOUT_CHUNK_SIZE", 2000)
HERALD_PUBLIC_URL = os.environ.get("HERALD_PUBLIC_URL", "http://127.0.0.1:8000")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        # The MCP SDK logs each stateless request's transport start and stop at INFO.
        "mcp": {"level": "WARNING"},
    },
}

# --- Scheduling -------------------------------------------------------------
# Wake-up tasks get an ETA only when due within this window, which stays well
# under the broker's visibility_timeout so Redis never redelivers a sleeping ETA
# task; the sweeper arms the rest as they come due (docs/scheduling.md).
HERALD_SCHEDULE_ETA_WINDOW_SECONDS = env_int("HERALD_SCHEDULE_ETA_WINDOW_SECONDS", 300)
HERALD_SWEEP_INTERVAL_SECONDS = env_int("HERALD_SWEEP_INTERVAL_SECONDS", 15)

# --- Provider simulators (make run, tests, benchmarks) ------------------------
HERALD_SIMULATOR_HOST = os.environ.get("HERALD_SIMULATOR_HOST", "127.0.0.1")
HERALD_SIMULATOR_APNS_PORT = env_int("HERALD_SIMULATOR_APNS_PORT", 2197)
HERALD_SIMULATOR_FCM_PORT = env_int("HERALD_SIMULATOR_FCM_PORT", 2198)
HERALD_SIMULATOR_CONTROL_PORT = env_int("HERALD_SIMULATOR_CONTROL_PORT", 2199)
HERALD_SIMULATOR_WEBPUSH_PORT = env_int("HERALD_SIMULATOR_WEBPUSH_PORT", 2196)
HERALD_SIMULATOR_DIR = Path(os.environ.get("HERALD_SIMULATOR_DIR", VAR_DIR / "simulators"))
# make run's device behaviour: the simulators report opens, clicks and this goal event
# for the demo project's pushes (delivery/simulators/reporting.py, README "Two commands").
HERALD_DEMO_DEVICE_BEHAVIOUR = env_bool("HERALD_DEMO_DEVICE_BEHAVIOUR", True)
HERALD_DEMO_GOAL_EVENT = os.environ.get("HERALD_DEMO_GOAL_EVENT", "purchase")

# --- Provider senders ---------------------------------------------------------
HERALD_APNS_CONCURRENCY = env_int("HERALD_APNS_CONCURRENCY", 500)
HERALD_FCM_CONCURRENCY = env_int("HERALD_FCM_CONCURRENCY", 64)
HERALD_PROVIDER_TIMEOUT_SECONDS = float(os.environ.get("HERALD_PROVIDER_TIMEOUT_SECONDS", "10"))
# Rows a batch task claims at a time (one claim UPDATE). Bigger sub-batches amortise
# their slowest request (bench/fanout.py: 500 -> 1000 rows took 100k tokens from
# ~4,000 to ~5,400 deliveries/s); results are written as they arrive, below.
HERALD_SEND_CHUNK_SIZE = env_int("HERALD_SEND_CHUNK_SIZE", 1000)
# Results are written in flushes of this many rows, or after this long, whichever
# comes first; what a SIGKILL can lose besides the requests in flight is one flush.
# A flush costs the worker ~1.2 ms of CPU plus ~19 us per row (docs/decisions.md).
HERALD_RESULT_FLUSH_ROWS = env_int("HERALD_RESULT_FLUSH_ROWS", 250)
HERALD_RESULT_FLUSH_SECONDS = float(os.environ.get("HERALD_RESULT_FLUSH_SECONDS", "0.25"))
# Transient failures (429/5xx/network) are retried this many times in all.
HERALD_MAX_ATTEMPTS = env_int("HERALD_MAX_ATTEMPTS", 5)
HERALD_RETRY_BASE_SECONDS = float(os.environ.get("HERALD_RETRY_BASE_SECONDS", "2"))
HERALD_RETRY_MAX_SECONDS = float(os.environ.get("HERALD_RETRY_MAX_SECONDS", "300"))
# A sending task renews its claim's lease this often; a claim not renewed for the
# lease belongs to a dead worker and the sweeper closes it (docs/decisions.md). The
# lease must allow a missed renewal or two (system check delivery.W001).
HERALD_CLAIM_RENEW_SECONDS = float(os.environ.get("HERALD_CLAIM_RENEW_SECONDS", "10"))
HERALD_CLAIM_LEASE_SECONDS = env_int("HERALD_CLAIM_LEASE_SECONDS", 30)
# A sending run with no progress for this long is re-driven by the sweeper (lost
# batch tasks; a dead worker's expired claims re-drive their run at once).
HERALD_STALL_SECONDS = env_int("HERALD_STALL_SECONDS", 30)
# A run whose tasks keep raising is re-driven this many times without progress,
# then failed with the last error (nothing wedges).
HERALD_MAX_REDRIVES = env_int("HERALD_MAX_REDRIVES", 5)
