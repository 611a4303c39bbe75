"""The dashboard panel of the rules app: the rules active now, in words."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from recadmin.rules.describe import rule_describe_instance
from recadmin.rules.models import BusinessRule

MAX_SHOWN = 12


def rules_panel(request: HttpRequest) -> list[dict[str, Any]]:
    now = timezone.now()
    active = (
        BusinessRule.objects.filter(enabled=True)
        .filter(Q(valid_from__isnull=True) | Q(valid_from__lte=now))
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=now))
        .prefetch_related("scenes", "pinned_items")
        .order_by("-priority", "id")
    )
    total = active.count()
    rows = [
        {
            "name": rule.name,
            "kind": rule.kind,
            "text": rule_describe_instance(rule, now=now),
            "url": reverse("admin:rules_businessrule_change", args=[rule.pk]),
        }
        for rule in active[:MAX_SHOWN]
    ]
    changelist = reverse("admin:rules_businessrule_changelist")
    return [
        {
            "title": "Rules active now",
            "template": "admin/dashboard/rules_active.html",
            "context": {
                "rules": rows,
                "total": total,
                "more": max(0, total - len(rows)),
                "list_url": f"{changelist}?active_now=yes",
                "add_url": reverse("admin:rules_businessrule_add"),
            },
            "width": "half",
        }
    ]
