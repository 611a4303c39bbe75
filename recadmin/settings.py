"""Django settings. Everything deployment-specific comes from `recadmin.env.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recadmin.env import BASE_DIR, env

VAR_DIR = Path(env.str("RECADMIN_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)


def _secret_key() -> str:
    # Unset SECRET_KEY on a single machine: make one once and keep it under var/, so sessions
    # survive restarts without anyone having to invent a key. Deployments set it explicitly.
    configured = env.optional("SECRET_KEY")
    if configured:
        return configured
    path = VAR_DIR / "secret_key"
    if not path.exists():
        import secrets

        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # The admin theme: before django.contrib.admin so its templates win.
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.import_export",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    # Swagger UI and Redoc as static files of our own: /api/docs/ works without internet.
    "drf_spectacular_sidecar",
    "import_export",
    "simple_history",
    "django_celery_beat",
    "django_celery_results",
    "recadmin.core",
    "recadmin.catalog",
    "recadmin.events",
    "recadmin.rules",
    "recadmin.modelops",
    "recadmin.experiments",
    "recadmin.serving",
    "recadmin.metrics",
]

MIDDLEWARE = [
    # First: the request id and the latency histogram cover everything below.
    "recadmin.core.observability.middleware.ObservabilityMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Oversized API bodies (413) and database outages outside DRF (JSON 503 with Retry-After).
    "recadmin.core.middleware.GuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Change history records the admin user behind every save a request makes (services included).
    "simple_history.middleware.HistoryRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: locks the admin login after repeated failures.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# The admin login locks a username from an address after AXES_FAILURE_LIMIT failures for
# AXES_COOLOFF_MINUTES (the answer is a 429); a success resets the count. Per username *and* address,
# so nobody can lock an admin out from elsewhere, and a shared proxy address does not lock everyone.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_MINUTES", 15.0) / 60.0  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)

ROOT_URLCONF = "recadmin.urls"
WSGI_APPLICATION = "recadmin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "recadmin" / "templates"],
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

DATABASES = {"default": env.database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'recadmin.sqlite3'}")}
# Embedded mode writes from several threads at once (event ingestion, the served-log drain, the
# minute's metrics refresh). SQLite's default deferred transactions fail at once with "database is
# locked" when two of them that have read both try to write; BEGIN IMMEDIATE takes the write lock
# first and waits up to `timeout` seconds for it, and WAL lets readers go on meanwhile.
SQLITE_OPTIONS: dict[str, Any] = {
    "timeout": env.float("SQLITE_TIMEOUT", 30.0),
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis is optional: without it the cache is process-local and Celery runs tasks in-process,
# so a single machine needs nothing but this checkout.
REDIS_URL = env.optional("REDIS_URL")
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", "recadmin")
# Every Redis client goes through recadmin.core.redis_breaker (no retries, a circuit breaker per
# server): while Redis is down or hung, cache reads are misses and writes no-ops within microseconds,
# and one log line marks each change of state. The socket timeout bounds the one call that finds
# Redis hung; a probe every REDIS_BREAKER_PROBE_SECONDS closes the circuit when Redis answers again.
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", 0.5)
REDIS_BREAKER_PROBE_SECONDS = env.float("REDIS_BREAKER_PROBE_SECONDS", 1.0)
REDIS_BREAKER_PROBE_TIMEOUT = env.float("REDIS_BREAKER_PROBE_TIMEOUT", 0.5)
REDIS_CACHE_OPTIONS: dict[str, Any] = {
    "CLIENT_CLASS": "django_redis.client.DefaultClient",
    "REDIS_CLIENT_CLASS": "recadmin.core.redis_breaker.BreakerRedis",
    "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_TIMEOUT,
    "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
    # A Redis failure is a cache miss (reads) or a no-op (writes), never an error at the call site.
    "IGNORE_EXCEPTIONS": True,
}
if REDIS_URL:
    CACHES: dict[str, Any] = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": dict(REDIS_CACHE_OPTIONS),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": CACHE_KEY_PREFIX,
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request otherwise
# WhiteNoise serves the admin's static files from gunicorn itself: no separate web server needed.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Finders let a fresh checkout serve the admin without a collectstatic step.
WHITENOISE_USE_FINDERS = True

DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", 32 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 20_000
# Seconds a 503 (database unavailable) tells clients to wait before retrying.
SERVICE_UNAVAILABLE_RETRY_AFTER = env.int("SERVICE_UNAVAILABLE_RETRY_AFTER", 5)

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["recadmin.core.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Bounded in size, depth, rows and content (recadmin.core.parsers).
    "DEFAULT_PARSER_CLASSES": ["recadmin.core.parsers.SafeJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "recadmin.core.schema.RecadminAutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "recadmin.core.exception_handler.drf_exception_handler",
    # Per API key: ApiKey.rate_limit, else API_KEY_RATE_LIMIT (recadmin.core.throttling).
    "DEFAULT_THROTTLE_CLASSES": ["recadmin.core.throttling.ApiKeyRateThrottle"],
    "UNAUTHENTICATED_USER": None,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "recadmin API",
    "DESCRIPTION": (
        "Self-hosted recommendations for online shops. Send catalog and behaviour, get ranked "
        "lists with the shop's business rules applied. Authenticate with `Authorization: Bearer <key>`; "
        "keys carry scopes (ingest, recommend, manage)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # 3.1: full JSON Schema, so that request schemas can say what the parser refuses in object keys
    # (`propertyNames`), which 3.0 cannot.
    "OAS_VERSION": "3.1.0",
    # Every operation's error answers (400, 401, 403, 404, 409, 413, 429, 503) with the error shape.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "recadmin.core.schema.document_error_responses",
        # Request bodies allow only what the parser accepts (text without NUL, numbers within bigint).
        "recadmin.core.schema.document_storable_request_bodies",
        # Last: OpenAPI 3.0's `nullable` (DRF's pagination schemas) as 3.1's null type.
        "recadmin.core.schema.nullable_as_json_schema",
    ],
    # Two models call their choice field "kind": name the enums after what they choose.
    "ENUM_NAME_OVERRIDES": {
        "ModelKindEnum": "recadmin.modelops.models.ModelKind",
        "TrainingRunStatusEnum": "recadmin.modelops.models.TrainingRunStatus",
        "RuleKindEnum": "recadmin.rules.models.RuleKind",
        "ExperimentStatusEnum": "recadmin.experiments.models.ExperimentStatus",
        "ExperimentInitialStatusEnum": ["draft", "running"],
    },
}

# Celery: with REDIS_URL a real worker runs tasks; without it they run in-process, eagerly.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", REDIS_URL or "memory://")
if CELERY_BROKER_URL.startswith("redis://"):
    # kombu's Redis transport with a fix: a worker that loses Redis mid-task reconnects instead of
    # exiting with an AttributeError (recadmin.core.broker says why). Not for rediss://: kombu turns TLS
    # on by that scheme's transport name, which a transport class given here would not carry.
    CELERY_BROKER_TRANSPORT = "recadmin.core.broker:Transport"
# Retry the broker for ever, at start too: Redis restarting must never end a worker or beat.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A task running when the broker goes away keeps running (an hour of training must not end with a
# Redis restart); its late acknowledgement may be lost, so it can be delivered again: tasks are
# idempotent and the stale-run sweep settles training runs.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_RESULT_BACKEND = "django-db"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not bool(REDIS_URL))
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", 4 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", 4 * 3600 - 120)
CELERY_BEAT_SCHEDULER = "recadmin.core.beat:TunableDatabaseScheduler"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # Short, periodic modelops work must not wait behind an hour of training on the training queue.
    "recadmin.modelops.tasks.sync_torchserve": {"queue": "default"},
    "recadmin.modelops.tasks.sweep_stale_runs": {"queue": "default"},
    "recadmin.modelops.tasks.*": {"queue": "training"},
}
CELERY_TIMEZONE = TIME_ZONE

# TorchServe: all of it is reached through recadmin.modelops.torchserve (the one adapter).
TORCHSERVE_INFERENCE_URL = env.str("TORCHSERVE_INFERENCE_URL", "http://127.0.0.1:8080")
TORCHSERVE_MANAGEMENT_URL = env.str("TORCHSERVE_MANAGEMENT_URL", "http://127.0.0.1:8081")
TORCHSERVE_METRICS_URL = env.str("TORCHSERVE_METRICS_URL", "http://127.0.0.1:8082")
TORCHSERVE_KEY_FILE = env.str("TORCHSERVE_KEY_FILE", str(VAR_DIR / "torchserve" / "key_file.json"))
TORCHSERVE_TOKEN_AUTH = env.bool("TORCHSERVE_TOKEN_AUTH", default=True)
TORCHSERVE_TIMEOUT = env.float("TORCHSERVE_TIMEOUT", 5.0)
TORCHSERVE_REGISTER_TIMEOUT = env.float("TORCHSERVE_REGISTER_TIMEOUT", 300.0)
# TorchServe always opens gRPC listeners too; give each instance on a machine its own ports.
TORCHSERVE_GRPC_INFERENCE_PORT = env.int("TORCHSERVE_GRPC_INFERENCE_PORT", 7070)
TORCHSERVE_GRPC_MANAGEMENT_PORT = env.int("TORCHSERVE_GRPC_MANAGEMENT_PORT", 7071)
MODEL_STORE = Path(env.str("MODEL_STORE", str(BASE_DIR / "model_store")))
RECOMMENDER_MODEL_NAME = env.str("RECOMMENDER_MODEL_NAME", "recommender")
# The ranking stage's model (its own .mar, versions and default), trained by kind "ranker".
RANKER_MODEL_NAME = env.str("RANKER_MODEL_NAME", "ranker")

# Training runs started from the admin or the API with no Celery worker (no REDIS_URL) run in a
# child `manage.py train` process: the web request returns at once and web workers never load torch.
MODELOPS_TRAIN_IN_SUBPROCESS = env.bool("TRAINING_IN_SUBPROCESS", default=not REDIS_URL)
TRAINING_SOFT_TIME_LIMIT = env.int("TRAINING_SOFT_TIME_LIMIT", 3 * 3600)

# Seconds each web process trusts an API key it has seen before asking the cache again; revoking a
# key takes effect everywhere within this time (0 turns the per-process cache off).
API_KEY_PROCESS_CACHE_SECONDS = env.int("API_KEY_PROCESS_CACHE_SECONDS", 5)

# Requests per API key unless the key sets its own rate_limit: "<n>/<s|min|hour|day>", e.g. 6000/min.
# Empty: no limit. Over the limit: 429 with Retry-After.
API_KEY_RATE_LIMIT = env.str("API_KEY_RATE_LIMIT", "")

# Seconds each web process trusts its copy of the running experiments before checking the cache's
# version token again; start / stop / reallocation reach every process within this time.
EXPERIMENTS_PROCESS_CACHE_SECONDS = env.float("EXPERIMENTS_PROCESS_CACHE_SECONDS", 2.0)
# Hours after a served list (direct) or a click (an add-to-cart or purchase without a
# recommendation_id) during which an event is attributed to the list.
ATTRIBUTION_WINDOW_HOURS = env.float("ATTRIBUTION_WINDOW_HOURS", 24.0)

# Serving
SERVING_TIME_BUDGET_MS = env.int("SERVING_TIME_BUDGET_MS", 150)
# Each gunicorn worker warms caches, connections and imports before its first request (serving.warmup).
SERVING_WARM_UP = env.bool("SERVING_WARM_UP", True)
# ...then freezes its heap, so that full garbage collections skip what lives as long as the worker
# (recadmin.gunicorn_conf.heap_freeze).
SERVING_GC_FREEZE = env.bool("SERVING_GC_FREEZE", True)
PROMOTION_TOLERANCE = env.float("PROMOTION_TOLERANCE", 0.0)

# --- operations (owned by recadmin.core.observability and recadmin.core.scheduler) ----------------
LOG_LEVEL = env.str("LOG_LEVEL", "INFO")
# "plain" (one readable line) or "json" (JSON lines for a log shipper). Every line carries the
# request id (or the Celery task id), and API keys, bearer tokens and passwords are masked.
LOG_FORMAT = env.str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ValueError(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "recadmin.core.observability.logs.RequestIdFilter"},
        "redact": {"()": "recadmin.core.observability.logs.RedactFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        "json": {"()": "recadmin.core.observability.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # A line per periodic task every few seconds is noise; failures still show (WARNING and up),
        # and the in-process scheduler logs a failing task once per change of state.
        "celery.app.trace": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING"},
        "django_celery_beat.schedulers": {"level": "WARNING"},
    },
}
# An incoming X-Request-ID is kept when it looks like an id (letters, digits, - _ . : /, at most this long).
REQUEST_ID_MAX_LENGTH = 128

# /metrics (Prometheus): answered to loopback clients; METRICS_ALLOWED_NETWORKS (CIDRs) adds networks
# (a Prometheus on the compose network), METRICS_BEARER_TOKEN accepts `Authorization: Bearer <token>`
# from anywhere. Others get 403 (or 401 when a token is configured).
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", [])
METRICS_BEARER_TOKEN = env.optional("METRICS_BEARER_TOKEN")

# /readyz: seconds each check may take (checks run in parallel); the fallback share over this many
# seconds of this process's recommendation answers above which readiness says "degraded".
READYZ_CHECK_TIMEOUT = env.float("READYZ_CHECK_TIMEOUT", 1.0)
READYZ_FALLBACK_WINDOW_SECONDS = env.int("READYZ_FALLBACK_WINDOW_SECONDS", 300)
READYZ_FALLBACK_RATE_DEGRADED = env.float("READYZ_FALLBACK_RATE_DEGRADED", 0.5)

# The in-process scheduler (recadmin.core.scheduler): celery beat's schedule run inside the web
# process when there is no beat. auto = on when tasks run in-process (no REDIS_URL / broker).
SCHEDULER = env.str("SCHEDULER", "auto")
SCHEDULER_LOCK_FILE = env.str("SCHEDULER_LOCK_FILE", str(VAR_DIR / "scheduler.lock"))
SCHEDULER_THREADS = env.int("SCHEDULER_THREADS", 4)
# Tasks every web process runs (each on its own process-local buffer) besides the lock holder's schedule.
SCHEDULER_PER_PROCESS_TASKS = env.list("SCHEDULER_PER_PROCESS_TASKS", ["recadmin.serving.tasks.drain_served_log"])
CELERY_BEAT_MAX_LOOP_INTERVAL = 5

# Training runs send a heartbeat every TRAINING_HEARTBEAT_SECONDS; a running run silent for
# TRAINING_VISIBILITY_TIMEOUT seconds (its process was killed) is failed by the periodic sweep.
TRAINING_HEARTBEAT_SECONDS = env.int("TRAINING_HEARTBEAT_SECONDS", 15)
TRAINING_VISIBILITY_TIMEOUT = env.int("TRAINING_VISIBILITY_TIMEOUT", 120)
# --- end operations --------------------------------------------------------------------------------

# --- HTTPS (production: see .env.example; `manage.py check --deploy` is clean with those values) ---
if not DEBUG and env.bool("SECURE_COOKIES", default=False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
# Redirect plain HTTP to HTTPS; probes and the scrape (plain HTTP inside the compose network) are exempt.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Strict-Transport-Security: seconds browsers must use HTTPS only (0 = no header).
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- admin (owned by recadmin.core.admin_nav, recadmin.core.dashboard and the apps' admin.py) ------
# The admin home is a dashboard of panels: each entry is the dotted path of a callable
# `(request) -> list[dict]`, each dict {"title", "template", "context", "width": "full"|"half"}.
# Panels render in this order; one that fails shows an error box instead of breaking the page.
RECADMIN_DASHBOARD_PANELS: list[str] = [
    "recadmin.metrics.dashboard.dashboard_panels",
    "recadmin.modelops.dashboard.models_panel",
    "recadmin.rules.dashboard.rules_panel",
    "recadmin.experiments.dashboard.experiments_panel",
]
# django-unfold's settings: the theme, the sidebar (the merchandiser's work first, System last) and
# the dashboard callback that renders the panels above.
from recadmin.core import admin_nav  # noqa: E402

UNFOLD = admin_nav.UNFOLD


# --- events (owned by recadmin.events) -------------------------------------------------------------
# The event types the API accepts and each one's weight as a training signal:
# EVENT_TYPE_WEIGHTS="view:1,click:2,add_to_cart:4,purchase:8,rating:5". A new type needs no migration.
def _event_type_weights() -> dict[str, float]:
    raw = env.list("EVENT_TYPE_WEIGHTS", ["view:1", "click:2", "add_to_cart:4", "purchase:8", "rating:5"])
    weights: dict[str, float] = {}
    for part in raw:
        name, sep, weight = part.partition(":")
        try:
            weights[name.strip()] = float(weight) if sep else 1.0
        except ValueError as exc:
            raise ValueError(f"EVENT_TYPE_WEIGHTS: weight of {name!r} must be a number, got {weight!r}") from exc
    return weights


EVENT_TYPE_WEIGHTS = _event_type_weights()
EVENTS_MAX_BATCH = env.int("EVENTS_MAX_BATCH", 10_000)
# Recent history per customer, kept in Redis (or the local cache) for the serving hot path.
HISTORY_LENGTH = env.int("HISTORY_LENGTH", 50)
HISTORY_TTL_SECONDS = env.int("HISTORY_TTL_SECONDS", 30 * 24 * 3600)
# --- end events ------------------------------------------------------------------------------------
