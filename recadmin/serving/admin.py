"""Serving in the admin: the served-recommendations log (read-only, fast on millions of rows), the
fallback counters, and the preview page where a merchandiser sees what each rule did."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.dateparse import parse_datetime
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from recadmin.core.admin_base import ModelAdmin
from recadmin.core.errors import ApplicationError
from recadmin.serving import fallbacks
from recadmin.serving.models import ServedRecommendation
from recadmin.serving.popular import popular_status
from recadmin.serving.served_log import (
    served_log_backlog,
    served_log_drain,
    served_log_rejected,
    served_log_retry_rejected,
)
from recadmin.serving.services import MAX_N, parse_history, recommendations_build

# Counting more rows than this would scan the table; the admin says "10,000+" instead.
COUNT_CAP = 10_000


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows (a LIMITed subquery), so the change list of a table with
    millions of rows costs one cheap query instead of a full COUNT(*)."""

    @cached_property
    def count(self) -> int:
        return int(self.object_list[: COUNT_CAP + 1].count())  # type: ignore[attr-defined]


def _rejected_for_display() -> tuple[int, list[dict[str, Any]]]:
    """The served-log records the database refused: how many, and the latest five with their times parsed."""
    count, latest = served_log_rejected(limit=5)
    return count, [{**entry, "at": parse_datetime(str(entry.get("at") or ""))} for entry in latest]


