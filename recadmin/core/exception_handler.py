from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_default_handler
from rest_framework.views import set_rollback

from recadmin.core.errors import ApplicationError, ServiceUnavailable

logger = logging.getLogger(__name__)


def _first_field_message(fields: Any, prefix: str = "") -> str | None:
    """Walk DRF's nested error detail to a readable `field: message` for the top-level message."""
    if isinstance(fields, dict):
        for key, value in fields.items():
            if key == "non_field_errors":
                found = _first_field_message(value, prefix)
            else:
                found = _first_field_message(value, f"{prefix}.{key}" if prefix else str(key))
            if found:
                return found
    elif isinstance(fields, list):
        for index, value in enumerate(fields):
            if isinstance(value, (dict, list)):
                found = _first_field_message(value, f"{prefix}[{index}]" if prefix else f"[{index}]")
                if found:
                    return found
            elif value:
                return f"{prefix}: {value}" if prefix else str(value)
    elif fields:
        return f"{prefix}: {fields}" if prefix else str(fields)
    return None


def retry_after_seconds() -> int:
    from django.conf import settings

    return int(getattr(settings, "SERVICE_UNAVAILABLE_RETRY_AFTER", 5))


def database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The database is unavailable; nothing was stored by this request. Retry after the given seconds.",
        extra={"service": "database", "retry_after": retry_after_seconds()},
    )


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every error as {"message", "extra"}; DRF's shapes never leak to clients."""
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    elif isinstance(exc, (OperationalError, InterfaceError)):
        # The database is down or restarting: transient, the client retries (event ids make that safe).
        logger.warning("database unavailable: %s: %s", type(exc).__name__, str(exc).strip()[:200])
        set_rollback()
        exc = database_unavailable()

    if isinstance(exc, ApplicationError):
        app_response = Response({"message": exc.message, "extra": exc.extra}, status=exc.status_code)
        if exc.status_code == 401:
            app_response["WWW-Authenticate"] = "Bearer"
        if exc.status_code == 503:
            app_response["Retry-After"] = str(retry_after_seconds())
        return app_response

    response = drf_default_handler(exc, context)
    if response is None:
        return None

    if isinstance(exc, drf_exceptions.ValidationError):
        fields: Any = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        summary = _first_field_message(fields)
        response.data = {
            "message": f"Validation error: {summary}" if summary else "Validation error.",
            "extra": {"fields": fields},
        }
    elif isinstance(exc, drf_exceptions.ParseError):
        response.data = {
            "message": f"Malformed request body: {exc.detail}",
            "extra": {"fields": {"body": [str(exc.detail)]}},
        }
    elif isinstance(exc, drf_exceptions.APIException):
        detail = exc.detail
        message = str(detail) if not isinstance(detail, (dict, list)) else "Request failed."
        response.data = {"message": message, "extra": {} if isinstance(detail, str) else {"detail": detail}}
    return response
