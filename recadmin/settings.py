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
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "import_export",
    "django_celery_beat",
    "django_celery_results",
    "recadmin.core",
    "recadmin.catalog",
    "recadmin.events",
    "recadmin.rules",
    "recadmin.modelops",
    "recadmin.experiments",
    "recadmin.serving",
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
]

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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis is optional: without it the cache is process-local and Celery runs tasks in-process,
# so a single machine needs nothing but this checkout.
REDIS_URL = env.optional("REDIS_URL")
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", "recadmin")
if REDIS_URL:
    CACHES: dict[str, Any] = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
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

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["recadmin.core.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "recadmin.core.exception_handler.drf_exception_handler",
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
    "COMPONENT_SPLIT_REQUEST": True,
    # Two models call their choice field "kind": name the enums after what they choose.
    "ENUM_NAME_OVERRIDES": {
        "ModelKindEnum": "recadmin.modelops.models.ModelKind",
        "RuleKindEnum": "recadmin.rules.models.RuleKind",
        "ExperimentStatusEnum": "recadmin.experiments.models.ExperimentStatus",
        "ExperimentInitialStatusEnum": ["draft", "running"],
    },
}

# Celery: with REDIS_URL a real worker runs tasks; without it they run in-process, eagerly.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = "django-db"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not bool(REDIS_URL))
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", 4 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", 4 * 3600 - 120)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"recadmin.modelops.tasks.*": {"queue": "training"}}
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

# Training runs started from the admin or the API with no Celery worker (no REDIS_URL) run in a
# child `manage.py train` process: the web request returns at once and web workers never load torch.
MODELOPS_TRAIN_IN_SUBPROCESS = env.bool("TRAINING_IN_SUBPROCESS", default=not REDIS_URL)
TRAINING_SOFT_TIME_LIMIT = env.int("TRAINING_SOFT_TIME_LIMIT", 3 * 3600)

# Seconds each web process trusts an API key it has seen before asking the cache again; revoking a
# key takes effect everywhere within this time (0 turns the per-process cache off).
API_KEY_PROCESS_CACHE_SECONDS = env.int("API_KEY_PROCESS_CACHE_SECONDS", 5)

# Seconds each web process trusts its copy of the running experiments before checking the cache's
# version token again; start / stop / reallocation reach every process within this time.
EXPERIMENTS_PROCESS_CACHE_SECONDS = env.float("EXPERIMENTS_PROCESS_CACHE_SECONDS", 2.0)

# Serving
SERVING_TIME_BUDGET_MS = env.int("SERVING_TIME_BUDGET_MS", 150)
PROMOTION_TOLERANCE = env.float("PROMOTION_TOLERANCE", 0.0)

LOG_LEVEL = env.str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if not DEBUG and env.bool("SECURE_COOKIES", default=False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

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
