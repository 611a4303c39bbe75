from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from recadmin.catalog.cache import items_generation
from recadmin.catalog.models import Category
from tests.factories import CategoryFactory, ItemFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/categories"


def _paths() -> dict[str, str]:
    return dict(Category.objects.values_list("slug", "path"))


def _tree(api_client: APIClient) -> None:
    """beauty > skin > face, beauty > hair; the child rows come before their parents."""
    body = [
        {"slug": "face", "name": "Face", "parent": "skin"},
        {"slug": "skin", "name": "Skin", "parent": "beauty"},
        {"slug": "hair", "name": "Hair", "parent": "beauty"},
        {"slug": "beauty", "name": "Beauty", "parent": None},
    ]
    response = api_client.put(URL, body, format="json")
    assert response.status_code == 200, response.content


# --- auth and scopes -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [URL, f"{URL}/beauty"])
def test_it_answers_401_without_a_key(url: str) -> None:
    response = APIClient().get(url)
    assert response.status_code == 401
    assert "message" in response.json()


def test_any_valid_key_may_read_categories(make_api_client: Callable[..., APIClient]) -> None:
    CategoryFactory(slug="beauty", name="Beauty")
    client = make_api_client("recommend")

    assert [row["slug"] for row in client.get(URL).json()["results"]] == ["beauty"]
    assert client.get(f"{URL}/beauty").json()["name"] == "Beauty"


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_a_recommend_key_may_not_write_categories(make_api_client: Callable[..., APIClient], method: str) -> None:
    CategoryFactory(slug="beauty")
    client = make_api_client("recommend")
    url = URL if method == "put" else f"{URL}/beauty"

    response = getattr(client, method)(url, [{"slug": "x", "name": "X"}] if method == "put" else {}, format="json")

    assert response.status_code == 403
    assert response.json()["extra"]["required_scopes"] == ["ingest", "manage"]
    assert Category.objects.filter(slug="beauty").exists() and not Category.objects.filter(slug="x").exists()


@pytest.mark.parametrize("scope", ["ingest", "manage"])
def test_ingest_and_manage_keys_may_upsert_categories(make_api_client: Callable[..., APIClient], scope: str) -> None:
    response = make_api_client(scope).put(URL, [{"slug": "beauty", "name": "Beauty"}], format="json")
    assert response.status_code == 200
    assert response.json() == {"created": 1, "updated": 0, "errors": []}


# --- bulk upsert -----------------------------------------------------------------------------------


def test_parents_may_come_after_their_children_in_the_batch(api_client: APIClient) -> None:
    _tree(api_client)

    assert _paths() == {
        "beauty": "/beauty/",
        "skin": "/beauty/skin/",
        "face": "/beauty/skin/face/",
        "hair": "/beauty/hair/",
    }
    face = api_client.get(f"{URL}/face").json()
    assert (face["parent"], face["depth"]) == ("skin", 2)


def test_sending_the_same_batch_again_changes_nothing(api_client: APIClient) -> None:
    _tree(api_client)
    before = list(Category.objects.order_by("slug").values("id", "slug", "name", "parent_id", "path", "depth"))

    body = [
        {"slug": "beauty", "name": "Beauty", "parent": None},
        {"slug": "skin", "name": "Skin", "parent": "beauty"},
        {"slug": "face", "name": "Face", "parent": "skin"},
        {"slug": "hair", "name": "Hair", "parent": "beauty"},
    ]
    response = api_client.put(URL, {"categories": body}, format="json")

    assert response.status_code == 200
    assert response.json() == {"created": 0, "updated": 4, "errors": []}
    assert list(Category.objects.order_by("slug").values("id", "slug", "name", "parent_id", "path", "depth")) == before


def test_omitted_fields_keep_their_values(api_client: APIClient) -> None:
    _tree(api_client)

    api_client.put(URL, [{"slug": "skin", "name": "Skin care"}], format="json")

    skin = Category.objects.get(slug="skin")
    assert (skin.name, skin.path) == ("Skin care", "/beauty/skin/")


def test_moving_a_category_in_a_batch_moves_its_whole_subtree(api_client: APIClient) -> None:
    _tree(api_client)
    item = ItemFactory(shop_id="SKU-F", category=Category.objects.get(slug="face"))

    response = api_client.put(
        URL, [{"slug": "skin", "parent": "care"}, {"slug": "care", "name": "Care"}], format="json"
    )

    assert response.json() == {"created": 1, "updated": 1, "errors": []}
    assert _paths()["skin"] == "/care/skin/"
    assert _paths()["face"] == "/care/skin/face/"
    assert Category.objects.get(slug="face").depth == 2
    # Item filters by subtree follow the new paths.
    assert [r["shop_id"] for r in api_client.get("/api/v1/items", {"category": "care"}).json()["results"]] == [
        item.shop_id
    ]
    assert api_client.get("/api/v1/items", {"category": "beauty"}).json()["results"] == []


