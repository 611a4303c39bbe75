"""POST /api/v1/events: one event or a batch. Scope: ingest."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from recadmin.catalog.models import SHOP_ID_MAX_LENGTH
from recadmin.core.auth import HasIngestScope
from recadmin.core.errors import ValidationError
from recadmin.core.parsers import SafeJSONParser, json_value_problem
from recadmin.core.schema import RefusesUnknownFields
from recadmin.events.models import EVENT_ID_MAX_LENGTH, PRICE_MAX, RECOMMENDATION_ID_MAX_LENGTH, SCENE_MAX_LENGTH
from recadmin.events.services import KNOWN_FIELDS, IngestResult, events_ingest


class EventInput(RefusesUnknownFields, serializers.Serializer):
    """Documentation only: the view validates rows itself (see events.services.event_validate). The
    bounds here are the ones it enforces, so that the schema (and a fuzzer reading it) knows them."""

    # Ids are taken as sent (event_validate does not trim them): trim_whitespace=False says so.
    customer = serializers.CharField(
        max_length=SHOP_ID_MAX_LENGTH,
        trim_whitespace=False,
        help_text="The shop's customer id; unknown ones are created.",
    )
    item = serializers.CharField(
        max_length=SHOP_ID_MAX_LENGTH, trim_whitespace=False, help_text="The item's shop id; must exist."
    )
    # The configured types (EVENT_TYPE_WEIGHTS) when the schema is generated.
    type = serializers.ChoiceField(
        choices=list(settings.EVENT_TYPE_WEIGHTS),
        help_text="One of the configured types (default view, click, add_to_cart, purchase, rating).",
    )
    value = serializers.FloatField(required=False, allow_null=True, help_text="A rating or a quantity.")
    # A JSON number, as event_validate takes it (not a decimal string), 0 .. PRICE_MAX.
    price = serializers.FloatField(
        min_value=0,
        max_value=PRICE_MAX,
        required=False,
        allow_null=True,
        help_text="Price per unit (a purchase's `value` is the quantity). A purchase without one records the "
        "item's catalog price at ingestion time.",
    )
    occurred_at = serializers.DateTimeField(
        required=False, help_text="ISO 8601 (naive = UTC) or unix seconds; default now. 2000-01-01 .. now + 1 day."
    )
    scene = serializers.CharField(
        max_length=SCENE_MAX_LENGTH, required=False, help_text="The scene's slug, e.g. product_detail."
    )
    context = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="Device, page... (an object)."
    )
    recommendation_id = serializers.CharField(
        max_length=RECOMMENDATION_ID_MAX_LENGTH,
        required=False,
        allow_null=True,
        help_text="The id of the served list this event came from.",
    )
    event_id = serializers.CharField(
        max_length=EVENT_ID_MAX_LENGTH,
        required=False,
        help_text="Your unique id: resending it stores nothing twice. Derived from the content if absent.",
    )


IngestSummary = inline_serializer(
    "IngestSummary",
    fields={
        "stored": serializers.IntegerField(),
        "duplicates": serializers.IntegerField(),
        "errors": serializers.ListField(
            child=inline_serializer(
                "IngestRowError",
                fields={
                    "index": serializers.IntegerField(),
                    "field": serializers.CharField(),
                    "message": serializers.CharField(),
                },
            )
        ),
    },
)

EXAMPLE_EVENT = {
    "event_id": "e-20260501-000123",
    "customer": "C-88121",
    "item": "SKU-1042",
    "type": "click",
    "occurred_at": "2026-05-01T12:30:05Z",
    "scene": "product_detail",
    "context": {"device": "mobile", "page": "/p/argan-oil"},
    "recommendation_id": "r-7f3a9c",
}


def _rows_with_bad_values(rows: list[Any]) -> tuple[list[Any], list[int], list[dict[str, Any]]]:
    """Split off the rows holding what the database cannot store (NUL, lone surrogates, huge numbers):
    (the other rows, their indexes in the batch, one error per bad row)."""
    kept: list[Any] = []
    indexes: list[int] = []
    errors: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        problem = json_value_problem(row)
        if problem is None:
            kept.append(row)
            indexes.append(index)
        else:
            errors.append(
                {
                    "index": index,
                    "field": problem[0].split(".")[0].split("[")[0] or "non_field_errors",
                    "message": problem[1],
                }
            )
    return kept, indexes, errors


class EventBatch(RefusesUnknownFields, serializers.Serializer):
    """`{"events": [...]}`: for the schema (the view reads the body itself, row by row)."""

    events = EventInput(many=True)


class EventIngestApi(APIView):
    permission_classes = [HasIngestScope]
    parser_classes = [SafeJSONParser]
    # One bad row must not sink the batch: the view checks each row's values itself.
    json_rows_checked_by_view = True
    json_rows_field = "events"
    # An object body is one event or {"events": [...]}: any other member is refused while parsing,
    # before its value is decoded (a huge list under an unknown key is not parsed whole).
    json_object_fields = KNOWN_FIELDS

    @property
    def json_max_rows(self) -> int:
        return int(settings.EVENTS_MAX_BATCH)

    @extend_schema(
        operation_id="events_ingest",
        summary="Send events",
        description=(
            'Scope `ingest`. The body is one event, a JSON list of events, or `{"events": [...]}` (any other '
            "member of an object body is refused, 400 naming it); at most "
            "EVENTS_MAX_BATCH (default 10,000) per request. Unknown customers are created; a row naming an "
            "unknown item is rejected. Valid rows are stored even when others fail: the answer is 200 when "
            "every row was stored or was a duplicate, 207 when some rows failed (each with its index, field "
            "and message), 400 when none was valid. A repeated event_id is counted as a duplicate and not "
            "stored again, so a batch can safely be resent."
        ),
        # The three forms the view takes, as oneOf: one event, a list, or {"events": [...]}.
        request=PolymorphicProxySerializer(
            component_name="EventsBody",
            serializers=[
                EventInput,
                EventInput(many=True),
                EventBatch,
            ],
            resource_type_field_name=None,
            many=False,
        ),
        responses={
            200: IngestSummary,
            207: OpenApiResponse(IngestSummary, description="Some rows were rejected; the rest were stored."),
            400: OpenApiResponse(description="Malformed body, batch over the limit, or no valid row."),
        },
        examples=[
            OpenApiExample("a batch", value=[EXAMPLE_EVENT], request_only=True),
            OpenApiExample(
                "one event", value={"customer": "C-1", "item": "SKU-9", "type": "rating", "value": 4}, request_only=True
            ),
            OpenApiExample("a wrapped batch", value={"events": [EXAMPLE_EVENT]}, request_only=True),
            OpenApiExample("all stored", value={"stored": 1000, "duplicates": 0, "errors": []}, response_only=True),
            OpenApiExample(
                "partial success",
                status_codes=["207"],
                value={
                    "stored": 998,
                    "duplicates": 1,
                    "errors": [{"index": 17, "field": "item", "message": "Unknown item 'SKU-404'."}],
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        data: Any = request.data
        single = isinstance(data, dict) and "events" not in data
        if isinstance(data, dict) and "events" in data:
            data = data["events"]
        elif single:
            data = [data]
        if not isinstance(data, list):
            raise ValidationError('Send an event object, a list of events or {"events": [...]}.', field="events")
        if not data:
            raise ValidationError("The batch is empty.", field="events")
        limit = settings.EVENTS_MAX_BATCH
        if len(data) > limit:
            raise ValidationError(f"At most {limit} events per request, got {len(data)}.", field="events")
        bad_rows: list[dict[str, Any]] = []
        if request.parser_context.get("suspect_text", True):
            data, indexes, bad_rows = _rows_with_bad_values(data)
        result = events_ingest(payload=data) if data else IngestResult()
        if bad_rows:
            for error in result.errors:
                error["index"] = indexes[error["index"]]
            result.errors = sorted([*bad_rows, *result.errors], key=lambda e: e["index"])
        body = result.as_dict()
        if result.errors and not result.stored and not result.duplicates:
            fields: dict[str, list[str]] = {}
            for error in result.errors[:100]:
                key = error["field"] if single else f"[{error['index']}].{error['field']}"
                fields.setdefault(key, []).append(error["message"])
            first = result.errors[0]
            message = f"No event was stored: {first['field']}: {first['message']}"
            return Response(
                {"message": message, "extra": {"fields": fields}, **body}, status=status.HTTP_400_BAD_REQUEST
            )
        return Response(body, status=status.HTTP_207_MULTI_STATUS if result.errors else status.HTTP_200_OK)
