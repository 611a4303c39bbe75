"""The admin's base classes, in one place.

Every ModelAdmin and inline of the project derives from these, so the theme (django-unfold today)
is chosen here and a later change of theme or of a shared default is one edit in this module.
"""

from __future__ import annotations

from typing import Any

from import_export.admin import ImportExportModelAdmin as _ImportExportModelAdmin
from unfold.admin import ModelAdmin as _UnfoldModelAdmin
from unfold.admin import StackedInline as _UnfoldStackedInline
from unfold.admin import TabularInline as _UnfoldTabularInline
from unfold.contrib.import_export.forms import ImportForm, SelectableFieldsExportForm
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget as CheckboxSelectMultiple
from unfold.widgets import UnfoldAdminTextInputWidget as TextInputWidget

__all__ = [
    "CheckboxSelectMultiple",
    "ImportExportModelAdmin",
    "ModelAdmin",
    "StackedInline",
    "TabularInline",
    "TextInputWidget",
]


class ModelAdmin(_UnfoldModelAdmin):
    # Long tables scroll inside their own box, never the page; filters open in a side sheet so the
    # columns keep the width at 1280 px.
    list_filter_submit = True
    list_fullwidth = False
    compressed_fields = True
    warn_unsaved_form = False


class TabularInline(_UnfoldTabularInline):
    pass


class StackedInline(_UnfoldStackedInline):
    pass


class ImportExportModelAdmin(_ImportExportModelAdmin, ModelAdmin):
    import_form_class = ImportForm
    # The export lets the user choose the columns (import-export's default form), themed.
    export_form_class = SelectableFieldsExportForm


def thumbnail_html(url: Any, *, size: int = 40) -> str:
    """An <img> for an item's image URL (http/https only), or "" when there is none."""
    from django.utils.html import format_html

    if not isinstance(url, str) or not url.startswith(("http://", "https://", "/")):
        return ""
    return format_html(
        '<img src="{}" alt="" loading="lazy" width="{}" height="{}" '
        'style="object-fit:cover;border-radius:4px;max-width:none">',
        url,
        size,
        size,
    )
