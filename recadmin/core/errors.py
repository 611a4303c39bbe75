"""The one error hierarchy. Services raise these; the DRF exception handler renders them as
`{"message": ..., "extra": {...}}` with the class's HTTP status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class ApplicationError(Exception):
    status_code = 400
    default_message = "The request could not be processed."

    def __init__(self, message: str | None = None, extra: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.extra = extra or {}
        super().__init__(self.message)


class ValidationError(ApplicationError):
    """Bad input. `extra["fields"]` maps each offending field to its messages."""

    status_code = 400
    default_message = "Validation error."

    def __init__(
        self,
        message: str | None = None,
        extra: dict[str, Any] | None = None,
        *,
        field: str | None = None,
    ) -> None:
        extra = dict(extra or {})
        if field is not None:
            extra.setdefault("fields", {})[field] = [message or self.default_message]
        super().__init__(message, extra)


class FieldErrors:
    """Collects bad-input messages per field while a validator checks everything, then raises one
    ValidationError naming every field (the first in its message: "field: what is wrong")."""

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.fields.setdefault(field, []).append(message)

    def add_unknown(
        self, data: Any, accepted: Iterable[str], *, prefix: str = "", reason: str = "unknown field"
    ) -> bool:
        """Name each member of the JSON object `data` that `accepted` lacks (`prefix` + its name);
        whether there was one. DRF serializers drop unknown members silently: a typo ("parms",
        "max_per_categry") would look accepted while what it meant never happened."""
        unknown = sorted(set(data) - set(accepted)) if isinstance(data, Mapping) else []
        for name in unknown:
            self.add(f"{prefix}{name}", reason)
        return bool(unknown)

    def raise_if_any(self, *, hint: str = "") -> None:
        """`hint` follows the first field's message, e.g. "accepted: a, b"."""
        if not self.fields:
            return
        field, messages = next(iter(self.fields.items()))
        raise ValidationError(f"{field}: {messages[0]}{'; ' + hint if hint else ''}", extra={"fields": self.fields})


class AuthenticationFailed(ApplicationError):
    status_code = 401
    default_message = "Authentication credentials were not provided or are invalid."


class PermissionDenied(ApplicationError):
    status_code = 403
    default_message = "You do not have permission to perform this action."


class NotFound(ApplicationError):
    status_code = 404
    default_message = "Not found."


class Conflict(ApplicationError):
    status_code = 409
    default_message = "The request conflicts with the current state."


class ServiceUnavailable(ApplicationError):
    """A dependency (database, Redis, TorchServe) did not answer. Transient: callers may retry."""

    status_code = 503
    default_message = "A backing service is unavailable."
