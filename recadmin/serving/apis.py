"""The shop-facing read API: recommendations, similar items, popular items (recommend scope)."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from recadmin.catalog.models import SHOP_ID_MAX_LENGTH
from recadmin.core.auth import HasRecommendScope
from recadmin.core.errors import ValidationError
from recadmin.core.observability import label_request
from recadmin.serving.fallbacks import FAILURE_REASONS
from recadmin.serving.models import ServedEndpoint
from recadmin.serving.services import (
    MAX_LIST_LENGTH,
    MAX_N,
    ListQuery,
    ServedList,
    list_serve,
    popular_serve,
)

MAX_CART = 50


class ListQueryInput(serializers.Serializer):
    """The query parameters of every list endpoint, validated once (400 naming the parameter)."""

    customer = serializers.CharField(required=False, allow_blank=True, max_length=SHOP_ID_MAX_LENGTH)
    scene = serializers.CharField(required=False, allow_blank=True, max_length=64)
    item = serializers.CharField(required=False, allow_blank=True, max_length=SHOP_ID_MAX_LENGTH)
    category = serializers.CharField(required=False, allow_blank=True, max_length=100)
    n = serializers.IntegerField(required=False, min_value=1, max_value=MAX_N)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_LIST_LENGTH - 1, default=0)
    recommendation_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    cart = serializers.CharField(required=False, allow_blank=True, max_length=MAX_CART * (SHOP_ID_MAX_LENGTH + 1))

    # DRF deep-copies a serializer's declared fields for every instance, which costs more CPU than the
    # rest of the view on this path. These fields are stateless (no context, no nested serializers):
    # bound once, on the first instance, and shared.
    _bound_fields: Any = None

    @property
    def fields(self) -> Any:
        cls = type(self)
        bound = cls.__dict__.get("_bound_fields")
        if bound is None:
            bound = super().fields
            cls._bound_fields = bound
        return bound

    def validate_cart(self, value: str) -> list[str]:
        items, problem = _cart_items(value)
        if problem:
            raise serializers.ValidationError(problem)
        return items

    def to_query(self, endpoint: str, **fixed: Any) -> ListQuery:
        return query_from(self.validated_data, endpoint, **fixed)


def _cart_items(value: str) -> tuple[list[str], str]:
    """The cart's item ids, and what is wrong with them ("" when nothing)."""
    items = [part for part in value.split(",") if part]
    if len(items) > MAX_CART:
        return items, f"At most {MAX_CART} items."
    if any(len(item) > SHOP_ID_MAX_LENGTH for item in items):
        return items, f"Item ids are at most {SHOP_ID_MAX_LENGTH} characters."
    return items, ""


def query_from(validated: dict[str, Any], endpoint: str, **fixed: Any) -> ListQuery:
    data = {**validated, **fixed}
    return ListQuery(
        endpoint=endpoint,
        customer=data.get("customer") or "",
        scene=data.get("scene") or None,
        item=data.get("item") or None,
        category=data.get("category") or None,
        n=data.get("n"),
        offset=data.get("offset") or 0,
        recommendation_id=data.get("recommendation_id") or None,
        cart=tuple(data.get("cart") or ()),
    )


