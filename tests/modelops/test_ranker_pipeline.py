"""The ranker kind through the training pipeline: impressions exported from served pages and their
attributions, evaluated against the baselines, archived as its own .mar, registered in a real
TorchServe and gated on its hold-out AUCs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recadmin.events.models import Event
from recadmin.metrics.models import Attribution
from recadmin.modelops.models import ModelVersion, ModelVersionStatus
from recadmin.modelops.ranker_trainer import ranker_gate_decide
from recadmin.modelops.services import training_run_create, training_run_execute
from recadmin.serving.models import ServedRecommendation
from tests.factories import CategoryFactory, CustomerFactory, ItemFactory
from tests.fixtures.torchserve import TorchServeInstance
from training.ranker.synthetic import synthetic_impressions


def _served_log_from(table: Any) -> None:
    """The synthetic impressions as the product logs them: one page per request, the clicks and
    purchases as attributions."""
    categories = {}
    items = {}
    for shop_id, it in table.items.items():
        if it.category not in categories:
            categories[it.category] = CategoryFactory(name=it.category, slug=it.category)
        items[shop_id] = ItemFactory(
            shop_id=shop_id,
            category=categories[it.category],
            brand=it.brand,
            price=Decimal(str(it.price)),
            stock_quantity=int(it.stock),
        )
    # Each customer's history before the impressions, as their logged affinities describe it: the
    # export computes their profiles from these events.
    start = dt.datetime.fromtimestamp(float(table.timestamp.min()), tz=dt.UTC) - dt.timedelta(days=5)
    by_category: dict[str, list[str]] = {}
    for shop_id, it in table.items.items():
        by_category.setdefault(it.category, []).append(shop_id)
    events = []
    for number, (customer_id, profile) in enumerate(sorted(table.customers.items())):
        customer = CustomerFactory(shop_id=customer_id)
        favourite = next(iter(profile.brand_affinity), "")
        for category, share in profile.category_affinity.items():
            pool = by_category.get(category, [])
            preferred = [i for i in pool if table.items[i].brand == favourite] or pool
            for k in range(round(share * profile.activity)):
                events.append(
                    Event(
                        customer=customer,
                        item=items[preferred[(number + k) % len(preferred)]],
                        type="view",
                        occurred_at=start + dt.timedelta(minutes=number + k),
                        event_id=f"h{number}-{category}-{k}",
                    )
                )
    Event.objects.bulk_create(events)
    pages: dict[tuple[str, float], list[int]] = {}
    for row in range(len(table)):
        pages.setdefault((table.customer[row], float(table.timestamp[row])), []).append(row)
    n = 0
    for number, ((customer, ts), rows) in enumerate(pages.items()):
        at = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
        page = ServedRecommendation.objects.create(
            recommendation_id=f"r{number}",
            customer_shop_id=customer,
            scene=table.scene[rows[0]],
            source="model",
            created_at=at,
            n_items=len(rows),
            items=[
                {
                    "item": table.item[r],
                    "position": int(table.position[r]),
                    "score": float(table.retrieval_score[r]),
                    "source": table.source[r],
                    "rules": [],
                }
                for r in rows
            ],
        )
        for r in rows:
            for kind, happened in (("click", table.clicked[r]), ("purchase", table.purchased[r])):
                if happened:
                    n += 1
                    Attribution.objects.create(
                        event_id=n,
                        dedup_key=f"{kind}:{n}",
                        type=kind,
                        method="direct",
                        served_id=page.pk,
                        recommendation_id=page.recommendation_id,
                        served_hour=at,
                        position=int(table.position[r]),
                        item_id=items[table.item[r]].pk,
                        customer_shop_id=customer,
                        occurred_at=at + dt.timedelta(minutes=1),
                    )


@pytest.mark.django_db
@pytest.mark.slow
def test_the_ranker_kind_trains_on_served_impressions_and_serves_from_its_own_archive(
    torchserve_settings: TorchServeInstance,
) -> None:
    table = synthetic_impressions(customers=80, items=60, categories=4, brands=6, requests=2500, slate=8, seed=1)
    _served_log_from(table)

    run = training_run_create(kind="ranker", params={"max_epochs": 30, "seed": 1}, enqueue=False)
    assert run.model_name == "ranker"
    run = training_run_execute(run=run)

    assert run.status == "succeeded", (run.error, run.log_tail[-3000:])
    version = ModelVersion.objects.get(training_run=run)
    assert (version.name, version.kind, version.version) == ("ranker", "ranker", 1)
    assert version.num_events == len(table) == 20000
    assert Path(version.archive_path).name == "ranker-1.mar"
    metrics = version.test_metrics
    for key in ("ranker_click_auc", "logreg_click_auc", "retrieval_click_auc"):
        assert 0.0 <= metrics[key] <= 1.0
    beats = all(
        metrics[f"ranker_{m}"] > metrics[f"{b}_{m}"]
        for m in ("click_auc", "purchase_auc")
        for b in ("logreg", "retrieval")
        if f"ranker_{m}" in metrics and f"{b}_{m}" in metrics
    )
    # Promoted exactly when it beats both baselines on the hold-out.
    assert (version.status == ModelVersionStatus.DEFAULT) == beats, run.gate_decision
    if beats:  # with this seed it does (ESMM 0.765 vs logistic regression 0.762 click AUC)
        assert torchserve_settings.client.default_version("ranker") == "1"
    assert f"{metrics['ranker_click_auc']:.4f}" in run.gate_decision
    # The registered ranker scores candidates through TorchServe.
    answer = torchserve_settings.client.predict(
        "ranker",
        {
            "customer": {"activity": 3, "category_affinity": {"cat0": 1.0}},
            "scene": "home",
            "context": {"hour": 20, "weekday": 4, "device": "mobile"},
            "candidates": [{"item": "i0", "retrieval_score": 0.9, "source": "model"}, {"item": "i1"}],
        },
    )
    rows = answer if isinstance(answer, list) else answer["items"]
    assert [r["item"] for r in rows] == ["i0", "i1"]
    assert all(0.0 <= r["pctcvr"] <= r["pctr"] <= 1.0 for r in rows)


@pytest.mark.django_db
def test_too_few_impressions_fail_the_export_stage_with_a_reason() -> None:
    run = training_run_execute(run=training_run_create(kind="ranker", enqueue=False))
    assert run.status == "failed" and run.failed_stage == "exporting"
    assert "served impressions" in run.error


def _version(version: int, metrics: dict[str, float]) -> ModelVersion:
    return ModelVersion(name="ranker", version=version, kind="ranker", test_metrics=metrics)


GOOD = {"ranker_click_auc": 0.71, "logreg_click_auc": 0.66, "retrieval_click_auc": 0.6}


def test_the_ranker_gate_requires_beating_logistic_regression_and_the_retrieval_score() -> None:
    assert ranker_gate_decide(candidate=_version(1, GOOD), current=None, tolerance=0.0)[0]
    promote, why = ranker_gate_decide(
        candidate=_version(1, {**GOOD, "logreg_click_auc": 0.72}), current=None, tolerance=0.0
    )
    assert not promote and "logistic regression" in why and "0.7200" in why
    promote, why = ranker_gate_decide(
        candidate=_version(1, {**GOOD, "ranker_purchase_auc": 0.6, "retrieval_purchase_auc": 0.65}),
        current=None,
        tolerance=0.0,
    )
    assert not promote and "purchase AUC" in why and "retrieval score" in why


def test_the_ranker_gate_defends_the_current_default_within_the_tolerance() -> None:
    current = _version(1, {**GOOD, "ranker_click_auc": 0.75})
    assert not ranker_gate_decide(candidate=_version(2, GOOD), current=current, tolerance=0.01)[0]
    assert ranker_gate_decide(candidate=_version(2, GOOD), current=current, tolerance=0.05)[0]


@pytest.mark.django_db
def test_the_ranker_is_scheduled_under_its_own_name_beside_the_recommender() -> None:
    import json

    from recadmin.modelops.services import retraining_schedule_set

    ranker = retraining_schedule_set(kind="ranker", params={"max_epochs": 5}, hour=4)
    recommender = retraining_schedule_set(kind="pop", hour=3)

    assert ranker.pk != recommender.pk
    assert json.loads(ranker.kwargs) == {"kind": "ranker", "params": {"max_epochs": 5}, "model_name": "ranker"}
    assert json.loads(recommender.kwargs)["model_name"] == "recommender"
