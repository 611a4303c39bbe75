"""Merchandiser admin for scenes and business rules.

The rule form validates with the same `rule_validate` as the services and the API: errors show next
to the field they concern (the condition's messages say where inside the JSON the problem is).
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, JsonResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from recadmin.catalog.models import Item
from recadmin.core.admin_base import CheckboxSelectMultiple, ModelAdmin, TextInputWidget
from recadmin.core.errors import ValidationError
from recadmin.core.history_admin import ChangeHistoryAdminMixin
from recadmin.rules import builder, engine, services
from recadmin.rules.conditions import ATTRIBUTE_PREFIX, ConditionError
from recadmin.rules.describe import condition_describe, rule_describe_instance
from recadmin.rules.models import BusinessRule, Scene
from recadmin.rules.validation import RuleSpec, condition_validate, rule_validate

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


class ConditionBuilderWidget(forms.Textarea):
    """The condition as builder rows (field, operator, value; all / any) above the JSON it writes.

    The rows post as cb_match / cb_field / cb_attr / cb_op / cb_value and the form turns them into
    the JSON condition (the API's format) on the server, so the builder needs no script to save; the
    script (rule_builder.js) adds rows, fits the operators to the field, keeps the JSON box in step
    and shows the live match count. A condition the rows cannot show (nested groups, "not") opens in
    the JSON box."""

    template_name = "admin/rules/condition_builder.html"

    def __init__(self) -> None:
        super().__init__(attrs={"rows": 10, "cols": 90, "style": "font-family: monospace", "spellcheck": "false"})
        self.posted: tuple[str, list[builder.Row]] | None = None
        self.posted_mode: str | None = None
        self.json_help: str = ""

    def format_value(self, value: Any) -> str | None:
        # Pretty-print so nested conditions are readable and errors easy to locate.
        if isinstance(value, str):
            try:
                return json.dumps(json.loads(value), indent=2)
            except ValueError:
                return value
        return super().format_value(value)

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        parsed: Any = value
        if isinstance(value, str):
            try:
                parsed = json.loads(value) if value.strip() else {}
            except ValueError:
                parsed = None
        shown = (
            self.posted
            if self.posted is not None
            else (builder.rows_from_condition(parsed) if isinstance(parsed, dict) else None)
        )
        mode = self.posted_mode or ("builder" if shown is not None else "json")
        match, rows = shown if shown is not None else (builder.MATCH_ALL, [])
        context["builder"] = {
            "mode": mode,
            "match": match,
            "rows": [_row_context(row) for row in rows] or [_row_context(builder.Row("", "", ""))],
            "schema": builder.builder_schema(),
            "count_url": _url("admin:rules_businessrule_match_count"),
            "items_url": _url("admin:rules_businessrule_item_search"),
            "effect_url": _url("admin:serving_rule_effect"),
            "json_help": self.json_help,
        }
        return context


def _row_context(row: builder.Row) -> dict[str, str]:
    if row.field.startswith(ATTRIBUTE_PREFIX):
        return {"field": ATTRIBUTE_PREFIX, "attr": row.field[len(ATTRIBUTE_PREFIX) :], "op": row.op, "value": row.value}
    return {"field": row.field, "attr": "", "op": row.op, "value": row.value}


def _url(name: str) -> str:
    try:
        return reverse(name)
    except NoReverseMatch:
        return ""


def posted_rows(data: Any) -> tuple[str, list[builder.Row]]:
    """The builder's rows from POST data (lists cb_field / cb_attr / cb_op / cb_value, in order)."""
    getlist = data.getlist if hasattr(data, "getlist") else (lambda key: list(data.get(key) or []))
    fields, attrs, ops, values = (getlist(key) for key in ("cb_field", "cb_attr", "cb_op", "cb_value"))
    rows: list[builder.Row] = []
    for index, field in enumerate(fields):
        attr = attrs[index] if index < len(attrs) else ""
        if field == ATTRIBUTE_PREFIX and attr.strip():
            field = ATTRIBUTE_PREFIX + attr.strip()
        rows.append(
            builder.Row(
                field=field,
                op=ops[index] if index < len(ops) else "",
                value=values[index] if index < len(values) else "",
            )
        )
    match = data.get("cb_match") or builder.MATCH_ALL
    return (builder.MATCH_ANY if match == builder.MATCH_ANY else builder.MATCH_ALL), rows


class ShopIdsWidget(TextInputWidget):
    """Items as their shop ids, comma-separated; the script adds a search by shop id or title."""

    def __init__(self) -> None:
        super().__init__(attrs={"class": "rb-shop-ids", "autocomplete": "off", "placeholder": "demo-sku-01999, ..."})

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return super().format_value(value)

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[str]:
        raw = data.getlist(name) if hasattr(data, "getlist") else [data.get(name) or ""]
        return [part.strip() for text in raw for part in str(text).replace("\n", ",").split(",") if part.strip()]


class ShopIdItemsField(forms.ModelMultipleChoiceField):
    """Pinned items given by shop id (the id the shop knows), never by the database's internal id."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            queryset=Item.objects.all(),
            to_field_name="shop_id",
            required=False,
            widget=ShopIdsWidget(),
            error_messages={"invalid_choice": "no item has the shop id %(value)s"},
            **kwargs,
        )

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [item.shop_id if isinstance(item, Item) else self._shop_id_of(item) for item in value]
        return super().prepare_value(value)

    def _shop_id_of(self, value: Any) -> Any:
        # An int here is a primary key from the initial data of a saved rule: show its shop id.
        if isinstance(value, int):
            return Item.objects.filter(pk=value).values_list("shop_id", flat=True).first() or value
        return value


# The fields that only some kinds of rule have, reset for the others so that a value left in a
# hidden field never makes a rule invalid.
KIND_FIELDS = {
    "filter_mode": {engine.KIND_FILTER},
    "weight": {engine.KIND_BOOST, engine.KIND_BURY},
    "weight_mode": {engine.KIND_BOOST, engine.KIND_BURY},
    "position": {engine.KIND_PIN},
    "pinned_items": {engine.KIND_PIN},
    "condition": {engine.KIND_FILTER, engine.KIND_BOOST, engine.KIND_BURY},
}
KIND_DEFAULTS: dict[str, Any] = {
    "filter_mode": engine.FILTER_EXCLUDE,
    "weight": None,
    "weight_mode": engine.WEIGHT_MULTIPLY,
    "position": None,
    "pinned_items": [],
    "condition": {},
}


class BusinessRuleForm(forms.ModelForm):
    pinned_items = ShopIdItemsField(
        label="Pinned items",
        help_text="Shop ids, comma-separated: type a shop id or a title to search. Several items fill "
        "consecutive positions in the order of their shop id.",
    )

    class Meta:
        model = BusinessRule
        fields = [
            "name", "kind", "enabled", "priority", "all_scenes", "scenes", "condition", "filter_mode",
            "weight_mode", "weight", "position", "pinned_items", "valid_from", "valid_until",
        ]  # fmt: skip
        # A shop has a handful of scenes: ticks read better (and fit the page) than a two-box selector.
        widgets = {"condition": ConditionBuilderWidget(), "scenes": CheckboxSelectMultiple()}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._builder_error: str | None = None
        if "condition" in self.fields:
            self.fields["condition"].required = False
            examples = format_html_join(
                "",
                "<li>{}: <code>{}</code></li>",
                ((title, json.dumps(example)) for title, example in CONDITION_EXAMPLES),
            )
            widget = self.fields["condition"].widget
            if isinstance(widget, ConditionBuilderWidget):
                # The JSON's reference goes with the JSON box; the field says how to use the rows.
                widget.json_help = format_html(
                    "{}<br>Examples:<ul>{}</ul>", self.fields["condition"].help_text, examples
                )
            self.fields["condition"].help_text = (
                "Rows joined by all / any; the count below says how many active items match. "
                "Nested groups or 'not': edit the JSON."
            )
        if self.is_bound and self.data.get("condition_mode") == "builder":
            self._condition_from_builder()

    def _condition_from_builder(self) -> None:
        """Builder mode: the rows, not the JSON box, are the condition (written into the data so the
        JSON field, the model and the validator see the same condition as from the API)."""
        match, rows = posted_rows(self.data)
        widget = self.fields["condition"].widget
        if isinstance(widget, ConditionBuilderWidget):
            widget.posted, widget.posted_mode = (match, rows), "builder"
        try:
            condition = builder.condition_from_rows(match, rows)
        except ConditionError as exc:
            self._builder_error = str(exc)
            condition = {}
        data = self.data.copy() if hasattr(self.data, "copy") else dict(self.data)
        data["condition"] = json.dumps(condition)
        self.data = data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self._builder_error:
            self.add_error("condition", self._builder_error)
        kind = cleaned.get("kind")
        if kind in engine.KINDS:
            for field, kinds in KIND_FIELDS.items():
                if kind not in kinds and field in cleaned:
                    cleaned[field] = KIND_DEFAULTS[field]
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
class SceneAdmin(ChangeHistoryAdminMixin, ModelAdmin):
    # Settings summarised in a few columns, so the list fits 1280 px without scrolling sideways.
    list_display = ["slug", "name", "list_settings", "diversity", "fallback_short", "enabled", "rules_link", "preview"]
    list_filter = ["enabled", "mmr_enabled", "fallback"]
    search_fields = ["slug", "name"]
    readonly_fields = ["created_at", "updated_at", "preview"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description", "enabled", "preview"]}),
        ("List", {"fields": ["strategy", "rank_by", "default_n", "candidate_multiplier", "fallback"]}),
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

    @admin.display(description="list")
    def list_settings(self, scene: Scene) -> str:
        text = f"{scene.default_n} items, {scene.candidate_multiplier}x candidates"
        if scene.exclude_purchased_days:
            text += f", bought <{scene.exclude_purchased_days} d out"
        return text

    @admin.display(description="diversity")
    def diversity(self, scene: Scene) -> str:
        parts = [f"max {scene.max_per_category}/category"] if scene.max_per_category else []
        if scene.mmr_enabled:
            parts.append(f"MMR {scene.mmr_lambda:g}")
        return ", ".join(parts) or "-"

    @admin.display(description="fallback", ordering="fallback")
    def fallback_short(self, scene: Scene) -> str:
        return "trending in category" if scene.fallback == engine.FALLBACK_CATEGORY else "trending overall"

    @admin.display(description="rules")
    def rules_link(self, scene: Scene) -> str:
        url = reverse("admin:rules_businessrule_changelist") + f"?scene={scene.slug}"
        return format_html('<a href="{}">rules</a>', url)

    @admin.display(description="preview")
    def preview(self, scene: Scene) -> str:
        return _preview_link(f"scene={scene.slug}") if scene.pk else "-"


@admin.register(BusinessRule)
class BusinessRuleAdmin(ChangeHistoryAdminMixin, ModelAdmin):
    form = BusinessRuleForm
    # What each rule does, in words, instead of a column per field: readable at 1280 px.
    list_display = ["name", "description", "priority", "active_now", "updated_at", "preview"]
    list_filter = ["kind", "enabled", ActiveNowFilter, SceneListFilter, "all_scenes"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "updated_at", "preview"]
    actions = ["enable_rules", "disable_rules"]
    # Each kind's fieldsets carry rb-for-<kind> classes: the builder script shows only the chosen kind's.
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled", "priority", "preview"]}),
        ("Where", {"fields": ["all_scenes", "scenes"]}),
        (
            "Which items",
            {
                "fields": ["condition", "filter_mode"],
                "classes": ["rb-for-filter", "rb-for-boost", "rb-for-bury"],
                "description": "Filter, boost and bury rules act on the items matching the condition.",
            },
        ),
        ("Boost / bury", {"fields": ["weight_mode", "weight"], "classes": ["rb-for-boost", "rb-for-bury"]}),
        (
            "Pin",
            {
                "fields": ["position", "pinned_items"],
                "classes": ["rb-for-pin"],
                "description": "The items to pin, by shop id (search by shop id or title).",
            },
        ),
        ("When", {"fields": ["valid_from", "valid_until"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    class Media:
        js = ["recadmin/rule_builder.js"]

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "match-count/",
                self.admin_site.admin_view(self.match_count_view),
                name="rules_businessrule_match_count",
            ),
            path(
                "item-search/",
                self.admin_site.admin_view(self.item_search_view),
                name="rules_businessrule_item_search",
            ),
        ]
        return own + super().get_urls()

    def match_count_view(self, request: HttpRequest) -> JsonResponse:
        """How many active items a condition matches: the builder's rows (cb_*) or `condition` (JSON).
        Answers the condition it counted, so the builder's JSON box shows what will be saved."""
        data = request.POST if request.method == "POST" else request.GET
        if not self.has_view_or_change_permission(request):
            return JsonResponse({"error": "permission denied"}, status=403)
        try:
            if data.get("condition_mode", "builder") == "builder" and "cb_field" in data:
                condition = builder.condition_from_rows(*posted_rows(data))
            else:
                condition = json.loads(data.get("condition") or "{}")
        except ConditionError as exc:
            return JsonResponse({"error": str(exc)}, status=400)
        except ValueError as exc:
            return JsonResponse({"error": f"the JSON condition does not parse: {exc}"}, status=400)
        if not condition:
            return JsonResponse({"condition": {}, "count": None, "total": None, "sample": [], "text": ""})
        try:
            condition_validate(condition, required=True)
        except ValidationError as exc:
            message = "; ".join(m for ms in (exc.extra.get("fields") or {}).values() for m in ms) or exc.message
            return JsonResponse({"error": message, "condition": condition}, status=400)
        counted = builder.condition_match_count(condition)
        return JsonResponse({**counted, "condition": condition, "text": condition_describe(condition)})

    def item_search_view(self, request: HttpRequest) -> JsonResponse:
        """Items for the pin picker: shop ids starting with, or titles containing, `q` (20 at most)."""
        if not self.has_view_or_change_permission(request):
            return JsonResponse({"error": "permission denied"}, status=403)
        query = (request.GET.get("q") or "").strip()
        if not query:
            return JsonResponse({"results": []})
        items = (
            Item.objects.filter(Q(shop_id__istartswith=query) | Q(title__icontains=query))
            .select_related("category")
            .order_by("shop_id")[:20]
        )
        return JsonResponse(
            {
                "results": [
                    {
                        "shop_id": item.shop_id,
                        "title": item.title,
                        "brand": item.brand,
                        "category": item.category.slug if item.category else "",
                        "active": item.is_active,
                    }
                    for item in items
                ]
            }
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[BusinessRule]:
        return super().get_queryset(request).prefetch_related("scenes", "pinned_items")

    @admin.display(description="what it does")
    def description(self, rule: BusinessRule) -> str:
        return rule_describe_instance(rule)

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