_CHAR_LIMITS = {
    name: field.max_length
    for name, field in ListQueryInput._declared_fields.items()
    if isinstance(field, serializers.CharField) and field.max_length is not None
}
_INT_RANGES = {
    name: (field.min_value, field.max_value)
    for name, field in ListQueryInput._declared_fields.items()
    if isinstance(field, serializers.IntegerField)
}
_DIGITS = re.compile(r"[0-9]{1,9}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _plain_query(params: Any) -> dict[str, Any] | None:
    """The validated data ListQueryInput gives for the common query (short plain strings, small unsigned
    integers), at a fraction of its CPU; None for anything else, which the serializer then judges (and
    names the field in its 400). Same values: the last of repeated parameters, stripped strings, an empty
    integer skipped, offset 0 by default."""
    data: dict[str, Any] = {"offset": 0}
    for name, limit in _CHAR_LIMITS.items():
        raw = params.get(name)
        if raw is None:
            continue
        value = raw.strip()
        if len(value) > limit or "\x00" in value or (not value.isascii() and _SURROGATE.search(value)):
            return None
        data[name] = value
    for name, (low, high) in _INT_RANGES.items():
        raw = params.get(name)
        if raw is None or raw == "":
            continue
        if not _DIGITS.fullmatch(raw):
            return None
        number = int(raw)
        if (low is not None and number < low) or (high is not None and number > high):
            return None
        data[name] = number
    cart = data.get("cart")
    if cart is not None:
        data["cart"], problem = _cart_items(cart)
        if problem:
            return None
    return data


def _query(request: Request, endpoint: str, **fixed: Any) -> ListQuery:
    # Every list request goes through here: the serializer (DRF's per-field validation costs more CPU
    # than the view's own work) only for what the plain path does not accept.
    plain = _plain_query(request.query_params)
    if plain is not None:
        return query_from(plain, endpoint, **fixed)
    serializer = ListQueryInput(data=request.query_params)
    if not serializer.is_valid():
        field = next(iter(serializer.errors))
        messages = serializer.errors[field]
        raise ValidationError(
            f"{field}: {messages[0] if isinstance(messages, list) else messages}",
            extra={"fields": {name: [str(m) for m in errs] for name, errs in serializer.errors.items()}},
        )
    return serializer.to_query(endpoint, **fixed)


class RecommendedItemSerializer(serializers.Serializer):
    item = serializers.CharField(help_text="The item's shop id.")
    title = serializers.CharField()
    category = serializers.CharField(allow_null=True, help_text="The category's slug.")
    price = serializers.FloatField(allow_null=True)
    score = serializers.FloatField(allow_null=True, help_text="The final score after boost/bury rules.")
    position = serializers.IntegerField(help_text="1-based position in the whole list (offset included).")
    reasons = serializers.ListField(
        child=serializers.DictField(),
        help_text='Why the item is here, in order: its origin ({"type": "model"|"similar"|"popular"|'
        '"popular_fallback", "score"}), then "boosted"/"buried"/"pinned" by which rule, "similar_to" which item; '
        '"rules_skipped" when a fallback list could not be ranked and went out in popularity order.',
    )


class RecommendationListSerializer(serializers.Serializer):
    recommendation_id = serializers.CharField(help_text="Send it back with events (and with offset for more pages).")
    scene = serializers.CharField()
    model_version = serializers.CharField(allow_null=True, help_text='"name:version" of the model, null on fallback.')
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=["model", "similar", "complementary", "popular", "recently_viewed", "fallback"],
        help_text="The candidate source that produced the list (the head of the scene's strategy that answered); "
        "fallback: the strategy's sources failed and trending items stand in.",
    )
    strategy = serializers.ListField(child=serializers.CharField(), help_text="The candidate sources, in order.")
    experiment = serializers.DictField(allow_null=True, help_text='{"id", "name"} of the running experiment, or null.')
    variant = serializers.DictField(allow_null=True, help_text='{"id", "name"} of the customer\'s variant, or null.')
    offset = serializers.IntegerField()
    items = RecommendedItemSerializer(many=True)


def _label(request: Request, served: ServedList) -> None:
    # For /metrics and /readyz: the scene and where the list came from (the serving rewrite keeps this).
    label_request(
        request,
        scene=served.scene,
        source=str(served.source),
        fallback_reason=served.fallback_reason or None,
        failure=served.fallback_reason in FAILURE_REASONS,
    )


def _render(served: ServedList) -> Response:
    # Built as plain data: already in the documented shape (RecommendationListSerializer), and running a
    # serializer over every item would cost more than the rest of the hot path's Python.
    data: dict[str, Any] = {
        "recommendation_id": served.recommendation_id,
        "scene": served.scene,
        "model_version": served.model_version,
        "source": str(served.source),
        "strategy": list(served.strategy),
        "experiment": served.experiment,
        "variant": served.variant,
        "offset": served.offset,
        "items": served.page,
    }
    return Response(data)


_EXAMPLE = {
    "recommendation_id": "5f0c1e7a9b2d4c3e8f1a2b3c4d5e6f70",
    "scene": "home",
    "model_version": "recommender:3",
    "source": "model",
    "strategy": ["model", "popular"],
    "experiment": None,
    "variant": None,
    "offset": 0,
    "items": [
        {
            "item": "B00012",
            "title": "Hydrating serum",
            "category": "skin-care",
            "price": 24.9,
            "score": 12.4,
            "position": 1,
            "reasons": [
                {"type": "model", "score": 6.2},
                {
                    "type": "boosted",
                    "rule": 4,
                    "rule_name": "Summer skincare",
                    "mode": "multiply",
                    "weight": 2.0,
                    "before": 6.2,
                    "after": 12.4,
                },
            ],
        },
        {
            "item": "B00099",
            "title": "Gift box",
            "category": "gifts",
            "price": 39.0,
            "score": 0.0,
            "position": 2,
            "reasons": [
                {"type": "pinned", "score": 0.0},
                {"type": "pinned", "rule": 7, "rule_name": "Xmas box", "position": 2},
            ],
        },
    ],
}

