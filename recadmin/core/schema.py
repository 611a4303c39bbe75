"""drf-spectacular extensions and hooks: API-key auth as the bearer scheme every endpoint uses, the
error answers of every operation, and request schemas that allow only what the API accepts."""

from __future__ import annotations

import copy
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.drainage import set_override
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import is_list_serializer
from rest_framework import serializers

from recadmin.core.parsers import MAX_DEPTH, MAX_INTEGER

# What DRF's SlugField accepts, for query parameters documented by hand (OpenApiParameter).
SLUG_PATTERN = r"^[-a-zA-Z0-9_]+$"


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


# --- what every request body may hold ---------------------------------------------------------------
# recadmin.core.parsers refuses, anywhere in a JSON body, text the database cannot store (NUL; lone
# surrogates, which no JSON Schema pattern can name) and integers past its bigint. The schema says so
# on every request body, so that what it allows is what the API accepts (schemathesis'
# positive_data_acceptance): every free string gets STORABLE_TEXT, every object's keys too, unbounded
# numbers get the bigint's bounds, and free-form values (attributes, context, unknown members where the
# API ignores them) are StorableJson.
STORABLE_TEXT = r"^[^\u0000]*$"
# A field DRF trims (CharField) and that may not be blank: some character besides whitespace.
NOT_BLANK_TEXT = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
STORABLE_JSON_REF = {"$ref": "#/components/schemas/StorableJson"}
STORABLE_JSON = {
    "description": "Any JSON value the database can store: text without NUL characters (or lone "
    f"surrogates), numbers within ±{MAX_INTEGER}, at most {MAX_DEPTH} levels deep.",
    "anyOf": [
        {"type": "null"},
        {"type": "string", "pattern": STORABLE_TEXT},
        {"type": "number", "minimum": -MAX_INTEGER, "maximum": MAX_INTEGER},
        {"type": "boolean"},
        {"type": "array", "items": STORABLE_JSON_REF},
        {"type": "object", "propertyNames": {"pattern": STORABLE_TEXT}, "additionalProperties": STORABLE_JSON_REF},
    ],
}


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return {kind} if isinstance(kind, str) else set(kind or ())


def _bound_request_schema(schema: Any, components: dict[str, Any], seen: set[str]) -> None:
    if not isinstance(schema, dict):
        return
    reference = schema.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/components/schemas/"):
        name = reference.rsplit("/", 1)[-1]
        if name not in seen:  # each component once (and recursive ones end)
            seen.add(name)
            _bound_request_schema(components.get(name), components, seen)
        return
    for combined in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(combined, []):
            _bound_request_schema(branch, components, seen)
    types = _types(schema)
    if "string" in types and not {"enum", "pattern", "format"} & schema.keys():
        schema["pattern"] = STORABLE_TEXT
    if types & {"integer", "number"}:
        schema.setdefault("minimum", -MAX_INTEGER)
        schema.setdefault("maximum", MAX_INTEGER)
    if "array" in types:
        _bound_request_schema(schema.get("items"), components, seen)
    if "object" in types or "properties" in schema:
        for member in schema.get("properties", {}).values():
            _bound_request_schema(member, components, seen)
        others = schema.get("additionalProperties", True)
        if others is False:
            return
        schema["propertyNames"] = {"pattern": STORABLE_TEXT}
        if others is True or others == {}:
            schema["additionalProperties"] = STORABLE_JSON_REF
        else:
            _bound_request_schema(others, components, seen)


def document_storable_request_bodies(
    result: dict[str, Any], generator: Any, request: Any, public: Any
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every JSON request body documents what the parser refuses,
    and every text query and path parameter what GuardMiddleware refuses in URLs (NUL, lone surrogates)."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("StorableJson", STORABLE_JSON)
    seen = {"StorableJson"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema")
                if (
                    parameter.get("in") in ("query", "path")
                    and isinstance(schema, dict)
                    and "string" in _types(schema)
                    and not {"enum", "pattern", "format"} & schema.keys()
                ):
                    schema["pattern"] = STORABLE_TEXT
            content = operation.get("requestBody", {}).get("content", {})
            for media_type, body in content.items():
                if media_type == "application/json":
                    _bound_request_schema(body.get("schema"), components, seen)
    return result


def _null_as_a_type(schema: Any) -> None:
    if isinstance(schema, list):
        for item in schema:
            _null_as_a_type(item)
        return
    if not isinstance(schema, dict):
        return
    if schema.pop("nullable", False):
        kind = schema.get("type")
        if isinstance(kind, str):
            schema["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            kind.append("null")
        elif kind is None and "enum" in schema and None not in schema["enum"]:
            schema["enum"].append(None)
    for key, value in schema.items():
        # Examples and defaults are data, not schemas: a member called "nullable" there stays.
        if key not in ("example", "examples", "default", "enum") and isinstance(value, (dict, list)):
            _null_as_a_type(value)


def nullable_as_json_schema(result: dict[str, Any], generator: Any, request: Any, public: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook, last: the schema is OpenAPI 3.1 (JSON Schema), where
    OpenAPI 3.0's `nullable: true` means nothing; DRF's pagination schemas still write it (`next`,
    `previous`), as may hand-written ones. Null becomes a type, as 3.1 wants."""
    _null_as_a_type(result.get("components", {}))
    _null_as_a_type(result.get("paths", {}))
    return result


# --- serializers whose views refuse unknown fields ------------------------------------------------------


# Mixin for input serializers whose view refuses members it does not know (a typo must not look
# accepted): their request schema says `additionalProperties: false`. (No docstring: drf-spectacular
# would make it every such component's description.)
class RefusesUnknownFields:
    pass


class RefusesUnknownFieldsExtension(OpenApiSerializerExtension):
    target_class = RefusesUnknownFields
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


class RecadminAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, with what DRF's CharField does to input in the request schema: it
    trims whitespace, so a non-blank one needs a character besides whitespace."""

    def _map_serializer_field(self, field: Any, direction: Any, bypass_extensions: bool = False) -> Any:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(field, serializers.CharField)
            and field.trim_whitespace
            and not field.allow_blank
            and isinstance(schema, dict)
            and schema.get("type") == "string"
            and not {"enum", "pattern", "format"} & schema.keys()
            and not any(isinstance(v, RegexValidator) for v in field.validators)
        ):
            schema["pattern"] = NOT_BLANK_TEXT
        return schema

    def _get_examples(
        self, serializer: Any, direction: Any, media_type: Any, status_code: Any = None, extras: Any = None
    ) -> Any:
        # A batch body's examples are written whole, as the list they are (several rows show how rows
        # relate): drf-spectacular would wrap each in one more list, documenting a body the API refuses.
        if direction == "request" and is_list_serializer(serializer):
            serializer = set_override(copy.copy(serializer), "many", False)
        return super()._get_examples(serializer, direction, media_type, status_code, extras)
