"""Fixtures of the experiments tests: scenes, model versions, an experiment created through the service,
and the registry fixtures of tests/modelops (a real TorchServe) for promoting a winning model version."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from recadmin.experiments.models import Experiment
from recadmin.experiments.selectors import experiments_forget_local
from recadmin.modelops.models import ModelVersion
from recadmin.rules.models import Scene
from tests.modelops.conftest import archive_cache_dir, make_version  # noqa: F401 - fixtures for promotion
from tests.rules.factories import SceneFactory

ISSUE_EXAMPLE: dict[str, Any] = {
    "name": "sasrec v4 vs popular",
    "scenes": ["home"],
    "primary_metric": "ctr",
    "allocation": "fixed",
    "variants": [
        {"name": "control", "weight": 50},
        {"name": "v4", "weight": 50, "model_version": 4},
        {"name": "popular", "weight": 0, "strategy": ["popular"]},
        {"name": "no-mmr", "weight": 0, "scene_settings": {"mmr_enabled": False}},
    ],
}


@pytest.fixture(autouse=True)
def _fresh_process_cache() -> Iterator[None]:
    experiments_forget_local()
    yield
    experiments_forget_local()


@pytest.fixture
def scenes(db: None) -> dict[str, Scene]:
    return {
        slug: SceneFactory(slug=slug, mmr_enabled=True, max_per_category=3)
        for slug in ("home", "product_detail", "cart")
    }


@pytest.fixture
def v4(db: None) -> ModelVersion:
    ModelVersion.objects.create(name="recommender", version=3, kind="sasrec", status="default")
    return ModelVersion.objects.create(name="recommender", version=4, kind="sasrec", status="registered")


@pytest.fixture
def manage(make_api_client: Callable[..., APIClient], scenes: dict[str, Scene], v4: ModelVersion) -> APIClient:
    return make_api_client("manage")


@pytest.fixture
def make_experiment(scenes: dict[str, Scene], v4: ModelVersion) -> Callable[..., Experiment]:
    from recadmin.experiments.services import experiment_create

    def factory(**overrides: Any) -> Experiment:
        data = {**ISSUE_EXAMPLE, **overrides}
        return experiment_create(**data)

    return factory
