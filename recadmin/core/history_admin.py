"""Change history in the admin (django-simple-history), as a mixin so any ModelAdmin base works.

`class RuleAdmin(ChangeHistoryAdminMixin, admin.ModelAdmin)` gives the object a History page (who,
when, which fields from what to what, via simple-history's own view) and a "Recent changes" box on
its change page. With `history_restore = True` a past version opens as a pre-filled form that
restores it when confirmed ("Revert"); otherwise history is read-only (model versions: restoring a
row would not restore what TorchServe serves).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from simple_history.admin import SimpleHistoryAdmin

RECENT_CHANGES = 5
_TYPES = {"+": "created", "~": "changed", "-": "deleted"}


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, list):  # a many-to-many field: the related rows' ids
        value = ", ".join(str(next(iter(v.values()), v)) if isinstance(v, dict) else str(v) for v in value) or "-"
    text = "-" if value is None or value == "" else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def history_change_lines(record: Any, previous: Any | None) -> list[str]:
    """What `record` changed against `previous` (the one before it), one "field: old → new" each."""
    if previous is None:
        return []
    delta = record.diff_against(previous)
    return [f"{change.field}: {_short(change.old)} → {_short(change.new)}" for change in delta.changes]


class ChangeHistoryAdminMixin(SimpleHistoryAdmin):
    history_restore = True
    # simple-history's History page lists each version's changes itself; these add who did it.
    history_list_display: list[str] = []

    def revert_disabled(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self.history_restore or super().revert_disabled(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "recent_changes"] if obj is not None and "recent_changes" not in fields else fields

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:
            return fieldsets
        # Django's default fieldsets list every field in one set: keep the box out of it.
        fieldsets = [
            (name, {**options, "fields": [f for f in options.get("fields", []) if f != "recent_changes"]})
            for name, options in fieldsets
        ]
        return [*fieldsets, ("Change history", {"fields": ["recent_changes"]})]

    @admin.display(description="Recent changes")
    def recent_changes(self, obj: Any) -> SafeString:
        if obj is None or obj.pk is None:
            return mark_safe("-")
        records = list(obj.history.select_related("history_user").order_by("-history_date", "-history_id")[
            : RECENT_CHANGES + 1
        ])
        if not records:
            return mark_safe("No recorded changes yet.")
        rows = []
        for index, record in enumerate(records[:RECENT_CHANGES]):
            previous = records[index + 1] if index + 1 < len(records) else None
            if previous is None and record.history_type == "~":
                previous = record.prev_record
            lines = history_change_lines(record, previous)
            what = "; ".join(lines) if lines else _TYPES.get(record.history_type, record.history_type)
            who = record.history_user.get_username() if record.history_user else "a service or the API"
            rows.append((f"{record.history_date:%Y-%m-%d %H:%M}", who, what))
        url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_history", args=[obj.pk])
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            '<table class="recadmin-history"><tr><th>when (UTC)</th><th>who</th><th>what changed</th></tr>{}</table>'
            '<p><a href="{}">All changes{}</a></p>',
            body,
            url,
            " (open a version to restore it)" if self.history_restore else "",
        )
