"""drf-spectacular extension: documents API-key auth as the bearer scheme every endpoint uses."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "recadmin.core.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key created in the admin or with `manage.py create_api_key`; "
            "scopes: ingest, recommend, manage.",
        }


# What any operation may answer besides its own responses: the error shape of every API error
# (`{"message": ..., "extra": {...}}`, recadmin.core.exception_handler), so that clients and the
# schema fuzzer (status_code_conformance) find each answered status documented.
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "extra": {"type": "object", "additionalProperties": True},
    },
    "required": ["message", "extra"],
    "additionalProperties": True,
}
_ERRORS_EVERY_OPERATION = {
    "400": "Bad input: `extra.fields` names each offending field (query, path or body).",
    "401": "No API key, or an unknown or revoked one.",
    "403": "The API key lacks the scope this operation needs (`extra.required_scopes`).",
    "404": "What the path (or a parameter) names does not exist.",
    "429": "The API key's rate limit was reached; see `Retry-After`.",
    "503": "The database (or TorchServe, for model operations) is unavailable; see `Retry-After`.",
}
_ERRORS_WITH_A_BODY = {
    "409": "Conflicts with the current state (e.g. the shop id exists; use PUT to upsert).",
    "413": "The request body is larger than the limit (`extra.max_bytes`).",
}


def document_error_responses(result: dict[str, Any], generator: Any, request: Any, public: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            errors = dict(_ERRORS_EVERY_OPERATION)
            if method in {"post", "put", "patch", "delete"}:
                errors.update(_ERRORS_WITH_A_BODY)
            for status, description in errors.items():
                documented = operation["responses"].setdefault(status, {"description": description})
                # An operation's own description of the status (its extend_schema) stays; the body
                # is the error shape unless the operation documents another.
                documented.setdefault("content", reference)
    return result
