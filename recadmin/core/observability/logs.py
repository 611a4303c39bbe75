"""Logging filters and the JSON-lines formatter (settings.LOGGING uses them).

- `RequestIdFilter` puts the current request id (or Celery task id) on every record.
- `RedactFilter` masks secrets in the message and the traceback before any handler formats them:
  bearer tokens and `Authorization` headers, recadmin API keys (`rk_...`), `password=` and
  `"password": "..."` values. It rewrites the record, so every handler gets the masked text.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from recadmin.core.observability.context import request_id_get

MASK = "[redacted]"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization: Bearer xyz / Basic xyz / Token xyz (header dumps, repr of a headers dict)
    (
        re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:((?:bearer|basic|token)\s+))?[^\s'\",}]+"),
        r"\1\2" + MASK,
    ),
    (re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    # recadmin API keys, wherever they appear
    (re.compile(r"\brk_[A-Za-z0-9_-]{6,}"), "rk_" + MASK),
    # password=..., passwd: ..., "password": "..." (form bodies, URLs, JSON, dict reprs)
    (re.compile(r"(?i)((?:password|passwd|pwd|secret|api_key)[\"']?\s*[:=]\s*[\"']?)[^\s&\"',}]+"), r"\1" + MASK),
    # credentials in a URL: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@"), r"\1" + MASK + "@"),
]


def redact(text: str) -> str:
    if not text:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_get()
        return True


_formatter = logging.Formatter()


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: let the handler report it
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            # Formatted once here, masked, and kept as text: handlers print exc_text.
            record.exc_text = redact(_formatter.formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id (+ any `extra`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)

    def jsonify_log_record(self, log_record: Any) -> str:
        # `extra` fields (Django's "request", with its query string) are masked too.
        return redact(super().jsonify_log_record(log_record))
