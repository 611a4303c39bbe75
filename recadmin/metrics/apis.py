"""Live metrics over HTTP (API keys with the `manage` scope): rollup rows, per-rule CTR, CTR by
position. Bad input is a 400 whose `extra.fields` names the field."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from recadmin.core.auth import HasManageScope
from recadmin.core.schema import SLUG_PATTERN
from recadmin.metrics import selectors

MAX_RANGE = dt.timedelta(days=366)
DEFAULT_RANGE = dt.timedelta(days=7)
ERROR_RESPONSES = {
    400: OpenApiResponse(description="Bad input: `extra.fields` names the offending parameter."),
    401: OpenApiResponse(description="No or invalid API key."),
    403: OpenApiResponse(description="The key lacks the `manage` scope."),
}


_DIMENSION = "(scene|strategy|model_version|variant)"
# What the input serializers accept, in the schema too (a fuzzer's "valid" data is valid here): a slug,
# and day or hour first, then any of the other dimensions (a repeated one counts once).
SCENE_SCHEMA = {"type": "string", "pattern": SLUG_PATTERN, "maxLength": 64}
GROUP_BY_SCHEMA = {
    "type": "string",
    "pattern": rf"^((day|hour)(,{_DIMENSION})*|{_DIMENSION}(,{_DIMENSION})*)$",
    "default": "day",
}


class RangeInput(serializers.Serializer):
    # `from` is a Python keyword: the field is declared under it below.
    to = serializers.DateTimeField(required=False, help_text="End (exclusive), ISO 8601; default now.")
    scene = serializers.SlugField(required=False, max_length=64, help_text="Only this scene.")

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(
            required=False, help_text="Start (hours the lists were served), ISO 8601; default `to` - 7 days."
        )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        until = attrs.get("to") or timezone.now()
        since = attrs.get("from") or until - DEFAULT_RANGE
        if since >= until:
            raise serializers.ValidationError({"from": "Must be before `to`."})
        if until - since > MAX_RANGE:
            raise serializers.ValidationError({"from": "The range is at most 366 days."})
        attrs["since"], attrs["until"] = since, until
        return attrs


class MetricsInput(RangeInput):
    group_by = serializers.CharField(
        required=False,
        default="day",
        help_text="Comma-separated: day or hour, then any of scene, strategy, model_version, variant.",
    )

    def validate_group_by(self, value: str) -> list[str]:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        unknown = [p for p in parts if p not in selectors.GROUP_BY_CHOICES]
        if unknown:
            raise serializers.ValidationError(
                f"Unknown {', '.join(unknown)}; expected any of {', '.join(selectors.GROUP_BY_CHOICES)}."
            )
        if "day" in parts and "hour" in parts:
            raise serializers.ValidationError("Choose day or hour, not both.")
        # A repeated dimension groups as once: "scene,scene" means what it says.
        return list(dict.fromkeys(parts))


class MetricsRow(serializers.Serializer):
    day = serializers.CharField(required=False)
    hour = serializers.DateTimeField(required=False)
    scene = serializers.CharField(required=False)
    strategy = serializers.CharField(required=False)
    model_version = serializers.IntegerField(required=False, allow_null=True, help_text="ModelVersion id.")
    model_label = serializers.CharField(required=False, help_text="name vN of the version (empty: fallback).")
    variant = serializers.IntegerField(required=False, allow_null=True, help_text="Experiment variant id.")
    variant_name = serializers.CharField(required=False, allow_null=True)
    lists = serializers.IntegerField(help_text="Lists served.")
    impressions = serializers.IntegerField()
    clicks = serializers.IntegerField()
    ctr = serializers.FloatField(allow_null=True)
    add_to_carts = serializers.IntegerField()
    purchases = serializers.IntegerField()
    conversion_rate = serializers.FloatField(allow_null=True, help_text="Purchases per list served.")
    revenue = serializers.FloatField()
    revenue_per_1000_impressions = serializers.FloatField(allow_null=True)
    fallback_lists = serializers.IntegerField()
    fallback_share = serializers.FloatField(allow_null=True)
    items_served = serializers.IntegerField(allow_null=True, help_text="Distinct items served.")
    coverage = serializers.FloatField(allow_null=True, help_text="Distinct items served / active items.")
    direct_attributions = serializers.IntegerField(help_text="Events carrying the list's recommendation_id.")
    window_attributions = serializers.IntegerField(help_text="Events attributed by the click window.")


def _range_parameters() -> list[OpenApiParameter]:
    return [
        OpenApiParameter("from", OpenApiTypes.DATETIME, description="Start, ISO 8601 (default: 7 days before `to`)."),
        OpenApiParameter("to", OpenApiTypes.DATETIME, description="End, exclusive, ISO 8601 (default: now)."),
        OpenApiParameter("scene", SCENE_SCHEMA, description="Only this scene (its slug)."),
    ]


def _validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class MetricsApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        operation_id="metrics_list",
        summary="Live metrics",
        description=(
            "Scope `manage`. Rollups of served lists and the events attributed to them, summed over the "
            "hours the lists were served in [from, to) and grouped by `group_by`. Events count for a list "
            "directly (they carry its recommendation_id) or by the attribution window (an add-to-cart or "
            "purchase after the customer's click on the item); `direct_attributions` and "
            "`window_attributions` say how many of each. Refreshed every minute."
        ),
        parameters=[
            *_range_parameters(),
            OpenApiParameter(
                "group_by",
                GROUP_BY_SCHEMA,
                description="day|hour, and any of scene, strategy, model_version, "
                "variant; comma-separated (default day).",
            ),
        ],
        responses={200: inline_serializer("MetricsRows", {"rows": MetricsRow(many=True)}), **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        data = _validated(MetricsInput, request)
        rows = selectors.metrics_rows(
            since=data["since"], until=data["until"], scene=data.get("scene"), group_by=data["group_by"]
        )
        return Response({"rows": MetricsRow(rows, many=True).data})


class RuleRow(serializers.Serializer):
    rule = serializers.IntegerField()
    name = serializers.CharField(allow_null=True)
    lists = serializers.IntegerField(help_text="Lists in which the rule boosted or pinned an item.")
    impressions = serializers.IntegerField(help_text="Impressions of the items it boosted or pinned.")
    clicks = serializers.IntegerField()
    ctr = serializers.FloatField(allow_null=True)
    other_impressions = serializers.IntegerField(help_text="The other items of the same lists.")
    other_clicks = serializers.IntegerField()
    other_ctr = serializers.FloatField(allow_null=True)
    ctr_lift = serializers.FloatField(allow_null=True, help_text="ctr / other_ctr - 1.")


class MetricsRulesApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        operation_id="metrics_rules",
        summary="CTR per rule",
        description="Scope `manage`. Per rule: the CTR of the items it boosted or pinned against the CTR "
        "of the other items of the same lists.",
        parameters=_range_parameters(),
        responses={200: inline_serializer("MetricsRuleRows", {"rows": RuleRow(many=True)}), **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        data = _validated(RangeInput, request)
        rows = selectors.rule_rows(since=data["since"], until=data["until"], scene=data.get("scene"))
        return Response({"rows": RuleRow(rows, many=True).data})


class PositionRow(serializers.Serializer):
    scene = serializers.CharField()
    position = serializers.IntegerField(help_text="0 is the top of the list.")
    impressions = serializers.IntegerField()
    clicks = serializers.IntegerField()
    ctr = serializers.FloatField(allow_null=True)


class MetricsPositionsApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        operation_id="metrics_positions",
        summary="CTR by position",
        description="Scope `manage`. Per scene and position: impressions, clicks and CTR (the position-bias curve).",
        parameters=_range_parameters(),
        responses={
            200: inline_serializer("MetricsPositionRows", {"rows": PositionRow(many=True)}),
            **ERROR_RESPONSES,
        },
    )
    def get(self, request: Request) -> Response:
        data = _validated(RangeInput, request)
        rows = selectors.position_rows(since=data["since"], until=data["until"], scene=data.get("scene"))
        return Response({"rows": PositionRow(rows, many=True).data})