def test_a_parent_set_to_null_makes_a_root(api_client: APIClient) -> None:
    _tree(api_client)
    api_client.put(URL, [{"slug": "skin", "parent": None}], format="json")
    assert _paths()["face"] == "/skin/face/"


def test_an_unknown_parent_is_reported_and_the_other_rows_are_stored(api_client: APIClient) -> None:
    body = [
        {"slug": "beauty", "name": "Beauty"},
        {"slug": "skin", "name": "Skin", "parent": "beuaty"},
        {"slug": "face", "name": "Face", "parent": "skin"},  # its parent's row is rejected: so is it
    ]
    response = api_client.put(URL, body, format="json")

    assert response.status_code == 207
    errors = response.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(1, "parent"), (2, "parent")]
    assert "beuaty" in errors[0]["message"]
    assert response.json()["created"] == 1
    assert set(_paths()) == {"beauty"}


def test_a_cycle_within_the_batch_is_refused(api_client: APIClient) -> None:
    body = [
        {"slug": "a", "name": "A", "parent": "b"},
        {"slug": "b", "name": "B", "parent": "a"},
        {"slug": "c", "name": "C"},
    ]

    response = api_client.put(URL, body, format="json")

    assert response.status_code == 207
    errors = response.json()["errors"]
    assert errors and all(e["field"] == "parent" for e in errors) and "cycle" in errors[0]["message"]
    assert set(_paths()) == {"c"}  # a closed the cycle; b's parent a was then never stored
    # What was stored is a tree: every path ends in its own slug and starts at a root.
    for slug, path in _paths().items():
        assert path.endswith(f"/{slug}/") and path.count("/") - 2 == Category.objects.get(slug=slug).depth


def test_moving_a_category_below_its_own_descendant_is_refused(api_client: APIClient) -> None:
    _tree(api_client)

    response = api_client.put(URL, [{"slug": "beauty", "parent": "face"}], format="json")

    assert response.status_code == 207
    assert response.json()["errors"][0]["field"] == "parent"
    assert "cycle" in response.json()["errors"][0]["message"]
    assert _paths()["beauty"] == "/beauty/"


def test_a_swap_that_breaks_the_cycle_in_the_same_batch_is_accepted(api_client: APIClient) -> None:
    _tree(api_client)

    body = [{"slug": "beauty", "parent": "skin"}, {"slug": "skin", "parent": None}]
    response = api_client.put(URL, body, format="json")

    assert response.status_code == 200, response.content
    assert _paths()["skin"] == "/skin/"
    assert _paths()["beauty"] == "/skin/beauty/"
    assert _paths()["hair"] == "/skin/beauty/hair/"
    assert _paths()["face"] == "/skin/face/"


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"slug": "not a slug", "name": "X"}, "slug"),
        ({"name": "X"}, "slug"),
        ({"slug": "new"}, "name"),
        ({"slug": "x", "name": "X" * 201}, "name"),
        ({"slug": "x", "name": "X", "parent": "no slug!"}, "parent"),
        ({"slug": "x", "name": "X", "parent": "x"}, "parent"),
        ("x", "non_field_errors"),
    ],
)
def test_bad_rows_are_reported_with_their_field(api_client: APIClient, row: Any, field: str) -> None:
    response = api_client.put(URL, [{"slug": "ok", "name": "OK"}, row], format="json")

    assert response.status_code == 207
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, field)]
    assert Category.objects.filter(slug="ok").exists()


def test_a_body_that_is_not_a_list_is_a_400_naming_the_field(api_client: APIClient) -> None:
    response = api_client.put(URL, {"slug": "x"}, format="json")
    assert response.status_code == 400
    assert "categories" in response.json()["extra"]["fields"]


def test_more_than_ten_thousand_rows_are_refused(api_client: APIClient) -> None:
    rows = [{"slug": f"c{n}", "name": "C"} for n in range(10_001)]
    response = api_client.put(URL, rows, format="json")
    assert response.status_code == 400
    assert not Category.objects.exists()


