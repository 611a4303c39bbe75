"""Admin for training runs and model versions.

"Add training run" is the "Train now" form. Version actions (promote, roll back, retire, scale)
call the same services as the API, which go through the TorchServe adapter; the version list
shows what TorchServe actually has next to what the registry believes.
"""

from __future__ import annotations

import contextvars
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from recadmin.core.admin_base import ModelAdmin
from recadmin.core.errors import ApplicationError
from recadmin.core.history_admin import ChangeHistoryAdminMixin
from recadmin.modelops.admin_confirm import confirm_action_page, promote_changes, retire_changes, rollback_view
from recadmin.modelops.models import ModelVersion, ModelVersionStatus, TrainingRun, TrainingRunStatus
from recadmin.modelops.presets import DEFAULT_PRESET, PRESET_CHOICES, preset_params
from recadmin.modelops.selectors import (
    RegistryView,
    RuntimeVersion,
    model_version_default,
    model_versions_with_runtime,
)
from recadmin.modelops.services import (
    MAX_WORKERS,
    model_version_promote,
    model_version_retire,
    model_version_scale,
    model_version_update,
    training_params_validate,
    training_run_cancel,
    training_run_create,
)

# The request being rendered, for display methods (which only get the row): a context variable,
# not an attribute of the shared ModelAdmin, so concurrent requests never see each other's.
_current_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "modelops_admin_request", default=None
)

# Metrics shown side by side, in this order, when present.
COMPARED_METRICS = ["NDCG@10", "HR@10", "NDCG@5", "HR@5", "NDCG@20", "HR@20", "MRR", "coverage@10", "diversity@10"]


def _progress_bar(run: TrainingRun) -> SafeString:
    colours: dict[str, str] = {
        TrainingRunStatus.FAILED: "#ba2121",
        TrainingRunStatus.CANCELLED: "#888",
        TrainingRunStatus.SUCCEEDED: "#3a8e3a",
    }
    colour = colours.get(str(run.status), "#417690")
    return format_html(
        '<div class="recadmin-progress" data-run="{}" data-status="{}" '
        'style="width:160px;background:#eee;border-radius:3px">'
        '<div class="bar" style="width:{}%;background:{};height:10px;border-radius:3px"></div></div>'
        '<small class="stage">{}% · {}</small>',
        run.pk,
        run.status,
        f"{run.progress:.0f}",
        colour,
        f"{run.progress:.0f}",
        run.stage or run.get_status_display(),
    )


# --- training runs --------------------------------------------------------------------------------


class TrainNowForm(forms.ModelForm):
    """A model, a preset, and (under "advanced") the main parameters of each kind: a filled field
    overrides the preset's value; empty ones keep it."""

    preset = forms.ChoiceField(
        choices=PRESET_CHOICES,
        initial=DEFAULT_PRESET,
        required=False,
        widget=forms.RadioSelect,
        help_text="Hyperparameters under 'Advanced' override the preset.",
    )
    max_epochs = forms.IntegerField(required=False, min_value=1, max_value=1000, help_text="sasrec, hybrid")
    hidden = forms.IntegerField(required=False, min_value=8, max_value=1024, help_text="sasrec, hybrid: embedding size")
    blocks = forms.IntegerField(required=False, min_value=1, max_value=8, help_text="sasrec, hybrid: attention blocks")
    max_len = forms.IntegerField(
        required=False, min_value=2, max_value=1000, help_text="sasrec, hybrid: history length"
    )
    dropout = forms.FloatField(required=False, min_value=0, max_value=0.9, help_text="sasrec, hybrid")
    lr = forms.FloatField(required=False, min_value=1e-6, max_value=1, help_text="sasrec, hybrid: learning rate")
    max_seconds = forms.FloatField(
        required=False, min_value=1, help_text="sasrec, hybrid: training time budget (s; the hybrid: per SASRec)"
    )
    l2 = forms.FloatField(required=False, min_value=0, help_text="cf (EASE): regularisation")
    neighbours = forms.IntegerField(required=False, min_value=1, max_value=10000, help_text="cf, itemknn")
    half_life_days = forms.FloatField(required=False, min_value=0.001, help_text="pop: time decay")
    workers = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_WORKERS, help_text="TorchServe workers for the new version"
    )
    seed = forms.IntegerField(required=False, min_value=0)

    PARAM_FIELDS = [
        "max_epochs",
        "hidden",
        "blocks",
        "max_len",
        "dropout",
        "lr",
        "max_seconds",
        "l2",
        "neighbours",
        "half_life_days",
        "workers",
        "seed",
    ]

    class Meta:
        model = TrainingRun
        fields = ["kind", "model_name"]
        labels = {"kind": "Model"}

    def params(self) -> dict[str, Any]:
        preset = preset_params(
            preset=self.cleaned_data.get("preset") or DEFAULT_PRESET, kind=self.cleaned_data.get("kind") or ""
        )
        advanced = {
            name: self.cleaned_data[name] for name in self.PARAM_FIELDS if self.cleaned_data.get(name) not in (None, "")
        }
        return {**preset, **advanced}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        if kind:
            try:
                training_params_validate(kind=kind, params=self.params())
            except ApplicationError as exc:
                fields = list((exc.extra.get("fields") or {}).keys())
                target = fields[0].removeprefix("params.") if fields else None
                self.add_error(target if target in self.fields else None, exc.message)
        return cleaned


