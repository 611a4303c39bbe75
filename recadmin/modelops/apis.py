"""Model management API (manage scope): versions, training runs, promote, roll back, retire, scale.

Thin views over the same services the admin actions call.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from recadmin.core.auth import HasManageScope
from recadmin.core.errors import NotFound, ValidationError
from recadmin.core.inputs import validated_input
from recadmin.core.pagination import StableCursorPagination
from recadmin.modelops.models import ModelKind, ModelVersion, TrainingRun, TrainingRunStatus
from recadmin.modelops.selectors import (
    RuntimeVersion,
    model_versions_with_runtime,
    torchserve_unloaded_recent,
    training_run_get,
    training_run_list,
)
from recadmin.modelops.services import (
    MAX_WORKERS,
    MODEL_NAME_MAX_LENGTH,
    MODEL_NAME_PATTERN,
    PARAM_ALIASES,
    PARAM_SPECS,
    PIPELINE_OPTIONS,
    model_version_lookup,
    model_version_promote,
    model_version_retire,
    model_version_rollback,
    model_version_scale,
    training_run_create,
)

TAGS = ["models"]


def _version_data(version: ModelVersion, runtime: RuntimeVersion | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": version.name,
        "version": version.version,
        "kind": version.kind,
        "status": version.status,
        "params": version.params,
        "valid_metrics": version.valid_metrics,
        "test_metrics": version.test_metrics,
        "num_events": version.num_events,
        "num_users": version.num_users,
        "num_items": version.num_items,
        "sha256": version.sha256,
        "workers": version.workers,
        "training_run": version.training_run_id,
        "created_at": version.created_at,
        "promoted_at": version.promoted_at,
        "note": version.note,
    }
    if runtime is not None:
        data["torchserve"] = {
            "loaded": runtime.loaded,
            "is_default": runtime.is_torchserve_default,
            "workers_ready": runtime.workers_ready,
            "workers_total": runtime.workers_total,
        }
    return data


class ModelVersionOutputSerializer(serializers.Serializer):
    class TorchServeStateSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ModelVersionRuntime"

        loaded = serializers.BooleanField()
        is_default = serializers.BooleanField()
        workers_ready = serializers.IntegerField()
        workers_total = serializers.IntegerField()

    name = serializers.CharField()
    version = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ModelKind.choices)
    status = serializers.CharField(help_text="built, registered, default, retired or failed")
    params = serializers.DictField()
    valid_metrics = serializers.DictField(child=serializers.FloatField(), help_text="e.g. NDCG@10, HR@10, MRR")
    test_metrics = serializers.DictField(child=serializers.FloatField())
    num_events = serializers.IntegerField()
    num_users = serializers.IntegerField()
    num_items = serializers.IntegerField()
    sha256 = serializers.CharField()
    workers = serializers.IntegerField()
    training_run = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    promoted_at = serializers.DateTimeField(allow_null=True)
    note = serializers.CharField()
    torchserve = TorchServeStateSerializer(required=False, help_text="What TorchServe reports (list only).")


_VERSION_EXAMPLE = {
    "name": "recommender",
    "version": 3,
    "kind": "sasrec",
    "status": "default",
    "params": {"epochs": 20},
    "valid_metrics": {"NDCG@10": 0.051, "HR@10": 0.089},
    "test_metrics": {"NDCG@10": 0.047, "HR@10": 0.083},
    "num_events": 198502,
    "num_users": 22363,
    "num_items": 12101,
    "sha256": "5f1c…",
    "workers": 1,
    "training_run": 7,
    "created_at": "2026-11-24T03:12:00Z",
    "promoted_at": "2026-11-24T03:14:02Z",
    "note": "Promoted: validation NDCG@10 0.0510 >= 0.0490.",
}


class ModelListApi(APIView):
    permission_classes = [HasManageScope]

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ModelList"

        class TorchServeSerializer(serializers.Serializer):
            class Meta:
                ref_name = "TorchServeState"

            reachable = serializers.BooleanField()
            error = serializers.CharField(allow_blank=True)
            unknown_versions = serializers.ListField(
                child=serializers.DictField(),
                help_text="Loaded in TorchServe although the registry does not serve them: unknown to it "
                "(registry_status null) or not live there (e.g. built by a run that died while registering).",
            )
            unloaded_versions = serializers.ListField(
                child=serializers.DictField(),
                help_text='Versions the periodic sync unloaded from TorchServe lately, newest first: {"version", '
                '"reason", "at"}.',
            )

        torchserve = TorchServeSerializer()
        versions = ModelVersionOutputSerializer(many=True)

    @extend_schema(
        tags=TAGS,
        summary="Model versions with status, metrics, and what TorchServe has loaded",
        parameters=[OpenApiParameter("name", OpenApiTypes.STR, description="Only this model name")],
        responses={200: OutputSerializer},
        examples=[
            OpenApiExample(
                "Versions",
                value={
                    "torchserve": {"reachable": True, "error": "", "unknown_versions": [], "unloaded_versions": []},
                    "versions": [
                        {
                            **_VERSION_EXAMPLE,
                            "torchserve": {"loaded": True, "is_default": True, "workers_ready": 1, "workers_total": 1},
                        }
                    ],
                },
                response_only=True,
            )
        ],
    )
    def get(self, request: Request) -> Response:
        name = request.query_params.get("name") or None
        view = model_versions_with_runtime(name=name)
        data = {
            "torchserve": {
                "reachable": view.torchserve_reachable,
                "error": view.torchserve_error,
                "unknown_versions": view.unknown_in_torchserve,
                "unloaded_versions": torchserve_unloaded_recent(),
            },
            "versions": [_version_data(entry.model_version, entry) for entry in view.versions],
        }
        return Response(self.OutputSerializer(data).data)


class TrainingRunOutputSerializer(serializers.ModelSerializer):
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "model_name",
            "kind",
            "params",
            "status",
            "progress",
            "stage",
            "failed_stage",
            "error",
            "gate_decision",
            "metrics",
            "log_tail",
            "trigger",
            "created_at",
            "started_at",
            "finished_at",
            "model_version",
        ]

    def get_model_version(self, run: TrainingRun) -> int | None:
        # .all() so that a list's prefetch answers it without a query per run.
        versions = [v.version for v in run.model_versions.all()]
        return max(versions) if versions else None


class TrainingRunListOutputSerializer(TrainingRunOutputSerializer):
    """A run in a list: everything but its log tail (up to 20 kB; GET the run for it)."""

    class Meta(TrainingRunOutputSerializer.Meta):
        fields = [f for f in TrainingRunOutputSerializer.Meta.fields if f != "log_tail"]


class TrainingRunPagination(StableCursorPagination):
    page_size = 50
    ordering = ("-created_at", "-id")  # type: ignore[assignment]  # DRF accepts a tuple


_RUN_EXAMPLE = {
    "id": 7,
    "model_name": "recommender",
    "kind": "sasrec",
    "params": {"epochs": 20},
    "status": "running",
    "progress": 41.5,
    "stage": "training epoch 9/20",
    "failed_stage": "",
    "error": "",
    "gate_decision": "",
    "metrics": {},
    "log_tail": "03:10:02 INFO epoch 8: valid ndcg@10 0.0462",
    "trigger": "api",
    "created_at": "2026-11-24T03:00:00Z",
    "started_at": "2026-11-24T03:00:01Z",
    "finished_at": None,
    "model_version": None,
}


_STATUS_CHOICE = "(?:" + "|".join(TrainingRunStatus.values) + ")"
# What _statuses_param takes (it also forgives spaces and empty parts): one or more, comma-separated.
_STATUSES_PATTERN = f"^{_STATUS_CHOICE}(?:,{_STATUS_CHOICE})*$"


def _statuses_param(request: Request) -> list[str]:
    raw = request.query_params.get("status") or ""
    statuses = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [s for s in statuses if s not in TrainingRunStatus.values]
    if unknown:
        raise ValidationError(
            f"status: unknown {', '.join(unknown)}; expected one or more (comma-separated) of "
            f"{', '.join(TrainingRunStatus.values)}.",
            field="status",
        )
    return statuses


def _kind_param(request: Request) -> str | None:
    kind = request.query_params.get("kind") or None
    if kind is not None and kind not in ModelKind.values:
        raise ValidationError(f"kind: expected one of {', '.join(ModelKind.values)}.", field="kind")
    return kind


class TrainingRunCollectionApi(APIView):
    permission_classes = [HasManageScope]
    pagination_class = TrainingRunPagination

    @extend_schema(
        tags=TAGS,
        operation_id="training_runs_list",
        summary="List training runs",
        description=(
            "Newest first, with status, progress, stage, metrics and the version each run built (the log tail "
            "is left out: GET /api/v1/training-runs/{id} has it). Cursor pagination: follow `next` "
            "(`cursor`, `limit` up to 1000, default 50)."
        ),
        parameters=[
            OpenApiParameter(
                "status",
                str,
                required=False,
                pattern=_STATUSES_PATTERN,
                description=f"One or more, comma-separated: {', '.join(TrainingRunStatus.values)}.",
                examples=[OpenApiExample("Active runs", value="queued,running")],
            ),
            OpenApiParameter("kind", str, enum=list(ModelKind.values), required=False),
            OpenApiParameter("cursor", str, required=False, description="The `next` or `previous` link's cursor."),
            OpenApiParameter("limit", int, required=False, description="Page size (default 50, at most 1000)."),
        ],
        responses={200: TrainingRunListOutputSerializer(many=True)},
        examples=[
            OpenApiExample(
                "A page",
                # One row: drf-spectacular puts it in the page envelope itself.
                value={k: v for k, v in _RUN_EXAMPLE.items() if k != "log_tail"},
                response_only=True,
            )
        ],
    )
    def get(self, request: Request) -> Response:
        runs = training_run_list(statuses=_statuses_param(request), kind=_kind_param(request)).prefetch_related(
            "model_versions"
        )
        paginator = self.pagination_class()
        page: Any = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response(TrainingRunListOutputSerializer(page, many=True).data)

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TrainingRunCreate"

        kind = serializers.ChoiceField(choices=ModelKind.choices, default=ModelKind.SASREC)
        params = serializers.DictField(
            required=False, default=dict, help_text='Model parameters, e.g. {"epochs": 20}; unknown ones are refused.'
        )
        model_name = serializers.CharField(required=False, allow_blank=True, max_length=MODEL_NAME_MAX_LENGTH)

    @extend_schema(
        tags=TAGS,
        summary="Start a training run",
        description=(
            "Records a run and starts it in the background (a Celery worker, or in-process without Redis). "
            "Poll GET /api/v1/training-runs/{id} for progress. The new version becomes the default only if "
            "it passes the promotion gate."
        ),
        request=InputSerializer,
        responses={201: TrainingRunOutputSerializer},
        examples=[
            OpenApiExample("Start", value={"kind": "sasrec", "params": {"epochs": 20}}, request_only=True),
            OpenApiExample("Started", value={**_RUN_EXAMPLE, "status": "queued", "progress": 0}, response_only=True),
        ],
    )
    def post(self, request: Request) -> Response:
        data = validated_input(self.InputSerializer, request.data)
        run = training_run_create(
            kind=data["kind"],
            params=data.get("params") or {},
            model_name=data.get("model_name") or None,
            trigger="api",
        )
        run.refresh_from_db()
        return Response(TrainingRunOutputSerializer(run).data, status=status.HTTP_201_CREATED)


def _param_schema(kind_of: Any, low: Any, high: Any) -> dict[str, Any]:
    # null (and "") leave a parameter at its default: the service skips them.
    if kind_of is bool:
        return {"type": ["boolean", "null"]}
    if kind_of is str:
        return {"type": ["string", "null"], "enum": [*low, None]}
    return {"type": ["integer" if kind_of is int else "number", "null"], "minimum": low, "maximum": high}


def training_run_request_schema() -> dict[str, Any]:
    """The body POST /api/v1/training-runs accepts, from the service's own rules: one shape per model
    kind, each with the parameters that kind takes (PARAM_SPECS, its aliases, PIPELINE_OPTIONS) and
    their bounds; any other parameter is refused. Without `kind` the body is a SASRec run's."""
    shapes = []
    for kind in ModelKind.values:
        specs = {**PARAM_SPECS.get(kind, {}), **PIPELINE_OPTIONS}
        params = {name: _param_schema(*spec) for name, spec in specs.items()}
        params.update({alias: params[name] for alias, name in PARAM_ALIASES.items() if name in specs})
        shapes.append(
            {
                "type": "object",
                "title": kind,
                "properties": {
                    # A ModelKind, this one (allOf: drf-spectacular's enum hook would merge bare enums).
                    "kind": {"allOf": [{"$ref": "#/components/schemas/ModelKindEnum"}, {"enum": [kind]}]},
                    "params": {
                        "type": "object",
                        "properties": params,
                        "additionalProperties": False,
                        "description": f"The parameters of a {kind} run; unknown ones are refused.",
                    },
                    "model_name": {
                        "type": "string",
                        "maxLength": MODEL_NAME_MAX_LENGTH,
                        # Empty: the kind's default name.
                        "pattern": f"^(?:{MODEL_NAME_PATTERN.strip('^$')})?$",
                        "description": "Starts with a letter; letters, digits, '_' and single '-'. "
                        "Empty or absent: the default model name of the kind.",
                    },
                },
                "additionalProperties": False,  # the view refuses unknown members
                **({} if kind == ModelKind.SASREC else {"required": ["kind"]}),
            }
        )
    return {"oneOf": shapes}