def test_a_large_batch_takes_a_few_queries(api_client: APIClient) -> None:
    rows = [{"slug": f"root-{n}", "name": f"Root {n}"} for n in range(20)]
    rows += [{"slug": f"leaf-{n}", "name": f"Leaf {n}", "parent": f"root-{n % 20}"} for n in range(2000)]

    with CaptureQueriesContext(connection) as queries:
        response = api_client.put(URL, rows, format="json")

    assert response.json()["created"] == 2020
    assert Category.objects.get(slug="leaf-21").path == "/root-1/leaf-21/"
    assert len(queries) < 60  # auth, the tree read, batched inserts and updates: not one per row (2020)


def test_category_changes_invalidate_the_item_caches(
    api_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    _tree(api_client)
    before = items_generation()

    with django_capture_on_commit_callbacks(execute=True):
        api_client.put(URL, [{"slug": "skin", "parent": None}], format="json")

    assert items_generation() != before


# --- list ------------------------------------------------------------------------------------------


def test_the_list_filters_by_parent_and_pages_with_a_cursor(api_client: APIClient) -> None:
    _tree(api_client)

    children = api_client.get(URL, {"parent": "beauty"}).json()["results"]
    assert sorted(row["slug"] for row in children) == ["hair", "skin"]
    assert api_client.get(URL, {"parent": "nothing"}).json()["results"] == []

    first = api_client.get(URL, {"limit": 3}).json()
    second = api_client.get(first["next"]).json()
    assert len(first["results"]) == 3 and len(second["results"]) == 1
    assert {r["slug"] for r in first["results"] + second["results"]} == {"beauty", "skin", "face", "hair"}


def test_a_bad_parent_filter_is_a_400_naming_the_field(api_client: APIClient) -> None:
    response = api_client.get(URL, {"parent": "not a slug"})
    assert response.status_code == 400
    assert "parent" in response.json()["extra"]["fields"]
    # The schema says so: a fuzzer's "valid" parent is one the filter accepts.
    parameters = api_client.get("/api/schema/", {"format": "json"}).json()["paths"][URL]["get"]["parameters"]
    pattern = next(p for p in parameters if p["name"] == "parent")["schema"]["pattern"]
    assert re.search(pattern, "hair-care_2") and not re.search(pattern, "not a slug")


# --- one category ----------------------------------------------------------------------------------


def test_an_unknown_category_is_a_404(api_client: APIClient) -> None:
    assert api_client.get(f"{URL}/nope").status_code == 404
    assert api_client.patch(f"{URL}/nope", {"name": "X"}, format="json").status_code == 404
    assert api_client.delete(f"{URL}/nope").status_code == 404


def test_patch_moves_a_subtree_and_renames(api_client: APIClient) -> None:
    _tree(api_client)

    response = api_client.patch(f"{URL}/skin", {"parent": "hair", "name": "Skin care"}, format="json")

    assert response.status_code == 200
    assert (response.json()["path"], response.json()["parent"], response.json()["name"]) == (
        "/beauty/hair/skin/",
        "hair",
        "Skin care",
    )
    assert _paths()["face"] == "/beauty/hair/skin/face/"


def test_patch_may_change_the_slug_and_paths_follow(api_client: APIClient) -> None:
    _tree(api_client)

    response = api_client.patch(f"{URL}/skin", {"slug": "skincare"}, format="json")

    assert response.status_code == 200
    assert _paths()["face"] == "/beauty/skincare/face/"
    assert api_client.patch(f"{URL}/skincare", {"slug": "hair"}, format="json").status_code == 409


@pytest.mark.parametrize("parent", ["face", "skin", "nowhere"])
def test_patch_refuses_a_parent_below_itself_or_unknown(api_client: APIClient, parent: str) -> None:
    _tree(api_client)

    response = api_client.patch(f"{URL}/skin", {"parent": parent}, format="json")

    assert response.status_code == 400
    assert "parent" in response.json()["extra"]["fields"]
    assert _paths()["skin"] == "/beauty/skin/"


def test_delete_is_refused_while_items_use_the_category(api_client: APIClient) -> None:
    _tree(api_client)
    ItemFactory(category=Category.objects.get(slug="hair"))

    response = api_client.delete(f"{URL}/hair")

    assert response.status_code == 409
    assert response.json()["extra"]["items"] == 1
    assert Category.objects.filter(slug="hair").exists()


def test_delete_is_refused_while_child_categories_use_it(api_client: APIClient) -> None:
    _tree(api_client)

    response = api_client.delete(f"{URL}/skin")

    assert response.status_code == 409
    assert response.json()["extra"]["children"] == 1


def test_an_unused_category_is_deleted(api_client: APIClient) -> None:
    _tree(api_client)

    assert api_client.delete(f"{URL}/face").status_code == 204
    assert not Category.objects.filter(slug="face").exists()
    assert api_client.delete(f"{URL}/skin").status_code == 204
