"""A scene's strategy (its chain of candidate sources): API, services, validation and the cached settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.test import APIClient

from recadmin.core.errors import ValidationError
from recadmin.rules.models import Scene
from recadmin.rules.params import STRATEGY_SOURCES, default_strategy, strategy_resolve
from recadmin.rules.selectors import scene_settings_get
from recadmin.rules.services import scene_update
from tests.rules.factories import SceneFactory

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def manage(make_api_client: Callable[..., APIClient]) -> APIClient:
    SceneFactory(slug="home")
    return make_api_client("manage")


def test_a_scene_strategy_is_set_and_read_through_the_api(manage: APIClient) -> None:
    patched = manage.patch("/api/v1/scenes/home", {"strategy": ["recently_viewed", "model", "popular"]}, format="json")

    assert patched.status_code == 200, patched.content
    assert patched.json()["strategy"] == ["recently_viewed", "model", "popular"]
    assert Scene.objects.get(slug="home").strategy == ["recently_viewed", "model", "popular"]
    created = manage.post("/api/v1/scenes", {"slug": "cart", "name": "Cart"}, format="json").json()
    assert created["strategy"] == []  # empty: the slug's default


@pytest.mark.parametrize("strategy", [["model", "bestsellers"], ["model", "model"], "model", [1, 2], ["popular"] * 9])
def test_a_bad_strategy_is_a_400_naming_strategy(manage: APIClient, strategy: object) -> None:
    response = manage.patch("/api/v1/scenes/home", {"strategy": strategy}, format="json")

    assert response.status_code == 400, response.content
    assert "strategy" in response.json()["extra"]["fields"]
    assert Scene.objects.get(slug="home").strategy == []


def test_the_services_and_the_admin_form_validate_the_names_too(db: None) -> None:
    scene = SceneFactory(slug="product_detail")

    with pytest.raises(ValidationError) as refused:
        scene_update(scene=scene, data={"strategy": ["similar", "nearest"]})
    assert "strategy" in refused.value.extra["fields"]
    scene.strategy = ["nearest"]
    with pytest.raises(DjangoValidationError):
        scene.full_clean()


def test_the_cached_scene_settings_carry_the_strategy(db: None) -> None:
    scene = SceneFactory(slug="cart")
    assert scene_settings_get("cart").strategy == ()  # type: ignore[union-attr]

    scene_update(scene=scene, data={"strategy": ["complementary", "popular"]})

    assert scene_settings_get("cart").strategy == ("complementary", "popular")  # type: ignore[union-attr]


def test_defaults_by_slug() -> None:
    assert default_strategy("home") == ("model", "popular")
    assert default_strategy("product_detail") == ("similar", "model", "popular")
    assert default_strategy("cart") == ("complementary", "model", "popular")
    assert default_strategy("search") == ("model", "popular")
    assert strategy_resolve("cart", ("popular",)) == ("popular",)
    assert set(STRATEGY_SOURCES) == {"model", "similar", "complementary", "popular", "recently_viewed"}


def test_experiments_validate_against_the_same_names() -> None:
    from recadmin.experiments.params import STRATEGY_SOURCES as EXPERIMENT_SOURCES

    assert EXPERIMENT_SOURCES is STRATEGY_SOURCES