class _TrainingRunChangeList(ChangeList):
    """The list shows none of a run's log tail or metrics (up to 20 kB a row): leave them unread."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[TrainingRun]:
        return super().get_queryset(request, exclude_parameters).defer("log_tail", "metrics")


@admin.register(TrainingRun)
class TrainingRunAdmin(ModelAdmin):
    list_display = ["id", "kind", "model_name", "status", "progress_bar", "result", "trigger", "created_at", "took"]
    list_filter = ["status", "kind", "trigger"]
    raw_id_fields = ["created_by"]
    date_hierarchy = "created_at"
    actions = ["cancel_runs"]
    readonly_fields = [
        "kind",
        "model_name",
        "params",
        "status",
        "live_progress",
        "failed_stage",
        "error",
        "gate_decision",
        "metrics_table",
        "versions_built",
        "log",
        "celery_task_id",
        "trigger",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    change_list_template = "admin/modelops/trainingrun/change_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _TrainingRunChangeList

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = TrainNowForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [
                (None, {"fields": ["kind", "preset", "model_name"]}),
                (
                    "Advanced: hyperparameters (empty = the preset's value)",
                    {"fields": TrainNowForm.PARAM_FIELDS, "classes": ["collapse"]},
                ),
            ]
        return [(None, {"fields": self.readonly_fields})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else []

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Viewing is allowed; runs are never edited by hand.
        return False if obj is not None and request.method == "POST" else super().has_change_permission(request, obj)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "title": "Train now"}
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: TrainingRun, form: Any, change: bool) -> None:
        run = training_run_create(
            kind=form.cleaned_data["kind"],
            params=form.params(),
            model_name=form.cleaned_data.get("model_name") or None,
            created_by=request.user,
            trigger="admin",
        )
        obj.pk = run.pk
        obj.refresh_from_db()
        messages.success(request, f"Training run #{run.pk} started ({run.kind}). Its progress shows below.")

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "progress/",
                self.admin_site.admin_view(self.progress_json),
                name="modelops_trainingrun_progress",
            ),
            *super().get_urls(),
        ]

    def progress_json(self, request: HttpRequest) -> JsonResponse:
        """What the progress bars poll: status, percent and stage of the asked runs."""
        ids = [int(part) for part in request.GET.get("ids", "").split(",") if part.strip().isdigit()][:200]
        rows = TrainingRun.objects.filter(pk__in=ids).values("id", "status", "progress", "stage", "error")
        return JsonResponse({"runs": list(rows)})

    @admin.display(description="Progress")
    def progress_bar(self, obj: TrainingRun) -> SafeString:
        return _progress_bar(obj)

    @admin.display(description="Progress")
    def live_progress(self, obj: TrainingRun) -> SafeString:
        return _progress_bar(obj)

    @admin.display(description="Result")
    def result(self, obj: TrainingRun) -> str:
        if obj.status == TrainingRunStatus.FAILED:
            return f"failed in {obj.failed_stage or '?'}: {obj.error[:80]}"
        return obj.gate_decision[:100]

    @admin.display(description="Took")
    def took(self, obj: TrainingRun) -> str:
        seconds = obj.duration_seconds
        if seconds is None:
            return "-"
        return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"

    @admin.display(description="Metrics")
    def metrics_table(self, obj: TrainingRun) -> SafeString:
        metrics = obj.metrics or {}
        valid, test = metrics.get("valid") or {}, metrics.get("test") or {}
        names = [m for m in COMPARED_METRICS if m in valid or m in test] or sorted(set(valid) | set(test))
        if not names:
            return mark_safe("-")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((name, _fmt(valid.get(name)), _fmt(test.get(name))) for name in names),
        )
        sizes = ", ".join(
            f"{key.replace('num_', '')}: {metrics[key]:,}"
            for key in ("num_events", "num_users", "num_items")
            if isinstance(metrics.get(key), int)
        )
        seconds = metrics.get("seconds") or {}
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items() if isinstance(v, (int, float)))
        return format_html(
            "<table><tr><th>metric</th><th>validation</th><th>test</th></tr>{}</table><p>{}</p><p>{}</p><p>{}</p>",
            rows,
            sizes,
            timing,
            str(metrics.get("stopped") or ""),
        )

    @admin.display(description="Versions built")
    def versions_built(self, obj: TrainingRun) -> SafeString:
        versions = list(obj.model_versions.all())
        if not versions:
            return mark_safe("-")
        return format_html_join(
            ", ",
            '<a href="{}">{} ({})</a>',
            (
                (reverse("admin:modelops_modelversion_change", args=[v.pk]), str(v), v.get_status_display())
                for v in versions
            ),
        )

    @admin.display(description="Log (last lines)")
    def log(self, obj: TrainingRun) -> SafeString:
        return format_html('<pre style="max-height:24em;overflow:auto">{}</pre>', obj.log_tail or "")

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[TrainingRun]) -> None:
        done = 0
        for run in queryset:
            try:
                training_run_cancel(run=run)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"#{run.pk}: {exc.message}", messages.WARNING)
        if done:
            self.message_user(request, f"Cancelled {done} run(s).", messages.SUCCESS)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "progress_url": reverse("admin:modelops_trainingrun_progress"),
            "add_label": "Train now",
        }
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "progress_url": reverse("admin:modelops_trainingrun_progress")}
        return super().change_view(request, object_id, form_url, extra_context)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


# --- model versions -------------------------------------------------------------------------------


class ScaleActionForm(ActionForm):
    workers = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_WORKERS, label="Workers (for 'scale')", initial=1
    )


class ModelVersionForm(forms.ModelForm):
    workers = forms.IntegerField(min_value=1, max_value=MAX_WORKERS, help_text="Workers asked of TorchServe.")

    class Meta:
        model = ModelVersion
        fields = ["note", "workers"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ChangeHistoryAdminMixin, ModelAdmin):
    form = ModelVersionForm
    history_restore = False  # a row restored would not restore what TorchServe serves
    list_display = [
        "__str__",
        "kind",
        "status",
        "torchserve_state",
        "valid_ndcg",
        "vs_default",
        "valid_hr",
        "test_ndcg",
        "num_events",
        "num_users",
        "num_items",
        "created_at",
        "promoted_at",
    ]
    list_filter = ["name", "status", "kind"]
    raw_id_fields = ["training_run"]
    search_fields = ["name", "sha256"]
    action_form = ScaleActionForm
    actions = ["promote", "retire", "scale"]  # roll back: a button, it needs no row
    change_list_template = "admin/modelops/modelversion/change_list.html"
    readonly_fields = [
        "name",
        "version",
        "kind",
        "status",
        "torchserve_state",
        "comparison",
        "params",
        "num_events",
        "num_users",
        "num_items",
        "archive_path",
        "sha256",
        "training_run",
        "created_at",
        "promoted_at",
        "rolled_back_at",
        "retired_at",
    ]

    # A version's metrics and archive are facts of its training run: shown, never edited. Only the
    # note and the number of TorchServe workers may change (workers through the adapter).
    editable_fields = ["note", "workers"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from training runs

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*self.readonly_fields[:6], *self.editable_fields, *self.readonly_fields[6:]]

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: Any, change: bool) -> None:
        try:
            model_version_update(
                version=ModelVersion.objects.get(pk=obj.pk),
                note=form.cleaned_data.get("note", obj.note),
                workers=form.cleaned_data.get("workers") or obj.workers,
            )
        except ApplicationError as exc:
            self.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
        obj.refresh_from_db()

    # One TorchServe round trip per page, shared by every row.
    def _runtime(self, request: HttpRequest) -> RegistryView:
        cached = getattr(request, "_modelops_runtime", None)
        if cached is None:
            cached = model_versions_with_runtime()
            request._modelops_runtime = cached  # type: ignore[attr-defined]
        return cached

    def _defaults(self, request: HttpRequest) -> dict[str, ModelVersion]:
        cached = getattr(request, "_modelops_defaults", None)
        if cached is None:
            cached = {v.name: v for v in ModelVersion.objects.filter(status=ModelVersionStatus.DEFAULT)}
            request._modelops_defaults = cached  # type: ignore[attr-defined]
        return cached

    def _entry(self, obj: ModelVersion) -> RuntimeVersion | None:
        request = _current_request.get()
        if request is None:
            return None
        by_pk: dict[int, RuntimeVersion] | None = getattr(request, "_modelops_runtime_by_pk", None)
        if by_pk is None:
            view = self._runtime(request)
            # Indexed once per page: a scan per row was quadratic in the page size.
            by_pk = {e.model_version.pk: e for e in view.versions} if view.torchserve_reachable else {}
            request._modelops_runtime_by_pk = by_pk  # type: ignore[attr-defined]
        return by_pk.get(obj.pk)

    @admin.display(description="TorchServe")
    def torchserve_state(self, obj: ModelVersion) -> SafeString:
        request = _current_request.get()
        if request is not None and not self._runtime(request).torchserve_reachable:
            return mark_safe('<span style="color:#ba2121">unreachable</span>')
        entry = self._entry(obj)
        if entry is None or not entry.loaded:
            expected = obj.status in (ModelVersionStatus.REGISTERED, ModelVersionStatus.DEFAULT)
            return format_html(
                '<span style="color:{}">{}</span>',
                "#ba2121" if expected else "#888",
                "not loaded (run the sync)" if expected else "not loaded",
            )
        default = " · default" if entry.is_torchserve_default else ""
        colour = "#3a8e3a" if entry.workers_ready else "#ba2121"
        return format_html(
            '<span style="color:{}">loaded · {}/{} workers ready{}</span>',
            colour,
            entry.workers_ready,
            entry.workers_total,
            default,
        )

    @admin.display(description="valid NDCG@10")
    def valid_ndcg(self, obj: ModelVersion) -> str:
        return _fmt(obj.valid_metrics.get("NDCG@10"))

    @admin.display(description="valid HR@10")
    def valid_hr(self, obj: ModelVersion) -> str:
        return _fmt(obj.valid_metrics.get("HR@10"))

    @admin.display(description="test NDCG@10")
    def test_ndcg(self, obj: ModelVersion) -> str:
        return _fmt(obj.test_metrics.get("NDCG@10"))

    @admin.display(description="Δ NDCG@10 vs default")
    def vs_default(self, obj: ModelVersion) -> SafeString:
        request = _current_request.get()
        default = self._defaults(request).get(obj.name) if request is not None else None
        if default is None or default.pk == obj.pk or obj.ndcg10 is None or default.ndcg10 is None:
            return mark_safe("-")
        delta = obj.ndcg10 - default.ndcg10
        return format_html('<span style="color:{}">{}</span>', "#3a8e3a" if delta >= 0 else "#ba2121", f"{delta:+.4f}")

    @admin.display(description="Metrics against the current default")
    def comparison(self, obj: ModelVersion) -> SafeString:
        default = model_version_default(name=obj.name)
        heading = f"default v{default.version}" if default and default.pk != obj.pk else "(this is the default)"
        rows = []
        for split, label in (("valid_metrics", "validation"), ("test_metrics", "test")):
            mine: dict[str, Any] = getattr(obj, split) or {}
            theirs: dict[str, Any] = (getattr(default, split) or {}) if default and default.pk != obj.pk else {}
            names = [m for m in COMPARED_METRICS if m in mine or m in theirs] or sorted(set(mine) | set(theirs))
            for name in names:
                a, b = mine.get(name), theirs.get(name)
                delta = f"{a - b:+.4f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "-"
                rows.append((label, name, _fmt(a), _fmt(b), delta))
        if not rows:
            return mark_safe("-")
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            "<table><tr><th>split</th><th>metric</th><th>this version</th><th>{}</th><th>Δ</th></tr>{}</table>",
            heading,
            body,
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "rollback/",
                self.admin_site.admin_view(lambda request: rollback_view(self, request)),
                name="modelops_modelversion_rollback",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        token = _current_request.set(request)
        try:
            response = super().change_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render"):
                response.render()
            return response
        finally:
            _current_request.reset(token)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        token = _current_request.set(request)
        try:
            view = self._runtime(request)
            extra_context = {**(extra_context or {}), "torchserve_view": view}
            response = super().changelist_view(request, extra_context)
            # Rendered now, while the request is still current for the display methods.
            if hasattr(response, "render"):
                response.render()
            return response
        finally:
            _current_request.reset(token)

    # --- actions ---------------------------------------------------------------------------------

    def _run(self, request: HttpRequest, label: str, func: Any) -> None:
        try:
            result = func()
        except ApplicationError as exc:
            self.message_user(request, f"{label}: {exc.message}", messages.ERROR)
            return
        self.message_user(request, f"{label}: {result}", messages.SUCCESS)

    @admin.action(description="Promote to default (one version)…")
    def promote(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to promote.", messages.ERROR)
            return None
        version = queryset.get()
        if request.POST.get("confirm") != "yes":
            changes, refusals = promote_changes(version)
            return confirm_action_page(
                self, request, queryset, action="promote", title=f"Promote {version}?",
                changes=changes, refusals=refusals, button="Yes, promote",
            )  # fmt: skip

        def do() -> str:
            promoted = model_version_promote(version=version)
            return f"{promoted} is now the default in TorchServe."

        self._run(request, f"Promote {version}", do)
        return None

    @admin.action(description="Retire (unregister from TorchServe)…")
    def retire(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        if request.POST.get("confirm") != "yes":
            changes, refusals = retire_changes(list(queryset))
            count = queryset.count()
            return confirm_action_page(
                self, request, queryset, action="retire", title=f"Retire {count} version{'s' if count != 1 else ''}?",
                changes=changes, refusals=refusals, button="Yes, retire",
            )  # fmt: skip
        for version in queryset:

            def do(version: ModelVersion = version) -> str:
                model_version_retire(version=version)
                return "unregistered from TorchServe."

            self._run(request, f"Retire {version}", do)
        return None

    @admin.action(description="Scale workers (set the number below)")
    def scale(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        raw = request.POST.get("workers")
        try:
            workers = int(raw or "")
        except ValueError:
            self.message_user(request, f"Workers: give a number from 1 to {MAX_WORKERS}.", messages.ERROR)
            return
        for version in queryset:

            def do(version: ModelVersion = version) -> str:
                scaled = model_version_scale(version=version, workers=workers)
                return f"{scaled.workers} worker(s) requested and ready."

            self._run(request, f"Scale {version}", do)


__all__ = ["ModelVersionAdmin", "TrainingRunAdmin"]
