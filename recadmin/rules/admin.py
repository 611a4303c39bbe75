"""Merchandiser admin for scenes and business rules.

The rule form validates with the same `rule_validate` as the services and the API: errors show next
to the field they concern (the condition's messages say where inside the JSON the problem is).
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from recadmin.core.errors import ValidationError
from recadmin.rules import services
from recadmin.rules.models import BusinessRule, Scene
from recadmin.rules.validation import RuleSpec, rule_validate

CONDITION_EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("Skincare (with its subcategories) from 10 to 50", {
        "all": [
            {"field": "category", "op": "in_subtree", "value": "skincare"},
            {"field": "price", "op": "between", "value": [10, 50]},
        ]
    }),
    ("Out of stock", {"field": "in_stock", "op": "eq", "value": False}),
    ("Brand acme or globex, not in the sale", {
        "all": [
            {"field": "brand", "op": "in", "value": ["acme", "globex"]},
            {"not": {"field": "attributes.sale", "op": "eq", "value": True}},
        ]
    }),
    ("Vegan or organic", {
        "any": [
            {"field": "attributes.vegan", "op": "eq", "value": True},
            {"field": "attributes.labels", "op": "in", "value": ["organic", "bio"]},
        ]
    }),
]  # fmt: skip


class _ConditionWidget(forms.Textarea):
    def __init__(self) -> None:
        super().__init__(attrs={"rows": 12, "cols": 90, "style": "font-family: monospace", "spellcheck": "false"})

    def format_value(self, value: Any) -> str | None:
        # Pretty-print so nested conditions are readable and errors easy to locate.
        if isinstance(value, str):
            try:
                return json.dumps(json.loads(value), indent=2)
            except ValueError:
                return value
        return super().format_value(value)


class BusinessRuleForm(forms.ModelForm):
    class Meta:
        model = BusinessRule
        fields = [
            "name", "kind", "enabled", "priority", "all_scenes", "scenes", "condition", "filter_mode",
            "weight_mode", "weight", "position", "pinned_items", "valid_from", "valid_until",
        ]  # fmt: skip
        widgets = {"condition": _ConditionWidget()}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "condition" in self.fields:
            self.fields["condition"].required = False
            examples = format_html_join(
                "",
                "<li>{}: <code>{}</code></li>",
                ((title, json.dumps(example)) for title, example in CONDITION_EXAMPLES),
            )
            self.fields["condition"].help_text = format_html(
                "{}<br>Examples:<ul>{}</ul>", self.fields["condition"].help_text, examples
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # The model's clean() checks the plain fields (and reports them); the many-to-many fields
        # only exist here, before the save, so the form reports those.
        spec = RuleSpec(
            name=cleaned.get("name") or "",
            kind=cleaned.get("kind") or "",
            condition=cleaned.get("condition") or {},
            filter_mode=cleaned.get("filter_mode") or "exclude",
            weight=cleaned.get("weight"),
            weight_mode=cleaned.get("weight_mode") or "multiply",
            position=cleaned.get("position"),
            pinned_items=list(cleaned.get("pinned_items") or []),
            valid_from=cleaned.get("valid_from"),
            valid_until=cleaned.get("valid_until"),
            priority=cleaned.get("priority") or 0,
            all_scenes=bool(cleaned.get("all_scenes")),
            scenes=list(cleaned.get("scenes") or []),
        )
        try:
            rule_validate(spec)
        except ValidationError as exc:
            for field, field_messages in (exc.extra.get("fields") or {}).items():
                if field in ("scenes", "pinned_items"):
                    for message in field_messages:
                        self.add_error(field, message)
        if cleaned.get("condition") is None:
            cleaned["condition"] = {}
        return cleaned


def _preview_link(query: str) -> str:
    """A link to the serving app's preview page, when that app provides one. Resolved by URL name:
    rules sits below serving and must not import it."""
    try:
        url = reverse("admin:serving_preview")
    except NoReverseMatch:
        return "-"
    return format_html('<a href="{}?{}">preview</a>', url, query)


class SceneListFilter(admin.SimpleListFilter):
    """Scenes a rule applies to, counting 'all scenes' rules in every one."""

    title = "scene"
    parameter_name = "scene"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(slug, slug) for slug in Scene.objects.order_by("slug").values_list("slug", flat=True)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[BusinessRule]) -> QuerySet[BusinessRule]:
        from django.db.models import Q

        if self.value():
            return queryset.filter(Q(all_scenes=True) | Q(scenes__slug=self.value())).distinct()
        return queryset


class ActiveNowFilter(admin.SimpleListFilter):
    title = "active now"
    parameter_name = "active_now"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[BusinessRule]) -> QuerySet[BusinessRule]:
        from django.db.models import Q

        now = timezone.now()
        active = (
            Q(enabled=True)
            & (Q(valid_from__isnull=True) | Q(valid_from__lte=now))
            & (Q(valid_until__isnull=True) | Q(valid_until__gt=now))
        )
        if self.value() == "yes":
            return queryset.filter(active)
        if self.value() == "no":
            return queryset.exclude(active)
        return queryset


@admin.register(Scene)
class SceneAdmin(admin.ModelAdmin):
    list_display = [
        "slug", "name", "default_n", "candidate_multiplier", "max_per_category", "mmr_enabled", "mmr_lambda",
        "fallback", "exclude_purchased_days", "enabled", "rules_link", "preview",
    ]  # fmt: skip
    list_filter = ["enabled", "mmr_enabled", "fallback"]
    search_fields = ["slug", "name"]
    readonly_fields = ["created_at", "updated_at", "preview"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description", "enabled", "preview"]}),
        ("List", {"fields": ["strategy", "default_n", "candidate_multiplier", "fallback"]}),
        (
            "Diversity",
            {
                "fields": ["max_per_category", "mmr_enabled", "mmr_lambda"],
                "description": "Applied after the rules: a cap per category, then an MMR re-rank over item "
                "embeddings (lambda 1 = plain score order, lower = more variety).",
            },
        ),
        ("Exclusions", {"fields": ["exclude_current_item", "exclude_purchased_days"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="rules")
    def rules_link(self, scene: Scene) -> str:
        url = reverse("admin:rules_businessrule_changelist") + f"?scene={scene.slug}"
        return format_html('<a href="{}">rules</a>', url)

    @admin.display(description="preview")
    def preview(self, scene: Scene) -> str:
        return _preview_link(f"scene={scene.slug}") if scene.pk else "-"


@admin.register(BusinessRule)
class BusinessRuleAdmin(admin.ModelAdmin):
    form = BusinessRuleForm
    list_display = [
        "name", "kind", "scene_list", "priority", "enabled", "active_now", "valid_from", "valid_until", "updated_at",
        "preview",
    ]  # fmt: skip
    list_filter = ["kind", "enabled", ActiveNowFilter, SceneListFilter, "all_scenes"]
    search_fields = ["name"]
    raw_id_fields = ["pinned_items"]
    filter_horizontal = ["scenes"]
    readonly_fields = ["created_at", "updated_at", "preview"]
    actions = ["enable_rules", "disable_rules"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled", "priority", "preview"]}),
        ("Where", {"fields": ["all_scenes", "scenes"]}),
        (
            "Which items",
            {
                "fields": ["condition", "filter_mode"],
                "description": "Filter, boost and bury rules act on the items matching the condition.",
            },
        ),
        ("Boost / bury", {"fields": ["weight_mode", "weight"]}),
        ("Pin", {"fields": ["position", "pinned_items"], "description": "Enter item ids (the lookup finds them)."}),
        ("When", {"fields": ["valid_from", "valid_until"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BusinessRule]:
        return super().get_queryset(request).prefetch_related("scenes")

    @admin.display(description="scenes")
    def scene_list(self, rule: BusinessRule) -> str:
        if rule.all_scenes:
            return "all"
        return ", ".join(scene.slug for scene in rule.scenes.all()) or "-"

    @admin.display(description="preview")
    def preview(self, rule: BusinessRule) -> str:
        return _preview_link(f"rule={rule.pk}") if rule.pk else "-"

    @admin.display(description="active now", boolean=True)
    def active_now(self, rule: BusinessRule) -> bool:
        now = timezone.now()
        return bool(
            rule.enabled
            and (rule.valid_from is None or rule.valid_from <= now)
            and (rule.valid_until is None or now < rule.valid_until)
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # The m2m signals bump the cache too; this covers a save that changed nothing many-to-many.
        services.rules_cache_bump()

    @admin.action(description="Enable the selected rules")
    def enable_rules(self, request: HttpRequest, queryset: QuerySet[BusinessRule]) -> None:
        changed = services.rule_set_enabled(rules=queryset, enabled=True)
        self.message_user(request, f"{changed} rule(s) enabled.", messages.SUCCESS)

    @admin.action(description="Disable the selected rules")
    def disable_rules(self, request: HttpRequest, queryset: QuerySet[BusinessRule]) -> None:
        changed = services.rule_set_enabled(rules=queryset, enabled=False)
        self.message_user(request, f"{changed} rule(s) disabled.", messages.SUCCESS)
