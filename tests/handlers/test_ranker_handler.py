"""The ranker's TorchServe handler in-process, with TorchServe's own Context (as a worker builds
it) around a trained ranker checkpoint: single requests, batches, new items and bad input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ts.context import Context
from ts.utils.util import PredictionException

from handlers.ranker_handler import RankerHandler
from recadmin.modelops.archive import archive_build, archive_manifest
from tests.handlers import helpers
from tests.handlers.helpers import run
from training.ranker.checkpoint import RANKER_CHECKPOINT_FILES
from training.ranker.export import train_ranker_checkpoint
from training.ranker.features import CustomerFeatures, FeatureSpec, ImpressionTable
from training.ranker.synthetic import START, synthetic_impressions

WHEN = START + 5 * 86400 + 20 * 3600  # an evening


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    torch.set_num_threads(1)
    table = synthetic_impressions(customers=100, items=60, requests=600, seed=1)
    exported = train_ranker_checkpoint(table, tmp_path_factory.mktemp("ranker"), params={"max_epochs": 3}, seed=0)
    return exported.directory, exported.model, table


def make_context(model_dir: Path, settings: dict[str, Any] | None = None) -> Context:
    return helpers.make_context("ranker", model_dir, {"max_candidates": 50, **(settings or {})})


@pytest.fixture
def context(trained: tuple[Path, Any, Any]) -> Context:
    return make_context(trained[0])


@pytest.fixture
def handler(context: Context) -> RankerHandler:
    h = RankerHandler()
    h.initialize(context)
    return h


CUSTOMER = {
    "activity": 14,
    "recency_days": 2.5,
    "category_affinity": {"cat1": 0.6, "cat3": 0.4},
    "brand_affinity": {"brand2": 0.5},
    "price_sensitivity": 0.8,
}


def request(items: list[str], *, scene: str = "home", customer: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "customer": CUSTOMER if customer is None else customer,
        "scene": scene,
        "context": {"timestamp": WHEN, "device": "mobile"},
        "candidates": [
            {"item": item, "retrieval_score": 1.0 - 0.05 * n, "source": "model" if n % 3 else "popular"}
            for n, item in enumerate(items)
        ],
    }


def through_training_path(directory: Path, model: Any, table: ImpressionTable, body: dict[str, Any]):
    spec = FeatureSpec.from_json((directory / "features.json").read_text())
    n = len(body["candidates"])
    rows = ImpressionTable(
        customer=["someone"] * n,
        item=[c["item"] for c in body["candidates"]],
        scene=[body["scene"]] * n,
        position=np.full(n, 7),
        retrieval_score=np.array([c["retrieval_score"] for c in body["candidates"]], dtype=np.float32),
        source=[c["source"] for c in body["candidates"]],
        timestamp=np.full(n, WHEN),
        clicked=np.zeros(n, dtype=bool),
        purchased=np.zeros(n, dtype=bool),
        customers={"someone": CustomerFeatures.from_dict(body["customer"])},
        items=table.items,
        device=[body["context"]["device"]] * n,
    )
    p_ctr, p_ctcvr = model.predict(spec.transform(rows, position=spec.serving_position))
    return p_ctr.tolist(), p_ctcvr.tolist()


def test_it_reads_its_settings_from_the_model_yaml(handler: RankerHandler) -> None:
    assert handler.max_candidates == 50


def test_a_request_gets_pctr_and_pctcvr_per_candidate_in_order_as_the_training_features_give(
    handler: RankerHandler, context: Context, trained: tuple[Path, Any, Any]
) -> None:
    directory, model, table = trained
    items = [f"i{j}" for j in range(0, 40, 3)]
    body = request(items)
    [answer] = run(handler, context, body)
    assert [row["item"] for row in answer] == items
    ctr, ctcvr = through_training_path(directory, model, table, body)
    assert [row["pctr"] for row in answer] == pytest.approx(ctr, abs=2e-6)
    assert [row["pctcvr"] for row in answer] == pytest.approx(ctcvr, abs=2e-6)
    assert all(0 < row["pctcvr"] <= row["pctr"] < 1 for row in answer)
    assert len({row["pctr"] for row in answer}) > 1  # the candidates are told apart


def test_a_batch_scores_each_request_as_it_would_alone(handler: RankerHandler, context: Context) -> None:
    bodies = [
        request(["i1", "i2", "i3"]),
        request([f"i{j}" for j in range(20)], scene="cart", customer={"price_sensitivity": 0.1}),
        request(["i5"], scene="product", customer={}),
    ]
    together = run(handler, context, *bodies)
    alone = [run(handler, context, body)[0] for body in bodies]
    assert [len(a) for a in together] == [3, 20, 1]
    for a, b in zip(together, alone, strict=True):
        assert [r["item"] for r in a] == [r["item"] for r in b]
        assert [r["pctr"] for r in a] == pytest.approx([r["pctr"] for r in b], abs=2e-6)
        assert [r["pctcvr"] for r in a] == pytest.approx([r["pctcvr"] for r in b], abs=2e-6)
    # The customer and the scene matter: the same item scores differently across requests.
    assert together[0][0]["pctcvr"] != together[1][1]["pctcvr"]


def test_attributes_describe_new_items_and_override_the_item_table(handler: RankerHandler, context: Context) -> None:
    body = request(["i4", "i4", "brand-new", "brand-new"])
    body["candidates"][1]["attributes"] = {"stock": 0, "price": 5000.0}
    body["candidates"][3]["attributes"] = {"category": "cat1", "brand": "brand2", "price": 30.0, "stock": 10}
    [answer] = run(handler, context, body)
    assert answer[0]["pctcvr"] != answer[1]["pctcvr"]
    assert answer[2]["pctr"] != answer[3]["pctr"]
    assert [r["item"] for r in answer] == ["i4", "i4", "brand-new", "brand-new"]


def as_columns(body: dict[str, Any], **extra: list[Any]) -> dict[str, Any]:
    rows = body["candidates"]
    columns = {key: [c[key] for c in rows] for key in ("item", "retrieval_score", "source")}
    return {**body, "candidates": {**columns, **extra}}


def test_columns_score_as_one_object_per_candidate_does_with_the_same_price_and_stock_overrides(
    handler: RankerHandler, context: Context
) -> None:
    items = ["i4", "i4", "i7", "brand-new", "i2"]
    body = request(items)
    by_rows = json.loads(json.dumps(body))
    by_rows["candidates"][1]["attributes"] = {"stock": 0, "price": 5000.0}
    by_rows["candidates"][2]["attributes"] = {"price": 0.5}
    by_rows["candidates"][3]["attributes"] = {"stock": 4, "price": 12.0}
    columns = as_columns(body, price=[None, 5000.0, 0.5, 12.0, None], stock=[None, 0, None, 4, None])

    [expected] = run(handler, context, by_rows)
    [answer] = run(handler, context, columns)

    assert answer == expected
    assert answer[0]["pctcvr"] != answer[1]["pctcvr"]  # the override changed the second i4
    # Without overrides the columns give what the plain objects give.
    assert run(handler, context, as_columns(body)) == run(handler, context, body)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"item": []}, '"candidates.item" must be a non-empty list'),
        ({"item": ["i1", ""]}, '"candidates.item" must hold item ids'),
        ({"item": ["i1"], "retrieval_score": [0.1, 0.2]}, '"candidates.retrieval_score" must be a list'),
        ({"item": ["i1"], "retrieval_score": [True]}, '"candidates.retrieval_score" must be a list'),
        ({"item": ["i1"], "source": [3]}, '"candidates.source" must be a list of strings'),
        ({"item": ["i1"], "price": ["cheap"]}, '"candidates.price" must be a list of numbers'),
        ({"item": ["i1"], "colour": ["red"]}, '"candidates.colour" is unknown'),
        ({"item": [f"i{j}" for j in range(51)]}, "at most 50"),
    ],
)
def test_bad_columns_are_a_400_naming_the_column(
    handler: RankerHandler, context: Context, columns: dict[str, Any], message: str
) -> None:
    with pytest.raises(PredictionException) as caught:
        run(handler, context, {"candidates": columns})
    assert caught.value.error_code == 400
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"candidates": []}, '"candidates" must be a non-empty list'),
        ({"candidates": [{"item": ""}]}, "candidates[0].item must be an item id"),
        ({"candidates": [{"item": "i1", "retrieval_score": "high"}]}, "candidates[0].retrieval_score"),
        ({"candidates": [{"item": "i1"}], "context": {"hour": 24}}, '"context.hour"'),
        ({"candidates": [{"item": "i1"}], "customer": {"activity": "lots"}}, "customer:"),
        ({"candidates": [{"item": "i1", "attributes": {"colour": "red"}}]}, "attributes.colour is unknown"),
        ({"candidates": [{"item": f"i{j}"} for j in range(51)]}, "at most 50"),
        ("not json", "not valid JSON"),
    ],
)
def test_a_bad_request_alone_is_a_400_naming_the_field(
    handler: RankerHandler, context: Context, body: Any, message: str
) -> None:
    with pytest.raises(PredictionException) as excinfo:
        run(handler, context, body)
    assert excinfo.value.error_code == 400
    assert message in excinfo.value.message


def test_a_bad_request_in_a_batch_gets_its_own_400_and_the_others_their_scores(
    handler: RankerHandler, context: Context
) -> None:
    answers = run(handler, context, request(["i1", "i2"]), {"candidates": "i1"}, request(["i3"]))
    assert [r["item"] for r in answers[0]] == ["i1", "i2"]
    assert answers[1]["code"] == 400 and '"candidates"' in answers[1]["message"]
    assert [r["item"] for r in answers[2]] == ["i3"]
    assert context.get_response_status(1)[0] == 400


@pytest.mark.slow
def test_the_ranker_archive_carries_its_handler_checkpoint_and_code_and_serves_from_its_contents(
    trained: tuple[Path, Any, Any], tmp_path: Path
) -> None:
    directory, _, _ = trained
    built = archive_build(
        checkpoint_dir=directory,
        name="ranker",
        version="1",
        model_store=tmp_path / "store",
        stage="ranker",
        handler_settings={"max_candidates": 7},
    )
    assert archive_manifest(built.path)["model"]["handler"] == "ranker_handler.py"
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(built.path) as zf:
        names = set(zf.namelist())
        zf.extractall(unpacked)
    assert {"ranker_handler.py", "training/ranker/esmm.py", "model-config.yaml", *RANKER_CHECKPOINT_FILES} <= names
    import yaml

    settings = yaml.safe_load((unpacked / "model-config.yaml").read_text())
    assert settings["handler"] == {"max_candidates": 7, "torch_threads": 1}
    context = make_context(unpacked, settings["handler"])
    handler = RankerHandler()
    handler.initialize(context)
    [answer] = run(handler, context, request(["i1", "i2"]))
    assert [r["item"] for r in answer] == ["i1", "i2"]
