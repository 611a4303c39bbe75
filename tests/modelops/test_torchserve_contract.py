"""The adapter package: what importers use is re-exported, and the handler's request/answer contract."""

from __future__ import annotations

import importlib

import pytest

from recadmin.modelops import torchserve
from recadmin.modelops.torchserve import MAX_K, history_request, ranked_answer, similar_request


@pytest.mark.parametrize("name", torchserve.__all__)
def test_every_exported_name_is_importable_from_the_package(name: str) -> None:
    assert getattr(importlib.import_module("recadmin.modelops.torchserve"), name) is not None


def test_the_package_paths_still_point_at_the_repository_files() -> None:
    assert torchserve.BASE_PROPERTIES.is_file()
    assert torchserve.LOG_CONFIG.is_file()


def test_the_handler_and_the_adapter_agree_on_max_k() -> None:
    source = (torchserve.BASE_PROPERTIES.parent / "recommender_handler.py").read_text()

    assert f"MAX_K = {MAX_K}\n" in source


def test_a_history_request_is_capped_at_max_k() -> None:
    assert history_request(["a", "b"], k=5, exclude=["c"]) == {"history": ["a", "b"], "k": 5, "exclude": ["c"]}
    assert history_request(["a"], k=MAX_K * 3)["k"] == MAX_K


def test_a_similar_request_names_the_item_and_excludes_only_when_asked() -> None:
    assert similar_request("sku-1", k=10) == {"similar_to": "sku-1", "k": 10}
    assert similar_request("sku-1", k=10, exclude=["sku-2"])["exclude"] == ["sku-2"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([{"item": "a", "score": 2}, {"item": "b", "score": None}], [("a", 2.0), ("b", 0.0)]),
        ({"items": [{"item": 7, "score": 1.5}]}, [("7", 1.5)]),
        ([{"no": "item"}, "junk", {"item": "c", "score": 1}], [("c", 1.0)]),
        ({"error": "x"}, None),
        ("text", None),
    ],
)
def test_an_answer_is_read_as_items_and_scores(answer: object, expected: object) -> None:
    assert ranked_answer(answer) == expected
