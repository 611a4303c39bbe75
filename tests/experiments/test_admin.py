"""The experiments admin: pages load, creation with inline variants validates like the API, and start /
stop / promote are confirmed on an intermediate page before anything happens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from recadmin.experiments.models import Experiment
from recadmin.modelops.models import ModelVersion
from recadmin.rules.models import Scene

pytestmark = pytest.mark.django_db


def _form(scenes: dict[str, Scene], variants: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Admin experiment",
        "hypothesis": "",
        "scenes": [scenes["home"].pk],
        "primary_metric": "ctr",
        "allocation": "fixed",
        "thompson_floor": "0.05",
        "fallback_share_max": "",
        "p95_latency_ms_max": "",
        "minimum_sample": "",
        "variants-TOTAL_FORMS": str(len(variants)),
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "1000",
    }
    for i, variant in enumerate(variants):
        data[f"variants-{i}-position"] = str(i)
        data[f"variants-{i}-name"] = variant.get("name", "")
        data[f"variants-{i}-weight"] = str(variant.get("weight", ""))
        data[f"variants-{i}-model_version"] = str(variant.get("model_version", ""))
        data[f"variants-{i}-strategy"] = variant.get("strategy", "null")
        data[f"variants-{i}-scene_settings"] = variant.get("scene_settings", "null")
    data.update(overrides)
    return data


def test_the_pages_load(admin_client: Client, make_experiment: Callable[..., Experiment]) -> None:
    draft = make_experiment()
    running = make_experiment(name="running", scenes=["cart"], status="running")
    for url in [
        reverse("admin:experiments_experiment_changelist"),
        reverse("admin:experiments_experiment_changelist") + "?status__exact=running",
        reverse("admin:experiments_experiment_add"),
        reverse("admin:experiments_experiment_change", args=[draft.pk]),
        reverse("admin:experiments_experiment_change", args=[running.pk]),
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_an_experiment_is_created_with_inline_variants(
    admin_client: Client, scenes: dict[str, Scene], v4: ModelVersion
) -> None:
    data = _form(
        scenes,
        [
            {"name": "control", "weight": 50},
            {"name": "v4", "weight": 50, "model_version": v4.pk},
            {"name": "popular", "weight": 0, "strategy": '["popular"]'},
        ],
    )
    response = admin_client.post(reverse("admin:experiments_experiment_add"), data)
    assert response.status_code == 302, response.context["errors"] if response.context else response
    experiment = Experiment.objects.get(name="Admin experiment")
    assert [(v.name, v.weight) for v in experiment.variants.order_by("position")] == [
        ("control", 50.0),
        ("v4", 50.0),
        ("popular", 0.0),
    ]
    assert experiment.status == "draft" and experiment.variants.get(name="popular").strategy == ["popular"]


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([{"name": "a", "weight": 0}, {"name": "b", "weight": 0}], "weights must sum to a positive number"),
        ([{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "strategy": '["bestsellers"]'}], "unknown source"),
        (
            [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "scene_settings": '{"mmr_lambda": 3}'}],
            "mmr_lambda",
        ),
        ([{"name": "a", "weight": 1}], "at least two variants"),
    ],
)
def test_bad_variants_are_refused_in_the_form(
    admin_client: Client, scenes: dict[str, Scene], variants: list[dict[str, Any]], message: str
) -> None:
    response = admin_client.post(reverse("admin:experiments_experiment_add"), _form(scenes, variants))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Experiment.objects.exists()


def test_start_and_stop_are_confirmed_first(admin_client: Client, make_experiment: Callable[..., Experiment]) -> None:
    experiment = make_experiment()
    url = reverse("admin:experiments_experiment_changelist")
    asked = admin_client.post(url, {"action": "start_experiments", "_selected_action": [experiment.pk]})
    assert asked.status_code == 200 and "Start these experiments?" in asked.content.decode()
    experiment.refresh_from_db()
    assert experiment.status == "draft"
    done = admin_client.post(
        url, {"action": "start_experiments", "_selected_action": [experiment.pk], "confirm": "yes"}, follow=True
    )
    assert "done" in done.content.decode()
    experiment.refresh_from_db()
    assert experiment.status == "running"

    admin_client.post(url, {"action": "stop_experiments", "_selected_action": [experiment.pk], "confirm": "yes"})
    experiment.refresh_from_db()
    assert experiment.status == "stopped"


def test_a_conflicting_start_shows_the_reason(admin_client: Client, make_experiment: Callable[..., Experiment]) -> None:
    make_experiment(status="running")
    second = make_experiment(name="second")
    url = reverse("admin:experiments_experiment_changelist")
    response = admin_client.post(
        url, {"action": "start_experiments", "_selected_action": [second.pk], "confirm": "yes"}, follow=True
    )
    assert "already runs experiment" in response.content.decode()
    second.refresh_from_db()
    assert second.status == "draft"


def test_promote_the_winner_asks_which_variant_then_promotes_it(
    admin_client: Client, make_experiment: Callable[..., Experiment]
) -> None:
    experiment = make_experiment(status="running")
    url = reverse("admin:experiments_experiment_changelist")
    asked = admin_client.post(url, {"action": "promote_winner", "_selected_action": [experiment.pk]})
    page = asked.content.decode()
    assert "no-mmr: scene settings mmr_enabled=False" in page and 'name="variant"' in page
    no_mmr = experiment.variants.get(name="no-mmr")
    admin_client.post(
        url,
        {"action": "promote_winner", "_selected_action": [experiment.pk], "confirm": "yes", "variant": no_mmr.pk},
    )
    assert Scene.objects.get(slug="home").mmr_enabled is False
    experiment.refresh_from_db()
    assert experiment.promoted_variant == no_mmr and experiment.status == "stopped"
