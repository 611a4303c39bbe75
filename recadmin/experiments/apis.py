"""Experiments over HTTP (API keys with the `manage` scope): create, list, get, start, stop, report.

Bad input is a 400 whose `extra.fields` names each field (`variants[2].model_version`, `scenes`...);
an unknown experiment a 404; starting or stopping in the wrong state a 409."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from recadmin.core.auth import HasManageScope
from recadmin.core.errors import FieldErrors, ValidationError
from recadmin.core.pagination import StableCursorPagination
from recadmin.core.schema import RefusesUnknownFields
from recadmin.experiments import selectors, services
from recadmin.experiments.models import AllocationKind, Experiment, ExperimentStatus, PrimaryMetric
from recadmin.experiments.params import MAX_VARIANTS, VARIANT_FIELDS

ERROR_RESPONSES = {
    400: OpenApiResponse(description="Bad input: `extra.fields` names each offending field."),
    401: OpenApiResponse(description="No or invalid API key."),
    403: OpenApiResponse(description="The key lacks the `manage` scope."),
}
NOT_FOUND = {404: OpenApiResponse(description="Unknown experiment.")}
CONFLICT = {409: OpenApiResponse(description="The experiment is not in a state that allows this.")}

EXPERIMENT_EXAMPLE = {
    "name": "sasrec v4 vs popular",
    "scenes": ["home"],
    "primary_metric": "ctr",
    "allocation": "fixed",
    "variants": [
        {"name": "control", "weight": 50},
        {"name": "v4", "weight": 50, "model_version": 4},
        {"name": "popular", "weight": 0, "strategy": ["popular"]},
        {"name": "no-mmr", "weight": 0, "scene_settings": {"mmr_enabled": False}},
    ],
}


# --- input -----------------------------------------------------------------------------------------


class VariantInput(RefusesUnknownFields, serializers.Serializer):
    name = serializers.CharField(max_length=64)
    weight = serializers.FloatField(min_value=0, help_text="Relative share of customers; 0 keeps it out of traffic.")
    model_version = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="A version number of the recommender model."
    )
    strategy = serializers.ListField(
        child=serializers.CharField(max_length=32),
        required=False,
        allow_null=True,
        help_text="Candidate sources in order: model, similar, complementary, popular, recently_viewed.",
    )
    scene_settings = serializers.DictField(
        required=False,
        allow_null=True,
        help_text="Scene fields to override: default_n, candidate_multiplier, max_per_category, mmr_enabled, "
        "mmr_lambda, fallback, exclude_purchased_days, exclude_current_item.",
    )


class GuardrailsInput(RefusesUnknownFields, serializers.Serializer):
    fallback_share_max = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    p95_latency_ms_max = serializers.IntegerField(required=False, allow_null=True, min_value=1)


class ExperimentCreateInput(RefusesUnknownFields, serializers.Serializer):
    name = serializers.CharField(max_length=200)
    hypothesis = serializers.CharField(required=False, allow_blank=True)
    scenes = serializers.ListField(child=serializers.SlugField(max_length=64), min_length=1, max_length=100)
    primary_metric = serializers.ChoiceField(choices=PrimaryMetric.choices, required=False)
    allocation = serializers.ChoiceField(choices=AllocationKind.choices, required=False)
    variants = serializers.ListField(
        child=VariantInput(),
        min_length=2,
        max_length=MAX_VARIANTS,
        help_text="The first is the control. Each names at most one of model_version, strategy, scene_settings; "
        "none means the scene as it is (an A/A test).",
    )
    guardrails = GuardrailsInput(required=False)
    minimum_sample = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="Customers per variant."
    )
    thompson_floor = serializers.FloatField(required=False, min_value=0, max_value=0.5)
    status = serializers.ChoiceField(
        choices=[ExperimentStatus.DRAFT, ExperimentStatus.RUNNING],
        required=False,
        help_text="'running' starts it at once (default: draft).",
    )


def _validated_create(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError("The body must be a JSON object.", field="body")
    # DRF drops unknown keys silently; a typo ("modle_version") would then look accepted and the
    # variant would silently be the scene as it is, so name it instead.
    errors = FieldErrors()
    errors.add_unknown(data, ExperimentCreateInput().fields)
    if isinstance(data.get("variants"), list):
        for index, variant in enumerate(data["variants"]):
            errors.add_unknown(variant, VARIANT_FIELDS, prefix=f"variants[{index}].")
    errors.add_unknown(data.get("guardrails"), services.GUARDRAIL_FIELDS, prefix="guardrails.")
    errors.raise_if_any()
    serializer = ExperimentCreateInput(data=data)
    serializer.is_valid(raise_exception=True)
    validated = dict(serializer.validated_data)
    # Keep what the client sent for the variants (the service validates them strictly and names the
    # field); the serializer has checked the types.
    validated["variants"] = [
        {key: value for key, value in dict(v).items() if key in VARIANT_FIELDS} for v in validated["variants"]
    ]
    if "guardrails" in validated:
        validated["guardrails"] = dict(validated["guardrails"])
    return validated


# --- output ----------------------------------------------------------------------------------------


class VariantOutput(serializers.Serializer):
    name = serializers.CharField()
    weight = serializers.FloatField(help_text="As configured.")
    model_version = serializers.IntegerField(allow_null=True, source="model_version.version", default=None)
    strategy = serializers.ListField(child=serializers.CharField(), allow_null=True)
    scene_settings = serializers.DictField(allow_null=True)
    change = serializers.CharField(help_text="What the variant changes, in words.")


class GuardrailsOutput(serializers.Serializer):
    fallback_share_max = serializers.FloatField(allow_null=True)
    p95_latency_ms_max = serializers.IntegerField(allow_null=True)


class ExperimentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    hypothesis = serializers.CharField()
    scenes = serializers.SerializerMethodField()
    primary_metric = serializers.ChoiceField(choices=PrimaryMetric.choices)
    allocation = serializers.ChoiceField(choices=AllocationKind.choices)
    thompson_floor = serializers.FloatField()
    guardrails = serializers.SerializerMethodField()
    minimum_sample = serializers.IntegerField(allow_null=True)
    status = serializers.ChoiceField(choices=ExperimentStatus.choices)
    variants = serializers.SerializerMethodField()
    weights = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    promoted_variant = serializers.CharField(allow_null=True, source="promoted_variant.name", default=None)
    note = serializers.CharField()

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_scenes(self, experiment: Experiment) -> list[str]:
        return sorted(scene.slug for scene in experiment.scenes.all())

    @extend_schema_field(GuardrailsOutput)
    def get_guardrails(self, experiment: Experiment) -> dict[str, Any]:
        return {
            "fallback_share_max": experiment.fallback_share_max,
            "p95_latency_ms_max": experiment.p95_latency_ms_max,
        }

    @extend_schema_field(VariantOutput(many=True))
    def get_variants(self, experiment: Experiment) -> list[dict[str, Any]]:
        return list(VariantOutput(selectors.experiment_variants(experiment), many=True).data)

    @extend_schema_field(serializers.DictField(child=serializers.FloatField(), help_text="Variant -> share now."))
    def get_weights(self, experiment: Experiment) -> dict[str, float]:
        return selectors.experiment_current_weights(experiment)


class ReportVariantOutput(serializers.Serializer):
    name = serializers.CharField()
    change = serializers.CharField()
    is_control = serializers.BooleanField()
    configured_weight = serializers.FloatField()
    weight = serializers.FloatField(help_text="Share of customers in force now.")
    customers = serializers.IntegerField()
    exposures = serializers.IntegerField()
    lists = serializers.IntegerField()
    impressions = serializers.IntegerField()
    clicks = serializers.IntegerField()
    ctr = serializers.FloatField(allow_null=True, help_text="Clicks / impressions.")
    add_to_carts = serializers.IntegerField()
    purchases = serializers.IntegerField()
    conversion_rate = serializers.FloatField(allow_null=True, help_text="Purchases / lists served.")
    revenue = serializers.FloatField()
    revenue_per_customer = serializers.FloatField(allow_null=True)
    fallback_share = serializers.FloatField(allow_null=True)
    pages = serializers.IntegerField(help_text="Served pages in the experiment (what the latency is over).")
    p95_latency_ms = serializers.FloatField(allow_null=True, help_text="95th percentile of the pages' latency.")
    lift = serializers.FloatField(allow_null=True, help_text="Primary metric, relative to the control (0.05 = +5 %).")
    ci_low = serializers.FloatField(allow_null=True, help_text="95 % interval of the lift (Fieller).")
    ci_high = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True, help_text="Fixed-horizon, two-sided.")
    significant = serializers.BooleanField(allow_null=True)
    sequential_ci_low = serializers.FloatField(
        allow_null=True, help_text="Always-valid 95 % interval of the lift: safe to read at every look."
    )
    sequential_ci_high = serializers.FloatField(allow_null=True)
    sequential_p_value = serializers.FloatField(allow_null=True)
    sequential_significant = serializers.BooleanField(allow_null=True)
    customers_needed = serializers.IntegerField(
        allow_null=True, help_text="Customers per variant to detect a 5 % lift (80 % power, observed variance)."
    )


class AllocationPointOutput(serializers.Serializer):
    at = serializers.DateTimeField()
    reason = serializers.CharField()
    weights = serializers.DictField(child=serializers.FloatField())
    probability_best = serializers.DictField(child=serializers.FloatField(), allow_null=True)


class GuardrailVariantOutput(serializers.Serializer):
    name = serializers.CharField()
    pages = serializers.IntegerField()
    p95_latency_ms = serializers.FloatField(allow_null=True)
    p95_latency_passed = serializers.BooleanField(
        allow_null=True, help_text="Null: no latency guardrail, or fewer pages than `minimum_pages`."
    )
    lists = serializers.IntegerField()
    fallback_share = serializers.FloatField(allow_null=True)
    fallback_share_passed = serializers.BooleanField(
        allow_null=True, help_text="Null: no fallback guardrail, or fewer lists than `minimum_pages`."
    )
    failures = serializers.ListField(child=serializers.CharField(), help_text="The guardrails it fails, in words.")


class ReportGuardrailsOutput(GuardrailsOutput):
    minimum_pages = serializers.IntegerField(help_text="A variant is judged once it has this many pages (lists).")
    fallback_share_exceeded = serializers.ListField(child=serializers.CharField())
    p95_latency_exceeded = serializers.ListField(child=serializers.CharField())
    latency_note = serializers.CharField()
    variants = GuardrailVariantOutput(many=True)


class ReportOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=ExperimentStatus.choices)
    allocation = serializers.ChoiceField(choices=AllocationKind.choices)
    primary_metric = serializers.ChoiceField(choices=PrimaryMetric.choices)
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    minimum_sample = serializers.IntegerField(allow_null=True)
    alpha = serializers.FloatField()
    sequential_tuning_n = serializers.FloatField()
    mde = serializers.FloatField()
    control = serializers.CharField(allow_null=True)
    variants = ReportVariantOutput(many=True)
    srm_p_value = serializers.FloatField(
        allow_null=True,
        help_text="Chi-square of customers per variant vs weights (Thompson: vs the allocation in force at "
        "each customer's first exposure).",
    )
    srm_flag = serializers.BooleanField(help_text="True below 0.001: the split is broken.")
    srm_note = serializers.CharField()
    srm_customers = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Customers per variant the test counts (Thompson: each once, in their first variant).",
    )
    srm_expected = serializers.DictField(
        child=serializers.FloatField(), allow_null=True, help_text="Customers expected per variant."
    )
    guardrails = ReportGuardrailsOutput()
    verdict = serializers.CharField()
    allocation_history = AllocationPointOutput(many=True)


# --- views -----------------------------------------------------------------------------------------


def _status_param(request: Request) -> str | None:
    value = request.query_params.get("status") or None
    if value is not None and value not in ExperimentStatus.values:
        raise ValidationError(f"status: expected one of {', '.join(ExperimentStatus.values)}.", field="status")
    return value


class ExperimentCollectionApi(APIView):
    permission_classes = [HasManageScope]
    pagination_class = StableCursorPagination

    @extend_schema(
        tags=["experiments"],
        summary="List experiments",
        parameters=[
            OpenApiParameter("status", str, enum=list(ExperimentStatus.values), required=False),
            OpenApiParameter("scene", str, required=False, description="Experiments on this scene slug."),
            OpenApiParameter("cursor", str, required=False),
            OpenApiParameter("limit", int, required=False, description="Page size (default 100, at most 1000)."),
        ],
        responses={200: ExperimentOutput(many=True), **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        experiments = selectors.experiment_list(
            status=_status_param(request), scene=request.query_params.get("scene") or None
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(experiments, request, view=self)
        return paginator.get_paginated_response(ExperimentOutput(page, many=True).data)

    @extend_schema(
        tags=["experiments"],
        summary="Create an experiment",
        description="The first variant is the control. A variant names at most one of `model_version`, "
        "`strategy`, `scene_settings`; none means the scene as it is. `status: running` starts it at once.",
        request=ExperimentCreateInput,
        responses={201: ExperimentOutput, **ERROR_RESPONSES},
        examples=[
            OpenApiExample("A model against popularity", value=EXPERIMENT_EXAMPLE, request_only=True),
            OpenApiExample(
                "An A/A test",
                value={
                    "name": "A/A on home",
                    "scenes": ["home"],
                    "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}],
                    "minimum_sample": 5000,
                },
                request_only=True,
            ),
            OpenApiExample(
                "Two variants naming two changes",
                status_codes=["400"],
                response_only=True,
                value={
                    "message": "variants[1]: a variant changes at most one thing: it names model_version and strategy",
                    "extra": {
                        "fields": {
                            "variants[1]": ["a variant changes at most one thing: it names model_version and strategy"]
                        }
                    },
                },
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        data = _validated_create(request.data)
        experiment = services.experiment_create(**data)
        return Response(ExperimentOutput(selectors.experiment_get(experiment.pk)).data, status=status.HTTP_201_CREATED)


class ExperimentDetailApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        tags=["experiments"],
        summary="Get an experiment",
        responses={200: ExperimentOutput, **NOT_FOUND, **ERROR_RESPONSES},
    )
    def get(self, request: Request, experiment_id: int) -> Response:
        return Response(ExperimentOutput(selectors.experiment_get(experiment_id)).data)


class ExperimentStartApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        tags=["experiments"],
        summary="Start a draft experiment",
        description="400 naming `scenes` when one of its scenes already runs an experiment.",
        request=None,
        responses={200: ExperimentOutput, **NOT_FOUND, **CONFLICT, **ERROR_RESPONSES},
    )
    def post(self, request: Request, experiment_id: int) -> Response:
        experiment = services.experiment_start(experiment=selectors.experiment_get(experiment_id))
        return Response(ExperimentOutput(selectors.experiment_get(experiment.pk)).data)


class ExperimentStopApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        tags=["experiments"],
        summary="Stop a running experiment",
        request=None,
        responses={200: ExperimentOutput, **NOT_FOUND, **CONFLICT, **ERROR_RESPONSES},
    )
    def post(self, request: Request, experiment_id: int) -> Response:
        experiment = services.experiment_stop(experiment=selectors.experiment_get(experiment_id))
        return Response(ExperimentOutput(selectors.experiment_get(experiment.pk)).data)


class ExperimentReportApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        tags=["experiments"],
        summary="The experiment's report",
        description="Per variant: customers, lists, impressions, clicks, ctr, purchases, conversion_rate, "
        "revenue_per_customer. For each variant after the first (the control), on the primary metric, with "
        "the customer as the unit of analysis: `lift` with its 95 % interval (`ci_low`, `ci_high`) and "
        "`p_value`; the always-valid interval (`sequential_ci_low`, `sequential_ci_high`) that daily looks "
        "do not invalidate; `customers_needed` for a 5 % lift. Then `srm_p_value` (flagged below 0.001), "
        "the `verdict` in words and the `allocation_history`.",
        responses={200: ReportOutput, **NOT_FOUND, **ERROR_RESPONSES},
    )
    def get(self, request: Request, experiment_id: int) -> Response:
        report = selectors.experiment_report(selectors.experiment_get(experiment_id))
        return Response(ReportOutput(report).data)
