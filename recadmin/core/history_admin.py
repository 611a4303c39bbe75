"""Change history in the admin (django-simple-history), as a mixin so any ModelAdmin base works.

`class RuleAdmin(ChangeHistoryAdminMixin, admin.ModelAdmin)` gives the object a History page (who,
when, which fields from what to what, via simple-history's own view) and a "Recent changes" box on
its change page. With `history_restore = True` a past version opens as a pre-filled form that
restores it when confirmed ("Revert"); otherwise history is read-only (model versions: restoring a
row would not restore what TorchServe serves).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from simple_history.admin import SimpleHistoryAdmin
from simple_history.utils import get_m2m_reverse_field_name

RECENT_CHANGES = 5
# One save writes a version for the fields and one per many-to-many add / remove (a rule: up to five).
_RECENT_RECORDS = 30
SAVE_WINDOW = dt.timedelta(seconds=2)
_TYPES = {"+": "created", "~": "changed", "-": "deleted"}


def _related_names(record: Any, field_name: str, rows: list[Any]) -> str:
    """A many-to-many change's rows ({"businessrule": 3, "scene": 7}) as the related objects' names."""
    field = record.instance_type._meta.get_field(field_name)
    target = get_m2m_reverse_field_name(field)
    ids = [row.get(target) if isinstance(row, dict) else row for row in rows]
    names = {obj.pk: str(obj) for obj in field.related_model._default_manager.filter(pk__in=ids)}
    return ", ".join(sorted(names.get(pk, f"#{pk} (deleted)") for pk in ids)) or "-"


def historical_m2m_ids(record: Any) -> dict[str, list[Any]]:
    """The related ids of each many-to-many field recorded on a historical version."""
    result: dict[str, list[Any]] = {}
    for field in getattr(record, "_history_m2m_fields", ()):
        target = get_m2m_reverse_field_name(field)
        result[field.name] = list(getattr(record, field.name).values_list(f"{target}_id", flat=True))
    return result


def _short(value: Any, limit: int = 60) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# {history_id: {m2m field name: its through rows, as simple-history's diff_against reads them}}
M2MRows = dict[Any, dict[str, list[dict[str, Any]]]]


def _m2m_rows(records: list[Any]) -> M2MRows:
    """Every many-to-many row of these versions, one query per field (diff_against makes two per
    field and pair: ~180 queries for the recent-changes box of a rule with a long history)."""
    rows: M2MRows = {record.pk: {} for record in records}
    if not records:
        return rows
    sample = records[0]
    ids = list(rows)
    for field in getattr(sample, "_history_m2m_fields", ()):
        through = getattr(sample, field.name).model
        names = [
            f.name for f in through._meta.fields if f.editable and f.name not in ("id", "m2m_history_id", "history")
        ]
        reverse_name = get_m2m_reverse_field_name(field)
        for row in (
            through._default_manager.filter(history_id__in=ids).order_by(reverse_name).values("history_id", *names)
        ):
            rows[row.pop("history_id")].setdefault(field.name, []).append(row)
    return rows


def _changes(record: Any, previous: Any, m2m_rows: M2MRows) -> list[tuple[str, Any, Any]]:
    """(field, old, new) for each field `record` changed against `previous`; many-to-many fields
    compared on the preloaded rows."""
    m2m = sorted(field.name for field in getattr(record, "_history_m2m_fields", ()))
    delta = record.diff_against(previous, excluded_fields=m2m)
    changes = [(change.field, change.old, change.new) for change in delta.changes]
    for name in m2m:
        old, new = m2m_rows.get(previous.pk, {}).get(name, []), m2m_rows.get(record.pk, {}).get(name, [])
        if old != new:
            changes.append((name, old, new))
    return changes


def history_change_lines(record: Any, previous: Any | None, m2m_rows: M2MRows | None = None) -> list[str]:
    """What `record` changed against `previous` (the one before it), one "field: old → new" each."""
    if previous is None:
        return []
    if m2m_rows is None:
        m2m_rows = _m2m_rows([record, previous])
    m2m = {field.name for field in getattr(record, "_history_m2m_fields", ())}
    lines = []
    for field, old, new in _changes(record, previous, m2m_rows):
        if field in m2m:
            old, new = _related_names(record, field, old), _related_names(record, field, new)
        lines.append(f"{field}: {_short(old)} → {_short(new)}")
    return lines


def _only_m2m_changed(record: Any, previous: Any, m2m_rows: M2MRows) -> bool:
    m2m = {field.name for field in getattr(record, "_history_m2m_fields", ())}
    changed = {field for field, _, _ in _changes(record, previous, m2m_rows)}
    return bool(m2m) and bool(changed) and changed <= m2m


def _saves(records: list[Any], m2m_rows: M2MRows) -> list[list[Any]]:
    """Newest-first versions grouped by save. A form or service save records the fields, then each
    many-to-many removal and addition as a version of its own: a version that changed only
    many-to-many fields, by the same user within SAVE_WINDOW, joins the save before it."""
    groups: list[list[Any]] = []
    for record in records:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and last.history_type == "~"
            and record.history_type != "-"
            and record.history_user_id == last.history_user_id
            and last.history_date - record.history_date <= SAVE_WINDOW
            and _only_m2m_changed(last, record, m2m_rows)
        ):
            groups[-1].append(record)
        else:
            groups.append([record])
    return groups


class ChangeHistoryAdminMixin(SimpleHistoryAdmin):
    history_restore = True
    # simple-history's History page lists each version's changes itself; these add who did it.
    history_list_display: list[str] = []

    def revert_disabled(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self.history_restore or super().revert_disabled(request, obj)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # simple-history pre-fills the form from the version's own fields only: its many-to-many
        # fields would show (and, confirmed, keep) today's rows. `get_form` puts the version's in.
        history = getattr(self.model, self.model._meta.simple_history_manager_attribute)
        record = history.filter(**{self.model._meta.pk.attname: object_id, "history_id": version_id}).first()
        if record is not None:
            request._history_m2m_ids = historical_m2m_ids(record)  # type: ignore[attr-defined]
        return super().history_form_view(request, object_id, version_id, extra_context)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form_class = super().get_form(request, obj, change=change, **kwargs)
        m2m_ids: dict[str, list[Any]] | None = getattr(request, "_history_m2m_ids", None)
        if not m2m_ids:
            return form_class
        model, version_ids = self.model, m2m_ids

        class HistoricalVersionForm(form_class):  # type: ignore[misc,valid-type]
            def __init__(self, *args: Any, **form_kwargs: Any) -> None:
                super().__init__(*args, **form_kwargs)
                for name, ids in version_ids.items():
                    if name in self.fields:
                        related: type[models.Model] = model._meta.get_field(name).related_model
                        # Rows deleted since that version cannot come back: they are left out.
                        self.initial[name] = list(related._default_manager.filter(pk__in=ids))

        HistoricalVersionForm.__name__ = form_class.__name__
        return HistoricalVersionForm

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
        records = list(
            obj.history.select_related("history_user").order_by("-history_date", "-history_id")[:_RECENT_RECORDS]
        )
        if not records:
            return mark_safe("No recorded changes yet.")
        m2m_rows = _m2m_rows(records)
        rows = []
        for group in _saves(records, m2m_rows)[:RECENT_CHANGES]:
            newest, oldest = group[0], group[-1]
            after = records.index(oldest) + 1
            previous = records[after] if after < len(records) else None
            if previous is None and oldest.history_type == "~":
                previous = oldest.prev_record
                if previous is not None:
                    m2m_rows.update(_m2m_rows([previous]))
            types = {record.history_type for record in group}
            lines = [] if types & {"+", "-"} else history_change_lines(newest, previous, m2m_rows)
            kind = "-" if newest.history_type == "-" else "+" if "+" in types else newest.history_type
            what = "; ".join(lines) if lines else _TYPES.get(kind, kind)
            who = newest.history_user.get_username() if newest.history_user else "a service or the API"
            rows.append((f"{newest.history_date:%Y-%m-%d %H:%M}", who, what))
        url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_history", args=[obj.pk])
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            '<table class="recadmin-history"><tr><th>when (UTC)</th><th>who</th><th>what changed</th></tr>{}</table>'
            '<p><a href="{}">All changes{}</a></p>',
            body,
            url,
            " (open a version to restore it)" if self.history_restore else "",
        )
