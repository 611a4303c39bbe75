"""Compiled rule sets: what they hold, that they are cached, and that every edit invalidates them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from recadmin.core.errors import NotFound
from recadmin.rules import selectors, services
from recadmin.rules.engine import Candidate, Context, apply_rules
from recadmin.rules.models import Scene
from tests.rules.factories import BusinessRuleFactory, ItemFactory, SceneFactory

pytestmark = pytest.mark.django_db


def test_a_scene_gets_its_own_and_all_scenes_rules_but_not_disabled_or_expired_ones() -> None:
    home, cart = SceneFactory(slug="home"), SceneFactory(slug="cart")
    own = BusinessRuleFactory(name="own", scenes=[home], priority=1)
    everywhere = BusinessRuleFactory(name="everywhere", all_scenes=True, priority=5)
    BusinessRuleFactory(name="cart only", scenes=[cart])
    BusinessRuleFactory(name="off", scenes=[home], enabled=False)
    BusinessRuleFactory(name="expired", scenes=[home], valid_until=timezone.now() - dt.timedelta(hours=1),
                        valid_from=timezone.now() - dt.timedelta(days=1))  # fmt: skip
    future = BusinessRuleFactory(name="future", scenes=[home], valid_from=timezone.now() + dt.timedelta(days=1))
    ruleset = selectors.ruleset_for_scene("home")
    assert [rule.id for rule in ruleset.rules] == [everywhere.pk, own.pk, future.pk]
    assert not ruleset.rules[2].is_active(timezone.now())  # kept, the engine checks the window


def test_pins_compile_to_shop_ids() -> None:
    home = SceneFactory(slug="home")
    pin = BusinessRuleFactory(pin=True, scenes=[home], position=3,
                              pinned_items=[ItemFactory(shop_id="b"), ItemFactory(shop_id="a")])  # fmt: skip
    (compiled,) = selectors.ruleset_for_scene("home").rules
    assert compiled.id == pin.pk and compiled.pinned_items == ("a", "b") and compiled.position == 3


def test_a_warm_rule_set_costs_no_query() -> None:
    home = SceneFactory(slug="home")
    BusinessRuleFactory(scenes=[home])
    selectors.ruleset_for_scene("home")
    selectors.scene_settings_for_slug("home")
    with CaptureQueriesContext(connection) as queries:
        assert len(selectors.ruleset_for_scene("home").rules) == 1
        settings, enabled = selectors.scene_settings_for_slug("home")  # type: ignore[misc]
        assert selectors.scene_settings_for_slug("nowhere") is None
        assert selectors.scene_settings_for_slug("nowhere") is None
    assert settings.slug == "home" and enabled
    assert len(queries) == 1  # the first lookup of the unknown scene; it is cached too


def test_editing_a_rule_through_the_service_invalidates_the_cache(django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    home = SceneFactory(slug="home")
    rule = BusinessRuleFactory(scenes=[home], weight=1.5)
    assert selectors.ruleset_for_scene("home").rules[0].weight == 1.5
    with django_capture_on_commit_callbacks(execute=True):
        services.rule_update(rule=rule, data={"weight": 3.0})
    assert selectors.ruleset_for_scene("home").rules[0].weight == 3.0


def test_direct_orm_edits_and_m2m_changes_invalidate_the_cache() -> None:
    home, cart = SceneFactory(slug="home"), SceneFactory(slug="cart")
    rule = BusinessRuleFactory(scenes=[home])
    assert len(selectors.ruleset_for_scene("cart").rules) == 0
    rule.scenes.add(cart)  # as the admin's many-to-many widget does
    assert len(selectors.ruleset_for_scene("cart").rules) == 1
    rule.enabled = False
    rule.save()
    assert len(selectors.ruleset_for_scene("cart").rules) == 0
    item = ItemFactory(shop_id="pinned")
    pin = BusinessRuleFactory(pin=True, scenes=[home])
    assert selectors.ruleset_for_scene("home").rules[0].pinned_items == ()
    pin.pinned_items.add(item)
    assert selectors.ruleset_for_scene("home").rules[0].pinned_items == ("pinned",)
    pin.delete()
    assert selectors.ruleset_for_scene("home").rules == ()


def test_scene_edits_invalidate_the_cached_settings() -> None:
    SceneFactory(slug="home", max_per_category=None)
    assert selectors.scene_settings_get("home").max_per_category is None  # type: ignore[union-attr]
    services.scene_update(scene=Scene.objects.get(slug="home"), data={"max_per_category": 2, "enabled": False})
    settings, enabled = selectors.scene_settings_for_slug("home")  # type: ignore[misc]
    assert settings.max_per_category == 2 and enabled is False
    services.scene_delete(scene=Scene.objects.get(slug="home"))
    assert selectors.scene_settings_get("home") is None


def test_a_lost_version_key_never_brings_back_an_old_rule_set() -> None:
    from django.core.cache import cache

    home = SceneFactory(slug="home")
    rule = BusinessRuleFactory(scenes=[home])
    assert len(selectors.ruleset_for_scene("home").rules) == 1
    cache.delete(selectors.VERSION_KEY)  # evicted, or Redis restarted without persistence
    BusinessRuleFactory._meta.model.objects.filter(pk=rule.pk).update(enabled=False)  # no signal fires
    assert selectors.ruleset_for_scene("home").rules == ()


def test_scene_get_raises_not_found_naming_the_scene() -> None:
    with pytest.raises(NotFound) as caught:
        selectors.scene_get("nowhere")
    assert "nowhere" in caught.value.message


def test_the_compiled_rules_drive_the_engine_end_to_end() -> None:
    home = SceneFactory(slug="home", max_per_category=1)
    item = ItemFactory(shop_id="promo")
    BusinessRuleFactory(name="no acme", kind="filter", weight=None, scenes=[home],
                        condition={"field": "brand", "op": "eq", "value": "acme"})  # fmt: skip
    BusinessRuleFactory(pin=True, name="promo", scenes=[home], position=1, pinned_items=[item])
    candidates = [
        Candidate("a", 0.9, category="x", brand="acme"),
        Candidate("b", 0.8, category="x", brand="globex"),
        Candidate("c", 0.7, category="y", brand="globex"),
        Candidate("promo", 0.1, category="z"),
    ]
    settings, _ = selectors.scene_settings_for_slug("home")  # type: ignore[misc]
    ranking = apply_rules(candidates, selectors.ruleset_for_scene("home"), settings, Context(now=timezone.now()), n=5)
    assert [i.item_id for i in ranking.items] == ["promo", "b", "c"]


def test_seed_scenes_creates_the_standard_scenes_once_and_keeps_edits(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("seed_scenes")
    assert set(Scene.objects.values_list("slug", flat=True)) == {"home", "product_detail", "cart", "email"}
    assert Scene.objects.get(slug="product_detail").fallback == "category"
    Scene.objects.filter(slug="home").update(default_n=42)
    call_command("seed_scenes")
    assert Scene.objects.count() == 4 and Scene.objects.get(slug="home").default_n == 42
    assert "exists, left unchanged" in capsys.readouterr().out
    for scene in Scene.objects.all():
        scene.full_clean()


@pytest.mark.redis
def test_rule_sets_are_stored_in_redis_when_configured(settings) -> None:  # type: ignore[no-untyped-def]
    from django_redis import get_redis_connection

    SceneFactory(slug="home")
    selectors.ruleset_for_scene("home")
    pattern = f"{settings.CACHE_KEY_PREFIX}:*rules:ruleset:*:home"  # this run's keys only
    keys = [key.decode() for key in get_redis_connection("default").scan_iter(pattern)]
    assert len(keys) == 1


def test_a_cache_outage_falls_back_to_the_database(settings) -> None:  # type: ignore[no-untyped-def]
    home = SceneFactory(slug="home")
    BusinessRuleFactory(scenes=[home])
    # A Redis that refuses connections: reads and writes fail, the rules still come from the database.
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    assert len(selectors.ruleset_for_scene("home").rules) == 1
    assert selectors.scene_settings_get("home") is not None
    services.scene_update(scene=home, data={"default_n": 5})  # the bump must not fail either
