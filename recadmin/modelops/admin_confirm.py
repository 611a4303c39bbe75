"""Confirmation pages for the model version lifecycle in the admin: promote, retire and roll back
say what will change and wait for a "Yes". Roll back has a page of its own (no row to select)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from recadmin.core.errors import ApplicationError
from recadmin.modelops.models import ModelVersion, ModelVersionStatus
from recadmin.modelops.selectors import model_name_resolve, model_version_default, model_version_previous_default
from recadmin.modelops.services import model_version_rollback

CONFIRM_TEMPLATE = "admin/modelops/modelversion/confirm.html"


def _ndcg(version: ModelVersion | None) -> str:
    value = version.ndcg10 if version is not None else None
    return f"{value:.4f}" if value is not None else "-"


def promote_changes(version: ModelVersion) -> tuple[list[str], list[str]]:
    """(what will change, why it cannot) for promoting `version`."""
    current = model_version_default(name=version.name)
    if version.status == ModelVersionStatus.DEFAULT:
        return [], [f"{version} is already the default."]
    if version.status != ModelVersionStatus.REGISTERED:
        return [], [f"{version} is {version.get_status_display().lower()}; only a registered version can be promoted."]
    changes = [
        f"{version} becomes the default of '{version.name}': TorchServe serves it to every request for the model.",
    ]
    if current is not None:
        changes.append(f"{current}, the default now, stays registered; Roll back makes it the default again.")
        changes.append(f"Validation NDCG@10: {_ndcg(version)} (now {_ndcg(current)}).")
    return changes, []


def retire_changes(versions: list[ModelVersion]) -> tuple[list[str], list[str]]:
    changes, refusals = [], []
    for version in versions:
        if version.status == ModelVersionStatus.DEFAULT:
            refusals.append(f"{version} is the default: promote or roll back to another version first.")
        elif version.status == ModelVersionStatus.RETIRED:
            refusals.append(f"{version} is already retired.")
        else:
            changes.append(
                f"{version} is unregistered from TorchServe and marked retired; its archive and metrics are kept."
            )
    return changes, refusals


def rollback_changes(name: str) -> tuple[list[str], list[str]]:
    current = model_version_default(name=name)
    previous = model_version_previous_default(name=name)
    if previous is None:
        return [], [f"There is no previous default of '{name}' to roll back to."]
    changes = [f"{previous} becomes the default of '{name}' again (validation NDCG@10 {_ndcg(previous)})."]
    if current is not None:
        changes.append(
            f"{current}, the default now (NDCG@10 {_ndcg(current)}), stays registered and is marked rolled back: "
            "later rollbacks skip it."
        )
    return changes, []


def confirm_action_page(
    model_admin: Any,
    request: HttpRequest,
    queryset: QuerySet[ModelVersion],
    *,
    action: str,
    title: str,
    changes: list[str],
    refusals: list[str],
    button: str,
) -> TemplateResponse:
    """The intermediate page of a changelist action: posting it again with confirm=yes runs it."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "changes": changes,
        "refusals": refusals,
        "button": button,
        "form_url": reverse("admin:modelops_modelversion_changelist"),
        "hidden": [("action", action)]
        + [(helpers.ACTION_CHECKBOX_NAME, str(pk)) for pk in queryset.values_list("pk", flat=True)],
        "cancel_url": reverse("admin:modelops_modelversion_changelist"),
    }
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)


def rollback_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """GET: what a rollback of ?name= would change. POST with confirm=yes: do it."""
    names = sorted(set(ModelVersion.objects.values_list("name", flat=True))) or [model_name_resolve(None)]
    name = request.POST.get("name") or request.GET.get("name") or model_name_resolve(None)
    changelist = reverse("admin:modelops_modelversion_changelist")
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        try:
            restored = model_version_rollback(name=name)
        except ApplicationError as exc:
            model_admin.message_user(request, f"Roll back {name}: {exc.message}", messages.ERROR)
        else:
            model_admin.message_user(request, f"Roll back {name}: {restored} is the default again.", messages.SUCCESS)
        return HttpResponseRedirect(changelist)
    changes, refusals = rollback_changes(name)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Roll back '{name}'?",
        "opts": model_admin.model._meta,
        "changes": changes,
        "refusals": refusals,
        "button": "Yes, roll back",
        "form_url": reverse("admin:modelops_modelversion_rollback"),
        "hidden": [("name", name)],
        "cancel_url": changelist,
        "other_names": [n for n in names if n != name],
    }
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)
