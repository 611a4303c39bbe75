"""A plain admin for experiments: the list, creation with inline variants (validated by the same
`variants_validate` as the API), and start / stop / promote-the-winner actions, each confirmed on an
intermediate page. A draft is editable; once started, an experiment is read-only (changing its
variants would mix two experiments in one report). The report page with charts comes later."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from recadmin.core.admin_base import ModelAdmin, TabularInline
from recadmin.core.errors import ApplicationError, FieldErrors
from recadmin.experiments import selectors, services
from recadmin.experiments.models import Experiment, ExperimentStatus, Variant
from recadmin.modelops.models import ModelVersion


class VariantFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        raw: list[dict[str, Any]] = []
        forms_kept = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE"):
                continue
            version = data.get("model_version")
            entry: dict[str, Any] = {"name": data.get("name") or "", "weight": data.get("weight")}
            if version is not None:
                entry["model_version"] = version.version
            if data.get("strategy") is not None:
                entry["strategy"] = data["strategy"]
            if data.get("scene_settings") is not None:
                entry["scene_settings"] = data["scene_settings"]
            raw.append(entry)
            forms_kept.append(form)
        order = sorted(range(len(raw)), key=lambda i: forms_kept[i].cleaned_data.get("position") or 0)
        raw = [raw[i] for i in order]
        forms_kept = [forms_kept[i] for i in order]
        allocation = getattr(self.instance, "allocation", "fixed")
        scenes = list(self.instance.scenes.all()) if self.instance.pk else []
        errors = FieldErrors()
        cleaned = services.variants_validate(raw, scenes, allocation=allocation, errors=errors)
        floor = getattr(self.instance, "thompson_floor", 0.0) or 0.0
        arms = sum(1 for v in cleaned if v.weight > 0)
        if allocation == "thompson" and floor * arms > 1:
            errors.add("variants", f"a Thompson floor of {floor} per arm is impossible with {arms} arms")
        for key, field_messages in errors.fields.items():
            # "variants[2].scene_settings.mmr_lambda" -> the third form's scene_settings field.
            if key.startswith("variants[") and "]" in key:
                index = int(key[len("variants[") : key.index("]")])
                field = key[key.index("]") + 2 :].split(".")[0] or None
                target = forms_kept[index] if index < len(forms_kept) else None
                if target is not None:
                    for message in field_messages:
                        target.add_error(field if field in target.fields else None, message)
                    continue
            raise forms.ValidationError(f"{key}: {'; '.join(field_messages)}")


class VariantInline(TabularInline):
    model = Variant
    formset = VariantFormSet
    extra = 2
    fields = ["position", "name", "weight", "model_version", "strategy", "scene_settings"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "model_version":
            kwargs["queryset"] = ModelVersion.objects.filter(name=settings.RECOMMENDER_MODEL_NAME).order_by("-version")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _editable(self, obj: Experiment | None) -> bool:
        return obj is None or obj.status == ExperimentStatus.DRAFT

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)


@admin.register(Experiment)
class ExperimentAdmin(ModelAdmin):
    list_display = ["name", "status", "scene_list", "primary_metric", "allocation", "started_at", "stopped_at"]
    list_filter = ["status", "allocation", "primary_metric"]
    search_fields = ["name", "hypothesis"]
    filter_horizontal = ["scenes"]
    inlines = [VariantInline]
    actions = ["start_experiments", "stop_experiments", "promote_winner"]
    readonly_fields = ["status", "started_at", "stopped_at", "promoted_variant", "note", "verdict", "report"]
    fieldsets = [
        (None, {"fields": ["name", "hypothesis", "scenes", "primary_metric", "allocation", "thompson_floor"]}),
        ("Guardrails and sample", {"fields": ["fallback_share_max", "p95_latency_ms_max", "minimum_sample"]}),
        ("State", {"fields": ["status", "started_at", "stopped_at", "promoted_variant", "note", "verdict", "report"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Experiment]:
        return super().get_queryset(request).prefetch_related("scenes")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.status != ExperimentStatus.DRAFT:
            return [
                "name", "hypothesis", "scenes", "primary_metric", "allocation", "thompson_floor",
                "fallback_share_max", "p95_latency_ms_max", "minimum_sample", *self.readonly_fields,
            ]  # fmt: skip
        return self.readonly_fields

    @admin.display(description="scenes")
    def scene_list(self, obj: Experiment) -> str:
        return ", ".join(sorted(scene.slug for scene in obj.scenes.all()))

    @admin.display(description="verdict")
    def verdict(self, obj: Experiment) -> str:
        if obj.pk is None or obj.status == ExperimentStatus.DRAFT:
            return "-"
        return str(selectors.experiment_report(obj)["verdict"])

    @admin.display(description="report")
    def report(self, obj: Experiment) -> str:
        # The page lives in metrics (above this app): linked by URL name, not imported.
        if obj.pk is None:
            return "-"
        try:
            url = reverse("metrics-experiment-report", args=[obj.pk])
        except NoReverseMatch:
            return "-"
        return format_html('<a href="{}">Report with charts</a>', url)

    # --- actions (each confirmed on an intermediate page) -----------------------------------------

    def _confirm(
        self, request: HttpRequest, queryset: QuerySet[Experiment], *, action: str, title: str, text: str,
        choices: list[tuple[str, str]] | None = None,
    ) -> TemplateResponse:  # fmt: skip
        return TemplateResponse(
            request,
            "admin/experiments/experiment/confirm_action.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "text": text,
                "action": action,
                "queryset": queryset,
                "choices": choices or [],
                "opts": self.model._meta,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )

    def _each(self, request: HttpRequest, queryset: QuerySet[Experiment], label: str, func: Any) -> None:
        for experiment in queryset:
            try:
                func(experiment)
            except ApplicationError as exc:
                self.message_user(request, f"{label} '{experiment.name}': {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{label} '{experiment.name}': done.", messages.SUCCESS)

    @admin.action(description="Start the selected experiments")
    def start_experiments(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> HttpResponse | None:
        if "confirm" not in request.POST:
            return self._confirm(
                request, queryset, action="start_experiments", title="Start these experiments?",
                text="Customers of their scenes will be split between the variants from now on.",
            )  # fmt: skip
        self._each(request, queryset, "Start", lambda e: services.experiment_start(experiment=e))
        return None

    @admin.action(description="Stop the selected experiments")
    def stop_experiments(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> HttpResponse | None:
        if "confirm" not in request.POST:
            return self._confirm(
                request, queryset, action="stop_experiments", title="Stop these experiments?",
                text="Every customer gets the scene as it is again. A stopped experiment cannot be restarted.",
            )  # fmt: skip
        self._each(request, queryset, "Stop", lambda e: services.experiment_stop(experiment=e))
        return None

    @admin.action(description="Promote the winner (one experiment)")
    def promote_winner(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one experiment to promote its winner.", messages.ERROR)
            return None
        experiment = queryset.get()
        variants = selectors.experiment_variants(experiment)
        if "confirm" not in request.POST:
            report = selectors.experiment_report(experiment) if experiment.status != ExperimentStatus.DRAFT else {}
            return self._confirm(
                request,
                queryset,
                action="promote_winner",
                title=f"Promote a variant of '{experiment.name}'?",
                text=(report.get("verdict") or "")
                + " The chosen variant's change becomes the default (a model version through the promote "
                "service, scene settings into the scene) and the experiment stops.",
                choices=[(str(v.pk), f"{v.name}: {v.change}") for v in variants[1:]],
            )
        chosen = next((v for v in variants if str(v.pk) == request.POST.get("variant")), None)
        if chosen is None:
            self.message_user(request, "Choose the variant to promote.", messages.ERROR)
            return None
        try:
            done = services.experiment_promote_winner(experiment=experiment, variant=chosen)
        except ApplicationError as exc:
            self.message_user(request, f"Promote '{chosen.name}': {exc.message}", messages.ERROR)
        else:
            self.message_user(request, f"Promoted '{chosen.name}': {done}.", messages.SUCCESS)
        return None