@admin.register(ServedRecommendation)
class ServedRecommendationAdmin(ModelAdmin):
    list_display = [
        "created_at",
        "recommendation_id",
        "offset",
        "endpoint",
        "scene",
        "source",
        "fallback_reason",
        "model_label",
        "customer_shop_id",
        "n_items",
        "latency_ms",
    ]
    list_filter = ["source", "endpoint"]
    # Exact matches only: they use the indexes (a LIKE over millions of rows would not).
    search_fields = ["=recommendation_id", "=customer_shop_id", "=scene"]
    search_help_text = "Exact recommendation id, customer id or scene slug."
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    ordering = ["-id"]
    raw_id_fields = ["customer", "model_version"]
    readonly_fields = [
        "recommendation_id",
        "offset",
        "endpoint",
        "customer",
        "customer_shop_id",
        "scene",
        "model_version",
        "model_label",
        "source",
        "fallback_reason",
        "context_item",
        "category",
        "served_items",
        "n_items",
        "latency_ms",
        "created_at",
    ]
    exclude = ["items"]
    change_list_template = "admin/serving/servedrecommendation/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ServedRecommendation]:
        # The list needs no join: customer and version are shown from their denormalised strings.
        return super().get_queryset(request).defer("items")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Items served")
    def served_items(self, obj: ServedRecommendation) -> str:
        rows = obj.items or []
        return format_html(
            "<table><tr><th>position</th><th>item</th><th>score</th><th>rules</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (r.get("position"), r.get("item"), r.get("score"), ", ".join(map(str, r.get("rules") or [])))
                    for r in rows
                ),
            ),
        )

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("preview/", self.admin_site.admin_view(self.preview_view), name="serving_preview"),
            path(
                "fallback-reset/",
                self.admin_site.admin_view(self.fallback_reset_view),
                name="serving_fallback_reset",
            ),
            path("drain/", self.admin_site.admin_view(self.drain_view), name="serving_drain"),
            path(
                "retry-rejected/",
                self.admin_site.admin_view(self.retry_rejected_view),
                name="serving_retry_rejected",
            ),
            path("rule-effect/", self.admin_site.admin_view(self.rule_effect_view), name="serving_rule_effect"),
        ]
        return own + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {
            **(extra_context or {}),
            "fallback": fallbacks.fallback_summary(),
            "failure_reasons": fallbacks.FAILURE_REASONS,
            "backlog": served_log_backlog(),
            "rejected": _rejected_for_display(),
            "popular_status": popular_status(),
        }
        return super().changelist_view(request, extra_context=context)

    def fallback_reset_view(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            fallbacks.fallback_reset()
            messages.success(request, "Fallback counters reset.")
        return HttpResponseRedirect(reverse("admin:serving_servedrecommendation_changelist"))

    def drain_view(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            written = served_log_drain()
            messages.success(request, f"Wrote {written} served pages from the buffer.")
        return HttpResponseRedirect(reverse("admin:serving_servedrecommendation_changelist"))

    def retry_rejected_view(self, request: HttpRequest) -> HttpResponse:
        # After the cause is fixed (a column widened, a migration run): the pages go back to the
        # queue and are written now; any the database still refuses are set aside again.
        if request.method == "POST":
            sent = served_log_retry_rejected()
            written = served_log_drain()
            again = served_log_rejected(limit=0)[0]
            messages.success(
                request,
                f"Sent {sent} set-aside pages back to the log and wrote the buffer ({written} pages); "
                f"set aside now: {again}.",
            )
        return HttpResponseRedirect(reverse("admin:serving_servedrecommendation_changelist"))

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        # Links from other pages pre-fill the form (customer, scene or rule); the list is computed
        # once a scene is chosen.
        bound = bool(request.GET.get("scene"))
        form = PreviewForm(request.GET if bound else None, initial=_initial_from(request))
        result = None
        error = ""
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            history = parse_history(data["history"]) if data["history"].strip() else None
            try:
                result = recommendations_build(
                    customer=data["customer"],
                    scene=data["scene"],
                    n=data["n"],
                    item=data["item"] or None,
                    category=data["category"] or None,
                    history=history,
                    want_raw=True,
                )
            except ApplicationError as exc:
                error = exc.message
        context = {
            **self.admin_site.each_context(request),
            "title": "Preview recommendations",
            "opts": self.model._meta,
            "form": form,
            "result": result,
            "final": _display_rows(result.page) if result else [],
            "raw": result.raw[: result.n] if result else [],
            "report": json.dumps(result.engine_report, indent=1) if result else "",
            "error": error,
        }
        return TemplateResponse(request, "admin/serving/preview.html", context)

    def rule_effect_view(self, request: HttpRequest) -> HttpResponse:
        """'What this rule changes': the rule form's unsaved data (POST) applied to one customer's list
        in one scene, next to the same list without the rule. An HTML fragment for the rule form."""
        from recadmin.rules.admin import BusinessRuleForm
        from recadmin.rules.models import BusinessRule

        if request.method != "POST":
            return HttpResponse("POST the rule form.", status=405)
        rule_id = request.POST.get("effect_rule") or ""
        instance = BusinessRule.objects.filter(pk=int(rule_id)).first() if rule_id.isdigit() else None
        data = request.POST.copy()
        # The effect is shown on the scene asked for: the rule's own scenes need not be chosen yet.
        data["all_scenes"] = "on"
        form = BusinessRuleForm(data, instance=instance)
        context: dict[str, Any] = {"errors": [], "rows": []}
        if not form.is_valid():
            context["errors"] = [
                (f"{field}: " if field != "__all__" else "") + " ".join(map(str, messages_))
                for field, messages_ in form.errors.items()
            ]
            return TemplateResponse(request, "admin/serving/rule_effect.html", context)
        try:
            context.update(rule_effect(form.cleaned_data, rule_id=instance.pk if instance else None,
                                       scene=request.POST.get("effect_scene") or "home",
                                       customer=request.POST.get("effect_customer") or ""))  # fmt: skip
        except ApplicationError as exc:
            context["errors"] = [exc.message]
        return TemplateResponse(request, "admin/serving/rule_effect.html", context)


DRAFT_RULE_ID = 2**62  # sorts after every saved rule of the same priority, as a new rule would


def rule_effect(data: dict[str, Any], *, rule_id: int | None, scene: str, customer: str, n: int = 10) -> dict[str, Any]:
    """One customer's list in `scene` without the rule and with it (the unsaved form data), by the
    preview engine. The rule's dates are ignored: the question is what it does when it applies."""
    from recadmin.rules.engine import CompiledRule, RuleSet
    from recadmin.serving.models import ServedEndpoint
    from recadmin.serving.services import ListQuery, context_build, list_build
    from recadmin.serving.state import SceneBundle

    query = ListQuery(endpoint=ServedEndpoint.RECOMMENDATIONS, customer=customer, scene=scene, n=n)
    context = context_build(query)
    bundle = context.bundle
    draft = CompiledRule(
        id=rule_id or DRAFT_RULE_ID,
        name=data.get("name") or "this rule",
        kind=data["kind"],
        condition=data.get("condition") or None,
        filter_mode=data.get("filter_mode") or "exclude",
        weight=float(data["weight"]) if data.get("weight") is not None else 1.0,
        weight_mode=data.get("weight_mode") or "multiply",
        position=data.get("position"),
        pinned_items=tuple(sorted(item.shop_id for item in data.get("pinned_items") or [])),
        priority=int(data.get("priority") or 0),
        enabled=True,
    )
    others = tuple(rule for rule in bundle.ruleset.rules if rule.id != draft.id)
    with_rule = tuple(sorted([*others, draft], key=lambda rule: (-rule.priority, rule.id)))

    def build(rules: tuple[Any, ...], tag: str) -> Any:
        # The same request context (customer, history, strategy) with only the scene's rules swapped:
        # built, not served, so neither list is logged nor counted as a fallback.
        ruleset = RuleSet(scene=bundle.ruleset.scene, rules=rules, version=f"{bundle.ruleset.version}:{tag}")
        swapped = SceneBundle(settings=bundle.settings, ruleset=ruleset, enabled=bundle.enabled)
        return list_build(dataclasses.replace(context, bundle=swapped))

    before = build(others, "without")
    after = build(with_rule, "with")
    before_ids = [row["item"] for row in before.page]
    after_ids = [row["item"] for row in after.page]
    rows = []
    for index in range(max(len(before_ids), len(after_ids))):
        old = before.page[index] if index < len(before_ids) else None
        new = after.page[index] if index < len(after_ids) else None
        change = ""
        if new is not None:
            if new["item"] not in before_ids:
                change = "new"
            elif before_ids.index(new["item"]) != index:
                change = f"moved from {before_ids.index(new['item']) + 1}"
        touched = [_reason_text(reason) for reason in (new or {}).get("reasons", []) if reason.get("rule") == draft.id]
        rows.append({"position": index + 1, "before": old, "after": new, "change": change, "touched": touched})
    removed = [item for item in before_ids if item not in after_ids]
    return {
        "scene": scene,
        "customer": customer or "(no customer: cold start)",
        "source": after.source,
        "rows": rows,
        "removed": removed,
        "changed": before_ids != after_ids or any(row["touched"] for row in rows),
    }


def _scene_choices() -> list[tuple[str, str]]:
    from recadmin.rules.models import Scene

    return [(s.slug, f"{s.slug} ({s.name})") for s in Scene.objects.order_by("slug").only("slug", "name")]


class PreviewForm(forms.Form):
    scene = forms.ChoiceField(choices=())
    customer = forms.CharField(required=False, help_text="The shop's customer id: their live history is used.")
    history = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Or type a history: item ids, oldest first, separated by spaces or commas (replaces the customer's).",
    )
    item = forms.CharField(required=False, help_text="The item being viewed (optional).")
    category = forms.CharField(required=False, help_text="Category slug for the fallback (optional).")
    n = forms.IntegerField(min_value=1, max_value=MAX_N, initial=10)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["scene"].choices = _scene_choices()  # type: ignore[attr-defined]

    def clean_n(self) -> int:
        return int(self.cleaned_data.get("n") or 10)


def _initial_from(request: HttpRequest) -> dict[str, Any]:
    """Pre-fill from the links on the customer, scene and rule pages (?customer=, ?scene=, ?rule=)."""
    initial: dict[str, Any] = {"n": 10}
    for name in ("customer", "item", "category", "history"):
        if request.GET.get(name):
            initial[name] = request.GET[name]
    rule_id = request.GET.get("rule")
    if rule_id and rule_id.isdigit():
        from recadmin.rules.models import BusinessRule

        rule = BusinessRule.objects.filter(pk=int(rule_id)).prefetch_related("scenes").first()
        if rule is not None:
            scenes = list(rule.scenes.all())
            if scenes:
                initial["scene"] = scenes[0].slug
    return initial


def _reason_text(reason: dict[str, Any]) -> str:
    kind = reason.get("type")
    if kind in ("boosted", "buried"):
        change = f"{_num(reason.get('before'))} -> {_num(reason.get('after'))}"
        return (
            f"{kind} by rule #{reason.get('rule')} {reason.get('rule_name', '')} "
            f"({reason.get('mode')} {reason.get('weight')}: {change})"
        )
    if kind == "pinned" and "rule" in reason:
        return f"pinned at {reason.get('position')} by rule #{reason.get('rule')} {reason.get('rule_name', '')}"
    if kind == "similar_to":
        return f"similar to {reason.get('item')}"
    if kind == "popular_fallback":
        return f"popular fallback (trend {_num(reason.get('score'))})"
    if kind == "complements":
        return f"bought with or after {', '.join(str(i) for i in reason.get('items') or ())}"
    if kind == "recently_viewed" and "score" not in reason:
        return "viewed recently by the customer"
    return f"{kind} score {_num(reason.get('score'))}"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else str(value)


def _display_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "reason_texts": [_reason_text(r) for r in row["reasons"]]} for row in rows]
