"""The experiments' per-customer sums, recomputed for the (experiment, customer) pairs a run touched."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db.models import Count, Max, Min, Q, Sum

from recadmin.experiments.models import Experiment
from recadmin.experiments.services import CustomerSums, experiment_customers_upsert
from recadmin.metrics.models import Attribution
from recadmin.metrics.services.common import _chunks
from recadmin.serving.models import ServedRecommendation


def experiment_customers_refresh(*, pairs: Iterable[tuple[int, str]]) -> int:
    """Recompute the totals of these (experiment, customer) pairs from the served log and the
    attributions, and write them through experiments' upsert (absolute values: idempotent)."""
    by_experiment: dict[int, set[str]] = defaultdict(set)
    for experiment_id, customer in pairs:
        if customer:
            by_experiment[experiment_id].add(customer)
    written = 0
    # In id order: each upsert takes its experiment's row lock (see experiments.services.exposures).
    for experiment in Experiment.objects.filter(pk__in=list(by_experiment)).order_by("pk"):
        variant_ids = set(experiment.variants.values_list("pk", flat=True))
        for chunk in _chunks(sorted(by_experiment[experiment.pk])):
            served_sums: dict[tuple[int, str], dict[str, Any]] = {}
            served = (
                ServedRecommendation.objects.filter(
                    experiment_id=experiment.pk, customer_shop_id__in=chunk, variant_id__in=variant_ids
                )
                .values("variant_id", "customer_shop_id")
                .annotate(
                    exposures=Count("recommendation_id", distinct=True),
                    lists=Count("recommendation_id", distinct=True, filter=Q(n_items__gt=0)),
                    fallback_lists=Count(
                        "recommendation_id", distinct=True, filter=Q(source="fallback") | ~Q(fallback_reason="")
                    ),
                    impressions=Sum("n_items"),
                    first_seen_at=Min("created_at"),
                    last_seen_at=Max("created_at"),
                )
                .order_by()
            )
            for page_row in served:
                values: dict[str, Any] = dict(page_row)
                values["impressions"] = values["impressions"] or 0
                served_sums[(values["variant_id"], values["customer_shop_id"])] = values
            attributed = (
                Attribution.objects.filter(
                    experiment_id=experiment.pk, customer_shop_id__in=chunk, variant_id__in=variant_ids
                )
                .values("variant_id", "customer_shop_id")
                .annotate(
                    clicks=Count("pk", filter=Q(type="click")),
                    add_to_carts=Count("pk", filter=Q(type="add_to_cart")),
                    purchases=Count("pk", filter=Q(type="purchase")),
                    revenue=Sum("revenue"),
                )
                .order_by()
            )
            for event_row in attributed:
                row: dict[str, Any] = dict(event_row)
                # No pages (deleted from the log): keep what the events say.
                found = served_sums.setdefault(
                    (row["variant_id"], row["customer_shop_id"]),
                    {"variant_id": row["variant_id"], "customer_shop_id": row["customer_shop_id"]},
                )
                found.update(
                    clicks=row["clicks"],
                    add_to_carts=row["add_to_carts"],
                    purchases=row["purchases"],
                    revenue=row["revenue"] or Decimal(0),
                )
            sums = [CustomerSums(**values) for values in served_sums.values()]
            written += experiment_customers_upsert(experiment=experiment, rows=sums)
    return written
