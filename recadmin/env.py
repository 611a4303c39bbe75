"""One typed view of the process environment.

Every setting that varies between deployments is read here and nowhere else, so that
`.env.example` can list them all and a typo fails loudly at start-up rather than at run time.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent


class ImproperlyConfiguredEnv(RuntimeError):
    pass


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    def __init__(self, environ: os._Environ[builtins.str] | dict[builtins.str, builtins.str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._load_dotenv()

    def _load_dotenv(self) -> None:
        # A `.env` beside manage.py fills in what the real environment leaves unset; the real
        # environment always wins so that CI and containers stay in control.
        path = Path(self._environ.get("RECADMIN_ENV_FILE", BASE_DIR / ".env"))
        if not path.is_file() or self._environ is not os.environ:
            return
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            os.environ.setdefault(key.strip(), value.strip().strip('"').strip("'"))

    def str(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str:
        value = self._environ.get(name)
        if value is None or value == "":
            if default is None:
                raise ImproperlyConfiguredEnv(f"Environment variable {name} is required")
            return default
        return value

    def optional(self, name: builtins.str) -> builtins.str | None:
        value = self._environ.get(name)
        return value if value else None

    def bool(self, name: builtins.str, default: builtins.bool = False) -> builtins.bool:
        value = self._environ.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfiguredEnv(f"{name} must be a boolean (true/false), got {value!r}")

    def int(self, name: builtins.str, default: builtins.int) -> builtins.int:
        value = self._environ.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise ImproperlyConfiguredEnv(f"{name} must be an integer, got {value!r}") from exc

    def float(self, name: builtins.str, default: builtins.float) -> builtins.float:
        value = self._environ.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except ValueError as exc:
            raise ImproperlyConfiguredEnv(f"{name} must be a number, got {value!r}") from exc

    def list(
        self, name: builtins.str, default: builtins.list[builtins.str] | None = None
    ) -> builtins.list[builtins.str]:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return list(default or [])
        return [part.strip() for part in value.split(",") if part.strip()]

    def database(self, name: builtins.str, default: builtins.str) -> dict[builtins.str, Any]:
        return parse_database_url(self.str(name, default))


def parse_database_url(url: str) -> dict[str, Any]:
    """Turn `sqlite:///path` or `postgres://user:pass@host:port/db?opt=v` into Django's dict."""
    parsed = urlparse(url)
    scheme = parsed.scheme
    if scheme == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, as dj-database-url reads them.
        path = unquote(parsed.path[1:] if parsed.path.startswith("/") else parsed.path)
        if not path or path == ":memory:":
            name: str | Path = ":memory:"
        else:
            name = Path(path) if Path(path).is_absolute() else BASE_DIR / path
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(name),
            "OPTIONS": {"timeout": 20},
        }
    if scheme in {"postgres", "postgresql", "pgsql"}:
        options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ImproperlyConfiguredEnv(f"Unsupported DATABASE_URL scheme {scheme!r} (use sqlite or postgres)")


env = Env()