class _TrainingRunCreateSchema(OpenApiSerializerExtension):
    """The request schema of the training-run input: the kind decides which params are valid."""

    target_class = TrainingRunCollectionApi.InputSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        if direction == "request":
            return training_run_request_schema()
        return auto_schema._map_basic_serializer(self.target, direction)


class TrainingRunDetailApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        tags=TAGS,
        summary="A training run: status, progress, metrics",
        responses={200: TrainingRunOutputSerializer},
        examples=[OpenApiExample("Running", value=_RUN_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request, run_id: int) -> Response:
        run = training_run_get(run_id=run_id)
        if run is None:
            raise NotFound(f"Training run {run_id} does not exist.")
        return Response(TrainingRunOutputSerializer(run).data)


# Example identifiers for the version operations: a fuzzer (and a reader) reaches their logic with a
# real model name and version rather than random strings that can only 404.
_NAME_PARAMETER = OpenApiParameter(
    "name",
    str,
    OpenApiParameter.PATH,
    description="The model name versions are registered under (RECOMMENDER_MODEL_NAME).",
    examples=[OpenApiExample("the recommender", value="recommender")],
)
_VERSION_PARAMETERS = [
    _NAME_PARAMETER,
    OpenApiParameter(
        "version",
        int,
        OpenApiParameter.PATH,
        description="The version number, as listed by GET /api/v1/models.",
        examples=[OpenApiExample("version 3", value=3), OpenApiExample("version 1", value=1)],
    ),
]


class ModelVersionPromoteApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        tags=TAGS,
        summary="Make a registered version the default",
        parameters=_VERSION_PARAMETERS,
        request=None,
        responses={200: ModelVersionOutputSerializer},
        examples=[OpenApiExample("Promoted", value=_VERSION_EXAMPLE, response_only=True)],
    )
    def post(self, request: Request, name: str, version: int) -> Response:
        promoted = model_version_promote(version=model_version_lookup(name=name, version=version))
        return Response(ModelVersionOutputSerializer(_version_data(promoted)).data)


class ModelRollbackApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        tags=TAGS,
        summary="Make the previous default the default again",
        parameters=[_NAME_PARAMETER],
        request=None,
        responses={200: ModelVersionOutputSerializer},
        examples=[OpenApiExample("Rolled back", value={**_VERSION_EXAMPLE, "version": 2}, response_only=True)],
    )
    def post(self, request: Request, name: str) -> Response:
        restored = model_version_rollback(name=name)
        return Response(ModelVersionOutputSerializer(_version_data(restored)).data)


class ModelVersionRetireApi(APIView):
    permission_classes = [HasManageScope]

    @extend_schema(
        tags=TAGS,
        summary="Unregister a version from TorchServe (not the default)",
        parameters=_VERSION_PARAMETERS,
        request=None,
        responses={200: ModelVersionOutputSerializer},
    )
    def post(self, request: Request, name: str, version: int) -> Response:
        retired = model_version_retire(version=model_version_lookup(name=name, version=version))
        return Response(ModelVersionOutputSerializer(_version_data(retired)).data)


class ModelVersionScaleApi(APIView):
    permission_classes = [HasManageScope]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ModelVersionScale"

        workers = serializers.IntegerField(min_value=1, max_value=MAX_WORKERS)

    @extend_schema(
        tags=TAGS,
        summary="Set the number of TorchServe workers of a version",
        parameters=_VERSION_PARAMETERS,
        request=InputSerializer,
        responses={200: ModelVersionOutputSerializer},
        examples=[OpenApiExample("Two workers", value={"workers": 2}, request_only=True)],
    )
    def post(self, request: Request, name: str, version: int) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        scaled = model_version_scale(
            version=model_version_lookup(name=name, version=version), workers=serializer.validated_data["workers"]
        )
        return Response(ModelVersionOutputSerializer(_version_data(scaled)).data)


__all__ = [
    "ModelListApi",
    "ModelRollbackApi",
    "ModelVersionPromoteApi",
    "ModelVersionRetireApi",
    "ModelVersionScaleApi",
    "TrainingRunCollectionApi",
    "TrainingRunDetailApi",
]