# The bounds ListQueryInput enforces, in the schema too (a fuzzer's "valid" data is valid here).
N_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_N}
OFFSET_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_LIST_LENGTH - 1}

_COMMON = [
    OpenApiParameter("n", N_SCHEMA, description=f"Items to return, 1..{MAX_N} (default: the scene's list length)."),
    OpenApiParameter("offset", OFFSET_SCHEMA, description="Skip this many items (>= 0), for later pages."),
    OpenApiParameter(
        "recommendation_id",
        OpenApiTypes.STR,
        description="With offset: the next page of this same list (kept 30 minutes).",
    ),
]


class RecommendationsApi(APIView):
    permission_classes = [HasRecommendScope]

    @extend_schema(
        summary="Recommendations for a customer in a scene",
        description=(
            "The customer's recent history (kept current on every ingested event) is scored by the default "
            "model; the scene's rules (filters, boost/bury, pins) and diversity settings shape the list. An "
            "unknown customer gets the scene's cold-start list. When the model cannot answer in time the "
            "trending list is returned with `source: fallback`, never an error."
        ),
        parameters=[
            OpenApiParameter("customer", OpenApiTypes.STR, description="The shop's customer id (unknown: cold start)."),
            OpenApiParameter("scene", OpenApiTypes.STR, required=True, description="The placement's slug."),
            OpenApiParameter("item", OpenApiTypes.STR, description="The item the customer is looking at."),
            OpenApiParameter("category", OpenApiTypes.STR, description="Category slug: the fallback's category."),
            OpenApiParameter(
                "cart", OpenApiTypes.STR, description="Comma-separated item ids in the cart (the complementary source)."
            ),
            *_COMMON,
        ],
        responses={200: RecommendationListSerializer},
        examples=[OpenApiExample("A list from the model", value=_EXAMPLE, response_only=True)],
        tags=["recommendations"],
    )
    def get(self, request: Request) -> Response:
        served = list_serve(_query(request, ServedEndpoint.RECOMMENDATIONS))
        _label(request, served)
        return _render(served)


class SimilarItemsApi(APIView):
    permission_classes = [HasRecommendScope]

    @extend_schema(
        summary="Items similar to an item",
        description="Nearest items by the model's item embeddings, with the scene's rules when a scene is given. "
        "Falls back to trending in the item's category.",
        parameters=[OpenApiParameter("scene", OpenApiTypes.STR, description="The placement's slug."), *_COMMON],
        responses={200: RecommendationListSerializer},
        examples=[OpenApiExample("Similar items", value={**_EXAMPLE, "scene": "product_detail"}, response_only=True)],
        tags=["recommendations"],
    )
    def get(self, request: Request, shop_id: str) -> Response:
        if len(shop_id) > SHOP_ID_MAX_LENGTH:
            raise ValidationError(f"item must be at most {SHOP_ID_MAX_LENGTH} characters.", field="item")
        served = list_serve(_query(request, ServedEndpoint.SIMILAR, item=shop_id, customer="", cart=[]))
        _label(request, served)
        return _render(served)


class PopularApi(APIView):
    permission_classes = [HasRecommendScope]

    @extend_schema(
        summary="Trending items",
        description="Time-decayed popularity (half-life 7 days) over the category's whole subtree, or overall.",
        parameters=[
            OpenApiParameter("category", OpenApiTypes.STR, description="Category slug (its subtree counts)."),
            OpenApiParameter("n", N_SCHEMA, description=f"Items to return, 1..{MAX_N} (default 10)."),
            OpenApiParameter("offset", OFFSET_SCHEMA, description="Skip this many items (>= 0)."),
        ],
        responses={200: RecommendationListSerializer},
        examples=[
            OpenApiExample(
                "Trending in a category",
                value={**_EXAMPLE, "scene": "", "model_version": None, "source": "popular"},
                response_only=True,
            )
        ],
        tags=["recommendations"],
    )
    def get(self, request: Request) -> Response:
        query = _query(request, ServedEndpoint.POPULAR)
        served = popular_serve(n=query.n or 10, offset=query.offset, category=query.category)
        _label(request, served)
        return _render(served)
