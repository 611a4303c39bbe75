"""Request bodies for the API views: one serializer check that also refuses unknown members."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from recadmin.core.errors import FieldErrors, ValidationError


def validated_input(
    serializer_class: type[serializers.Serializer],
    data: Any,
    *,
    partial: bool = False,
    reason: str = "unknown field",
) -> dict[str, Any]:
    """The serializer's validated data for the JSON object `data`; a 400 naming the field for a body
    that is not an object, for any member the serializer does not write (unknown or read-only;
    `reason` is the message) and for the serializer's own findings."""
    if not isinstance(data, dict):
        raise ValidationError("The body must be a JSON object.", field="body")
    serializer = serializer_class(data=data, partial=partial)
    # A read-only field would be dropped as silently as an unknown one.
    writable = [name for name, field in serializer.fields.items() if not field.read_only]
    errors = FieldErrors()
    errors.add_unknown(data, writable, reason=reason)
    errors.raise_if_any(hint=f"accepted: {', '.join(writable)}.")
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
