from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from recadmin.core.admin_base import ModelAdmin
from recadmin.core.models import ApiKey, ApiScope
from recadmin.core.services import (
    api_key_create,
    api_key_revoke,
    api_key_update_rate_limit,
    api_key_update_scopes,
)


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiScope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="ingest: send events, items, customers. recommend: read lists. manage: rules, scenes, models.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "rate_limit"]


@admin.register(ApiKey)
class ApiKeyAdmin(ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "prefix", "scope_list", "created_at", "last_used_at", "status"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_keys"]

    @admin.display(description="Scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes or [])

    @admin.display(description="Status")
    def status(self, obj: ApiKey) -> str:
        return "active" if obj.is_active else "revoked"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            api_key_update_scopes(api_key=obj, scopes=form.cleaned_data["scopes"])
            api_key_update_rate_limit(api_key=obj, rate_limit=form.cleaned_data.get("rate_limit") or "")
            obj.name = form.cleaned_data["name"]
            obj.save(update_fields=["name"])
            return
        created = api_key_create(
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            rate_limit=form.cleaned_data.get("rate_limit") or "",
        )
        obj.pk = created.api_key.pk
        obj.refresh_from_db()
        # The only time the secret exists in clear: show it now, never again.
        messages.warning(
            request,
            f"New API key for '{created.api_key.name}': {created.raw_key}  (copy it now: it will not be shown again)",
        )

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


# --- third-party admins under the theme -----------------------------------------------------------
# Users and groups (django.contrib.auth), periodic tasks (django-celery-beat) and task results
# (django-celery-results) register their own admins on the stock base class: register them again on
# the project's base, keeping each one's own behaviour (its class comes first in the MRO).
REBASED_APPS = ("auth", "axes", "django_celery_beat", "django_celery_results")


def _rebase_registered_admins() -> None:
    from django.contrib.auth.admin import UserAdmin
    from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

    for model, model_admin in list(admin.site._registry.items()):
        if model._meta.app_label not in REBASED_APPS or isinstance(model_admin, ModelAdmin):
            continue
        base = type(model_admin)
        attrs: dict[str, Any] = {"__module__": __name__}
        if issubclass(base, UserAdmin):
            attrs.update(form=UserChangeForm, add_form=UserCreationForm, change_password_form=AdminPasswordChangeForm)
        themed = type(base.__name__, (base, ModelAdmin), attrs)
        admin.site.unregister(model)
        admin.site.register(model, themed)


_rebase_registered_admins()
