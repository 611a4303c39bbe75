from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

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
class ApiKeyAdmin(admin.ModelAdmin):
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
