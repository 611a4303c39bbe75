"""The ranker's archive inside a real TorchServe: registered, answering single and concurrent
(batched) requests exactly as the handler does in-process."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from handlers.ranker_handler import RankerHandler
from recadmin.modelops.archive import archive_build
from tests.fixtures.torchserve import TorchServeInstance
from tests.handlers.test_ranker_handler import request
from training.ranker.export import train_ranker_checkpoint
from training.ranker.synthetic import synthetic_impressions


@pytest.fixture(scope="module")
def ranker_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    table = synthetic_impressions(customers=80, items=50, requests=400, seed=2)
    return train_ranker_checkpoint(table, tmp_path_factory.mktemp("ranker"), params={"max_epochs": 2}).directory


def in_process(checkpoint: Path, body: dict[str, Any]) -> list[dict[str, Any]]:
    context = SimpleNamespace(
        system_properties={"model_dir": str(checkpoint)},
        model_yaml_config={},
        set_response_status=lambda *a: None,
        set_response_content_type=lambda *a: None,
    )
    handler = RankerHandler()
    handler.initialize(context)
    encoded = handler.postprocess(handler.inference(handler.preprocess([{"body": body}])))[0]
    answer: list[dict[str, Any]] = json.loads(encoded)
    return answer


def test_the_ranker_archive_serves_single_and_batched_requests_like_the_handler_in_process(
    torchserve: TorchServeInstance, ranker_checkpoint: Path
) -> None:
    archive = archive_build(
        checkpoint_dir=ranker_checkpoint,
        name="ranker",
        version="1",
        model_store=torchserve.model_store,
        stage="ranker",
        batch_size=4,
        max_batch_delay=200,
        overwrite=True,
    )
    client = torchserve.client
    client.register(archive.path, model_name="ranker")
    bodies = [
        request(["i1", "i2", "i3"]),
        request([f"i{j}" for j in range(10)], scene="cart"),
        request(["i7"], customer={}),
        request(["i4", "new"], scene="product"),
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        batched = list(pool.map(lambda b: client.predict("ranker", b, timeout=20), bodies))
    singles = [client.predict("ranker", b, timeout=20) for b in bodies]
    # The handler's answer leaves TorchServe as it encoded it: compact JSON, typed application/json.
    raw = urllib.request.urlopen(
        urllib.request.Request(
            f"{torchserve.config.inference_url}/predictions/ranker",
            data=json.dumps(bodies[0]).encode(),
            headers={"Content-Type": "application/json", **client._headers("inference")},
        ),
        timeout=20,
    )
    assert raw.headers["Content-Type"].startswith("application/json")
    assert b"\n" not in raw.read()
    for served, alone, body in zip(batched, singles, bodies, strict=True):
        expected = in_process(ranker_checkpoint, body)
        for got in (served, alone):
            assert [r["item"] for r in got] == [c["item"] for c in body["candidates"]]
            assert [r["pctr"] for r in got] == pytest.approx([r["pctr"] for r in expected], abs=2e-6)
            assert [r["pctcvr"] for r in got] == pytest.approx([r["pctcvr"] for r in expected], abs=2e-6)
