"""An experiment end to end (issue 9 §5-§6): a model trained on the demo shop and served by a real
TorchServe, an experiment started through the API, the simulated shop's visitors against the live
server, then the served log and the report: customers in both variants."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.fixtures.torchserve import TorchServeInstance

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.torchserve]

SHOP = {"n_items": 240, "n_customers": 80, "seed": 5, "prefix": "demo-"}


def test_simulated_visitors_fill_both_variants_of_a_running_experiment(
    live_server: Any, torchserve_settings: TorchServeInstance
) -> None:
    from recadmin.core.services import api_key_create
    from recadmin.events.demo import demo_shop_build
    from recadmin.events.importers import dataset_load
    from recadmin.metrics.services import metrics_refresh
    from recadmin.modelops.models import ModelVersionStatus
    from recadmin.modelops.services import training_run_create, training_run_execute
    from recadmin.serving.models import ServedRecommendation

    call_command("seed_scenes", verbosity=0)
    dataset_load(demo_shop_build(n_events=3000, **SHOP), record_history=True)
    run = training_run_execute(run=training_run_create(kind="itemknn", enqueue=False))
    assert run.status == "succeeded", (run.error, run.log_tail[-2000:])
    assert run.model_versions.get().status == ModelVersionStatus.DEFAULT

    key = api_key_create(name="e2e", scopes=["ingest", "recommend", "manage"]).raw_key
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = {
        "name": "model vs popular (e2e)",
        "scenes": ["home"],
        "primary_metric": "ctr",
        "allocation": "fixed",
        "variants": [{"name": "control", "weight": 50}, {"name": "popular", "weight": 50, "strategy": ["popular"]}],
    }
    created = api.post("/api/v1/experiments", body, format="json")
    assert created.status_code == 201, created.json()
    experiment_id = created.json()["id"]
    assert api.post(f"/api/v1/experiments/{experiment_id}/start").status_code == 200

    out = StringIO()
    call_command(
        "simulate_traffic", url=live_server.url, key=key, seconds=6, rate=15, seed=3, shop_seed=SHOP["seed"],
        shop_items=SHOP["n_items"], shop_customers=SHOP["n_customers"], no_progress=True, json=True, stdout=out,
    )  # fmt: skip
    traffic = json.loads(out.getvalue())
    assert traffic["non_2xx"] == {}
    # The answers named the variants by name, and the simulator counted each one.
    assert set(traffic["variants"]) == {"control", "popular"}

    metrics_refresh()  # what the rollup task does every minute

    served = ServedRecommendation.objects.filter(experiment_id=experiment_id, scene="home")
    by_variant = {name: served.filter(variant__name=name) for name in ("control", "popular")}
    assert all(rows.exists() for rows in by_variant.values())
    # The control is the scene as it is: the trained model answers; the other arm serves trending items.
    assert by_variant["control"].filter(source="model").exists()
    assert not by_variant["popular"].filter(source="model").exists()

    report = api.get(f"/api/v1/experiments/{experiment_id}/report").json()
    rows = {row["name"]: row for row in report["variants"]}
    for name in ("control", "popular"):
        # Cold visitors (not in the catalog) count too: the unit is the shop's customer id.
        customers = served.filter(variant__name=name).values("customer_shop_id").distinct().count()
        assert rows[name]["customers"] == customers
        assert rows[name]["customers"] > 0 and rows[name]["lists"] > 0 and rows[name]["impressions"] > 0
    assert sum(row["clicks"] for row in rows.values()) > 0
    assert report["srm_p_value"] is not None and report["verdict"]
