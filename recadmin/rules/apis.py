"""Scenes and business rules over HTTP (API keys with the `manage` scope), so a shop can script
its campaigns. The services validate exactly as the admin does; bad input gets a 400 naming the
field, an unknown scene or rule a 404."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from recadmin.catalog.models import SHOP_ID_MAX_LENGTH
from recadmin.core.auth import HasManageScope
from recadmin.core.errors import ValidationError
from recadmin.core.inputs import validated_input
from recadmin.core.pagination import StableCursorPagination
from recadmin.core.schema import RefusesUnknownFields
from recadmin.rules import selectors, services
from recadmin.rules.models import (
    MAX_LIST_LENGTH,
    BusinessRule,
    FallbackKind,
    FilterMode,
    RankBy,
    RuleKind,
    Scene,
    WeightMode,
)
from recadmin.rules.params import MAX_STRATEGY_LENGTH, STRATEGY_SOURCES, strategy_problem

_INT_LIMIT = 2**31 - 1

# A read-only field in a body ("slug" on a patch) is refused like a typo: nothing would change.
_READ_ONLY = "unknown or read-only field"

ERROR_RESPONSES = {
    400: OpenApiResponse(description="Bad input: `extra.fields` names each offending field."),
    401: OpenApiResponse(description="No or invalid API key."),
    403: OpenApiResponse(description="The key lacks the `manage` scope."),
}


# --- scenes -----------------------------------------------------------------------------------


# What strategy_problem accepts, in the schema too: distinct names of known sources.
@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "enum": list(STRATEGY_SOURCES)},
        "uniqueItems": True,
        "maxItems": MAX_STRATEGY_LENGTH,
    }
)
class _StrategyField(serializers.ListField):
    pass


class SceneFields(RefusesUnknownFields, serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    default_n = serializers.IntegerField(min_value=1, max_value=MAX_LIST_LENGTH, required=False)
    candidate_multiplier = serializers.IntegerField(min_value=1, max_value=50, required=False)
    max_per_category = serializers.IntegerField(min_value=1, max_value=MAX_LIST_LENGTH, required=False, allow_null=True)
    mmr_enabled = serializers.BooleanField(required=False)
    mmr_lambda = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    fallback = serializers.ChoiceField(choices=FallbackKind.choices, required=False)
    rank_by = serializers.ChoiceField(
        choices=RankBy.choices,
        required=False,
        allow_blank=True,
        help_text='The rank stage\'s objective: "" (off), "clicks", "purchases" or "revenue".',
    )
    exclude_purchased_days = serializers.IntegerField(min_value=1, max_value=3650, required=False, allow_null=True)
    exclude_current_item = serializers.BooleanField(required=False)
    enabled = serializers.BooleanField(required=False)
    strategy = _StrategyField(
        child=serializers.CharField(max_length=32),
        required=False,
        max_length=MAX_STRATEGY_LENGTH,
        help_text="Candidate sources in order, from: " + ", ".join(STRATEGY_SOURCES) + ". Empty: the slug's default.",
    )

    def validate_strategy(self, value: list[str]) -> list[str]:
        problem = strategy_problem(value)
        if problem:
            raise serializers.ValidationError(f"The strategy {problem}.")
        return value


class SceneCreateInput(SceneFields):
    slug = serializers.SlugField(max_length=64)


class SceneOutput(serializers.ModelSerializer):
    class Meta:
        model = Scene
        fields = [
            "slug", "name", "description", "default_n", "candidate_multiplier", "max_per_category",
            "mmr_enabled", "mmr_lambda", "fallback", "exclude_purchased_days", "exclude_current_item",
            "enabled", "strategy", "rank_by", "created_at", "updated_at",
        ]  # fmt: skip


SCENE_EXAMPLE = {
    "slug": "home",
    "name": "Home page",
    "description": "Personalised picks on the home page.",
    "default_n": 12,
    "candidate_multiplier": 5,
    "max_per_category": 3,
    "mmr_enabled": True,
    "mmr_lambda": 0.7,
    "fallback": "overall",
    "exclude_purchased_days": 30,
    "exclude_current_item": True,
    "enabled": True,
    "strategy": ["model", "popular"],
}


class SceneCollectionApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        tags=["scenes"],
        operation_id="scenes_list",
        summary="List scenes",
        responses={
            200: inline_serializer("SceneList", fields={"results": SceneOutput(many=True)}),
            **ERROR_RESPONSES,
        },
    )
    def get(self, request: Request) -> Response:
        return Response({"results": SceneOutput(selectors.scene_list(), many=True).data})

    @extend_schema(
        tags=["scenes"],
        summary="Create a scene",
        request=SceneCreateInput,
        responses={201: SceneOutput, 409: OpenApiResponse(description="The slug exists."), **ERROR_RESPONSES},
        examples=[OpenApiExample("Home page", value=SCENE_EXAMPLE, request_only=True)],
    )
    def post(self, request: Request) -> Response:
        data = validated_input(SceneCreateInput, request.data, reason=_READ_ONLY)
        scene = services.scene_create(**data)
        return Response(SceneOutput(scene).data, status=status.HTTP_201_CREATED)


class SceneDetailApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(tags=["scenes"], summary="Get a scene", responses={200: SceneOutput, 404: None, **ERROR_RESPONSES})
    def get(self, request: Request, slug: str) -> Response:
        return Response(SceneOutput(selectors.scene_get(slug)).data)

    @extend_schema(
        tags=["scenes"],
        summary="Change a scene (partial)",
        request=SceneFields,
        responses={200: SceneOutput, 404: None, **ERROR_RESPONSES},
        examples=[
            OpenApiExample(
                "More variety", value={"max_per_category": 2, "mmr_enabled": True, "mmr_lambda": 0.5}, request_only=True
            )
        ],
    )
    def patch(self, request: Request, slug: str) -> Response:
        scene = selectors.scene_get(slug)
        data = validated_input(SceneFields, request.data, partial=True, reason=_READ_ONLY)
        return Response(SceneOutput(services.scene_update(scene=scene, data=data)).data)

    @extend_schema(
        tags=["scenes"],
        summary="Delete a scene (its rules stay, without it)",
        responses={204: None, 404: None, **ERROR_RESPONSES},
    )
    def delete(self, request: Request, slug: str) -> Response:
        services.scene_delete(scene=selectors.scene_get(slug))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- rules ------------------------------------------------------------------------------------


class RuleFields(RefusesUnknownFields, serializers.Serializer):
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=RuleKind.choices)
    condition = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="A condition over item fields (see the examples); required for filter, boost and bury.",
    )
    scenes = serializers.ListField(
        child=serializers.SlugField(max_length=64), required=False, max_length=100, help_text="Scene slugs."
    )
    all_scenes = serializers.BooleanField(required=False)
    filter_mode = serializers.ChoiceField(choices=FilterMode.choices, required=False)
    weight = serializers.FloatField(required=False, allow_null=True)
    weight_mode = serializers.ChoiceField(choices=WeightMode.choices, required=False)
    position = serializers.IntegerField(min_value=1, max_value=1000, required=False, allow_null=True)
    pinned_items = serializers.ListField(
        child=serializers.CharField(max_length=SHOP_ID_MAX_LENGTH),
        required=False,
        max_length=MAX_LIST_LENGTH,
        help_text="Shop ids of the items to pin.",
    )
    valid_from = serializers.DateTimeField(required=False, allow_null=True)
    valid_until = serializers.DateTimeField(required=False, allow_null=True)
    priority = serializers.IntegerField(min_value=-_INT_LIMIT, max_value=_INT_LIMIT, required=False)
    enabled = serializers.BooleanField(required=False)


class RuleOutput(serializers.ModelSerializer):
    scenes = serializers.SerializerMethodField()
    pinned_items = serializers.SerializerMethodField()
    active_now = serializers.SerializerMethodField()

    class Meta:
        model = BusinessRule
        fields = [
            "id", "name", "kind", "condition", "scenes", "all_scenes", "filter_mode", "weight", "weight_mode",
            "position", "pinned_items", "valid_from", "valid_until", "priority", "enabled", "active_now",
            "created_at", "updated_at",
        ]  # fmt: skip

    def get_scenes(self, rule: BusinessRule) -> list[str]:
        return sorted(scene.slug for scene in rule.scenes.all())

    def get_pinned_items(self, rule: BusinessRule) -> list[str]:
        return sorted(item.shop_id for item in rule.pinned_items.all())

    def get_active_now(self, rule: BusinessRule) -> bool:
        now = timezone.now()
        return (
            rule.enabled
            and (rule.valid_from is None or rule.valid_from <= now)
            and (rule.valid_until is None or now < rule.valid_until)
        )


RULE_EXAMPLES = [
    OpenApiExample(
        "Exclude out-of-stock items everywhere",
        request_only=True,
        value={
            "name": "Hide out of stock",
            "kind": "filter",
            "filter_mode": "exclude",
            "all_scenes": True,
            "condition": {"field": "in_stock", "op": "eq", "value": False},
            "priority": 100,
        },
    ),
    OpenApiExample(
        "Boost mid-priced skincare on the home page for a week",
        request_only=True,
        value={
            "name": "Skincare week",
            "kind": "boost",
            "scenes": ["home"],
            "weight": 1.5,
            "weight_mode": "multiply",
            "condition": {
                "all": [
                    {"field": "category", "op": "in_subtree", "value": "skincare"},
                    {"field": "price", "op": "between", "value": [10, 50]},
                ]
            },
            "valid_from": "2026-12-01T00:00:00Z",
            "valid_until": "2026-12-08T00:00:00Z",
        },
    ),
    OpenApiExample(
        "Bury a brand, except its organic line",
        request_only=True,
        value={
            "name": "Less globex",
            "kind": "bury",
            "scenes": ["home", "email"],
            "weight": 0.2,
            "weight_mode": "add",
            "condition": {
                "all": [
                    {"field": "brand", "op": "eq", "value": "globex"},
                    {"not": {"field": "attributes.organic", "op": "eq", "value": True}},
                ]
            },
        },
    ),
    OpenApiExample(
        "Pin two items at positions 1 and 2 in the cart",
        request_only=True,
        value={
            "name": "Gift wrap first",
            "kind": "pin",
            "scenes": ["cart"],
            "position": 1,
            "pinned_items": ["GIFT-1", "GIFT-2"],
        },
    ),
]


RULE_RESPONSE_EXAMPLE = OpenApiExample(
    "A boost as stored",
    response_only=True,
    status_codes=["200", "201"],
    value={
        "id": 12,
        "name": "Skincare week",
        "kind": "boost",
        "condition": {"field": "category", "op": "in_subtree", "value": "skincare"},
        "scenes": ["home"],
        "all_scenes": False,
        "filter_mode": "exclude",
        "weight": 1.5,
        "weight_mode": "multiply",
        "position": None,
        "pinned_items": [],
        "valid_from": "2026-12-01T00:00:00Z",
        "valid_until": "2026-12-08T00:00:00Z",
        "priority": 0,
        "enabled": True,
        "active_now": False,
        "created_at": "2026-11-24T05:00:00Z",
        "updated_at": "2026-11-24T05:00:00Z",
    },
)
BAD_RULE_EXAMPLE = OpenApiExample(
    "A condition that cannot match",
    response_only=True,
    status_codes=["400"],
    value={
        "message": "condition: all[1].value: price min 50 is above max 10, so nothing can match",
        "extra": {"fields": {"condition": ["all[1].value: price min 50 is above max 10, so nothing can match"]}},
    },
)


class RuleCollectionApi(APIView):
    permission_classes = [HasManageScope]
    pagination_class = StableCursorPagination

    @extend_schema(
        tags=["rules"],
        summary="List business rules",
        parameters=[
            OpenApiParameter("kind", str, enum=list(RuleKind.values), required=False),
            OpenApiParameter("scene", str, required=False, description="Rules that apply to this scene slug."),
            OpenApiParameter("enabled", bool, required=False),
            OpenApiParameter("cursor", str, required=False),
            OpenApiParameter("limit", int, required=False, description="Page size (default 100, at most 1000)."),
        ],
        responses={200: RuleOutput(many=True), **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        kind = params.get("kind") or None
        if kind is not None and kind not in RuleKind.values:
            raise ValidationError(f"kind: expected one of {', '.join(RuleKind.values)}.", field="kind")
        enabled_raw = params.get("enabled")
        enabled: bool | None = None
        if enabled_raw not in (None, ""):
            lowered = str(enabled_raw).lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValidationError("enabled: expected true or false.", field="enabled")
            enabled = lowered in ("true", "1")
        rules = selectors.rule_list(kind=kind, scene=params.get("scene") or None, enabled=enabled)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rules, request, view=self)
        return paginator.get_paginated_response(RuleOutput(page, many=True).data)

    @extend_schema(
        tags=["rules"],
        summary="Create a business rule",
        request=RuleFields,
        responses={201: RuleOutput, **ERROR_RESPONSES},
        examples=[*RULE_EXAMPLES, RULE_RESPONSE_EXAMPLE, BAD_RULE_EXAMPLE],
    )
    def post(self, request: Request) -> Response:
        data = validated_input(RuleFields, request.data, reason=_READ_ONLY)
        rule = services.rule_create(**data)
        return Response(RuleOutput(selectors.rule_get(rule.pk)).data, status=status.HTTP_201_CREATED)


class RuleDetailApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(tags=["rules"], summary="Get a rule", responses={200: RuleOutput, 404: None, **ERROR_RESPONSES})
    def get(self, request: Request, rule_id: int) -> Response:
        return Response(RuleOutput(selectors.rule_get(rule_id)).data)

    @extend_schema(
        tags=["rules"],
        summary="Change a rule (partial)",
        request=RuleFields,
        responses={200: RuleOutput, 404: None, **ERROR_RESPONSES},
        examples=[
            OpenApiExample("Pause it", value={"enabled": False}, request_only=True),
            OpenApiExample("Stronger boost", value={"weight": 2.0}, request_only=True),
        ],
    )
    def patch(self, request: Request, rule_id: int) -> Response:
        rule = selectors.rule_get(rule_id)
        data = validated_input(RuleFields, request.data, partial=True, reason=_READ_ONLY)
        services.rule_update(rule=rule, data=data)
        return Response(RuleOutput(selectors.rule_get(rule_id)).data)

    @extend_schema(tags=["rules"], summary="Delete a rule", responses={204: None, 404: None, **ERROR_RESPONSES})
    def delete(self, request: Request, rule_id: int) -> Response:
        services.rule_delete(rule=selectors.rule_get(rule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
