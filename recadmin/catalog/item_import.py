"""Item import: a blank cell keeps what is stored, unless the person importing asks to clear.

A shop's export often leaves columns it does not manage blank (`attributes`); applying a blank as
"empty" wiped data nobody meant to touch. The preview lists, per row, which fields change and
which blank cells were left alone, so the merchandiser sees it before confirming.
"""

from __future__ import annotations

from typing import Any

from django import forms
from import_export.forms import ConfirmImportForm, ImportForm

CLEAR_BLANK_LABEL = "Blank cells clear the stored value"
CLEAR_BLANK_HELP = (
    "Off (the default): a blank cell leaves the item's stored value as it is. "
    "On: a blank cell empties the field (attributes become {})."
)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class ClearBlankImportForm(ImportForm):
    clear_blank = forms.BooleanField(required=False, label=CLEAR_BLANK_LABEL, help_text=CLEAR_BLANK_HELP)


class ClearBlankConfirmImportForm(ConfirmImportForm):
    clear_blank = forms.BooleanField(required=False, widget=forms.HiddenInput())


class BlankCellsKeepResourceMixin:
    """For an import-export ModelResource: blank cells of existing rows are skipped unless
    `clear_blank=True`; each row result gets `changed_fields` and `kept_blank` for the preview."""

    def __init__(self, *args: Any, clear_blank: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clear_blank = clear_blank
        self._changed: list[str] = []
        self._kept_blank: list[str] = []

    def import_field(self, field: Any, instance: Any, row: Any, is_m2m: bool = False, **kwargs: Any) -> None:
        column = field.column_name
        id_fields = self._meta.import_id_fields  # type: ignore[attr-defined]
        if (
            instance.pk is not None
            and not self.clear_blank
            and column in row
            and column not in id_fields
            and _is_blank(row[column])
        ):
            self._kept_blank.append(column)
            return
        super().import_field(field, instance, row, is_m2m, **kwargs)  # type: ignore[misc]

    def import_instance(self, instance: Any, row: Any, **kwargs: Any) -> None:
        self._changed, self._kept_blank = [], []
        fields = [f for f in self.get_import_fields() if f.attribute]  # type: ignore[attr-defined]
        existing = instance.pk is not None
        before = {f.column_name: self.export_field(f, instance) for f in fields} if existing else {}  # type: ignore[attr-defined]
        try:
            super().import_instance(instance, row, **kwargs)  # type: ignore[misc]
        finally:
            if existing:
                self._changed = [
                    f.column_name
                    for f in fields
                    if self.export_field(f, instance) != before[f.column_name]  # type: ignore[attr-defined]
                ]

    def after_import_row(self, row: Any, row_result: Any, **kwargs: Any) -> None:
        super().after_import_row(row, row_result, **kwargs)  # type: ignore[misc]
        row_result.changed_fields = list(self._changed)
        row_result.kept_blank = list(self._kept_blank)


class ClearBlankImportAdminMixin:
    """For an ImportMixin admin whose resource uses BlankCellsKeepResourceMixin: the import form
    asks whether blank cells clear, the confirm step carries the answer, the preview says what
    changes."""

    import_form_class = ClearBlankImportForm
    confirm_form_class = ClearBlankConfirmImportForm
    import_template_name = "admin/catalog/item/import.html"

    def get_import_resource_kwargs(self, request: Any, **kwargs: Any) -> dict[str, Any]:
        form = kwargs.get("form")
        resource_kwargs: dict[str, Any] = super().get_import_resource_kwargs(request, **kwargs)  # type: ignore[misc]
        resource_kwargs.pop("form", None)
        cleaned = getattr(form, "cleaned_data", None) or {}
        resource_kwargs["clear_blank"] = bool(cleaned.get("clear_blank"))
        return resource_kwargs

    def get_confirm_form_initial(self, request: Any, import_form: Any) -> dict[str, Any]:
        initial: dict[str, Any] = super().get_confirm_form_initial(request, import_form)  # type: ignore[misc]
        if import_form is not None:
            initial["clear_blank"] = bool(import_form.cleaned_data.get("clear_blank"))
        return initial
