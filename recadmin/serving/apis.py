"""The shop-facing read API: recommendations, similar items, popular items (recommend scope)."""

from __future__ import annotations

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
from recadmin.serving.services import (
    HISTORY_LIMIT,
    ServedList,
    popular_serve,
    recommendations_serve,
    scene_bundle,
    similar_serve,
    validate_n,
    validate_offset,
)
from recadmin.serving.state import hot_state


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
    source = serializers.ChoiceField(choices=["model", "fallback", "popular"])  # type: ignore[assignment]
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
        "offset": served.offset,
        "items": served.page,
    }
    return Response(data)


def _text(params: Any, name: str, *, max_length: int = SHOP_ID_MAX_LENGTH) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_length:
        raise ValidationError(f"{name} must be at most {max_length} characters.", field=name)
    return str(value)


_EXAMPLE = {
    "recommendation_id": "5f0c1e7a9b2d4c3e8f1a2b3c4d5e6f70",
    "scene": "home",
    "model_version": "recommender:3",
    "source": "model",
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
                {"type": "boosted", "rule": 4, "rule_name": "Summer skincare", "mode": "multiply", "weight": 2.0,
                 "before": 6.2, "after": 12.4},
            ],
        },
        {
            "item": "B00099",
            "title": "Gift box",
            "category": "gifts",
            "price": 39.0,
            "score": 0.0,
            "position": 2,
            "reasons": [{"type": "pinned", "score": 0.0}, {"type": "pinned", "rule": 7, "rule_name": "Xmas box",
                                                             "position": 2}],
        },
    ],
}

_COMMON = [
    OpenApiParameter("n", OpenApiTypes.INT, description="Items to return, 1..100 (default: the scene's list length)."),
    OpenApiParameter("offset", OpenApiTypes.INT, description="Skip this many items (>= 0), for later pages."),
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
            *_COMMON,
        ],
        responses={200: RecommendationListSerializer},
        examples=[OpenApiExample("A list from the model", value=_EXAMPLE, response_only=True)],
        tags=["recommendations"],
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        scene = _text(params, "scene", max_length=64)
        customer = _text(params, "customer") or ""
        # A later page is a slice of the cached list: it needs the tokens (scene, default n) but not
        # the history, which only an expired id reads (then on its own, in recommendations_build).
        category = params.get("category")
        state = hot_state(
            customer="" if params.get("recommendation_id") else customer,
            history_limit=HISTORY_LIMIT,
            # Its cached check rides the same round trip (an over-long one is refused below).
            category=category if category and len(category) <= 100 else None,
        )
        bundle = scene_bundle(scene, state=state)
        served = recommendations_serve(
            customer=customer,
            scene=scene,
            n=validate_n(params.get("n"), default=bundle.settings.default_n),
            offset=validate_offset(params.get("offset")),
            item=_text(params, "item"),
            category=_text(params, "category", max_length=100),
            recommendation_id=_text(params, "recommendation_id", max_length=64),
            bundle=bundle,
            state=state,
        )
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
        params = request.query_params
        scene = _text(params, "scene", max_length=64)
        state = hot_state()
        bundle = scene_bundle(scene, required=False, state=state)
        served = similar_serve(
            item=shop_id,
            scene=scene,
            n=validate_n(params.get("n"), default=bundle.settings.default_n),
            offset=validate_offset(params.get("offset")),
            recommendation_id=_text(params, "recommendation_id", max_length=64),
            bundle=bundle,
            state=state,
        )
        _label(request, served)
        return _render(served)


class PopularApi(APIView):
    permission_classes = [HasRecommendScope]

    @extend_schema(
        summary="Trending items",
        description="Time-decayed popularity (half-life 7 days) over the category's whole subtree, or overall.",
        parameters=[
            OpenApiParameter("category", OpenApiTypes.STR, description="Category slug (its subtree counts)."),
            OpenApiParameter("n", OpenApiTypes.INT, description="Items to return, 1..100 (default 10)."),
            OpenApiParameter("offset", OpenApiTypes.INT, description="Skip this many items (>= 0)."),
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
        params = request.query_params
        served = popular_serve(
            n=validate_n(params.get("n")),
            offset=validate_offset(params.get("offset")),
            category=_text(params, "category", max_length=100),
        )
        _label(request, served)
        return _render(served)
