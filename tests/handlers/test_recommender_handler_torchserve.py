"""The handler inside a real TorchServe: batching, a sequence model, and a long list on the fast path
(its latency is measured by bench/serve.py, not asserted here)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from recadmin.modelops.archive import Archive, archive_build
from tests.fixtures.torchserve import SASREC_QUICK, TorchServeInstance, synthetic_sequences, train_checkpoint
from tests.handlers.helpers import assert_same_answers
from training.checkpoint import Loaded, load_checkpoint

NAME = "recommender"


def _handler_calls(instance: TorchServeInstance) -> int:
    """TorchServe logs one HandlerTime metric per handle() call, that is per batch."""
    path = instance.run_dir / "logs" / "model_metrics.log"
    return path.read_text().count("HandlerTime") if path.exists() else 0


def _wait_for_calls(instance: TorchServeInstance, at_least: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (calls := _handler_calls(instance)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return calls


def test_concurrent_requests_are_batched_and_answered_like_single_ones(
    torchserve: TorchServeInstance, trained_checkpoint: Path
) -> None:
    archive = archive_build(
        checkpoint_dir=trained_checkpoint,
        name="batched",
        version="1",
        model_store=torchserve.model_store,
        batch_size=4,
        max_batch_delay=400,  # long enough for four threads to land in one batch
        overwrite=True,
    )
    client = torchserve.client
    client.register(archive.path, model_name="batched")
    bodies: list[dict[str, Any]] = [
        {"history": ["sku-001", "sku-002"], "k": 5},
        {"similar_to": "sku-004", "k": 3},
        {"history": [], "k": 4, "exclude": ["sku-000"]},
        {"history": ["sku-010"], "k": 6},
    ]
    before = _wait_for_calls(torchserve, 0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        batched = list(pool.map(lambda b: client.predict("batched", b, timeout=10), bodies))
    after = _wait_for_calls(torchserve, before + 1)
    assert after - before < len(bodies)  # fewer handler calls than requests: they were batched
    singles = [client.predict("batched", b, timeout=10) for b in bodies]
    assert_same_answers(batched, singles)
    assert [len(a) for a in batched] == [5, 3, 4, 6]


def _in_process_scores(checkpoint: Path, history: list[str]) -> tuple[Loaded, torch.Tensor]:
    """The checkpoint's scores for `history` as the handler masks them: padding and the history
    itself at -inf."""
    loaded = load_checkpoint(checkpoint)
    indices = [loaded.item_index.index(i) for i in history]
    scores = loaded.model.score([indices])[0]
    scores[[0, *indices]] = float("-inf")
    return loaded, scores


def test_a_sequence_model_is_served_with_the_same_ranking_as_in_process(
    torchserve: TorchServeInstance, trained_sasrec_checkpoint: Path
) -> None:
    checkpoint = trained_sasrec_checkpoint
    archive = archive_build(
        checkpoint_dir=checkpoint, name=NAME, version="1", model_store=torchserve.model_store, overwrite=True
    )
    torchserve.client.register(archive.path, model_name=NAME)
    history = ["sku-005", "sku-006", "sku-007"]
    answer = torchserve.client.predict(NAME, {"history": history, "k": 10})

    loaded, scores = _in_process_scores(checkpoint, history)
    top = scores.topk(10)
    assert [a["score"] for a in answer] == pytest.approx(top.values.tolist(), abs=1e-4)
    assert {a["item"] for a in answer} == set(loaded.item_index.ids_of(top.indices.tolist()))
    similar = torchserve.client.predict(NAME, {"similar_to": "sku-005", "k": 5})
    assert len(similar) == 5 and "sku-005" not in {a["item"] for a in similar}


def _assert_serves_500_like_in_process(instance: TorchServeInstance, archive: Archive, checkpoint: Path) -> None:
    """A k=500 request on the serving fast path (predict_fast, the API's budgeted call) answers the
    in-process model's top 500, history left out, best first. Its latency is bench/serve.py's."""
    client = instance.client
    client.register(archive.path, model_name=archive.name, initial_workers=1)
    client.wait_until_ready(archive.name, archive.version, timeout=60)
    history = [f"sku-{i:03d}" for i in range(5, 25)]
    answer = client.predict_fast(archive.name, {"history": history, "k": 500}, budget=5.0)

    assert len(answer) == 500 and len({a["item"] for a in answer}) == 500
    assert not {a["item"] for a in answer} & set(history)
    served = [a["score"] for a in answer]
    assert served == sorted(served, reverse=True)
    # The in-process model orders them alike and ranks nothing left out above them (its scores
    # may be on another scale: popularity is served as counts).
    loaded, scores = _in_process_scores(checkpoint, history)
    in_process = [float(scores[loaded.item_index.index(a["item"])]) for a in answer]
    assert in_process == sorted(in_process, reverse=True)
    left_out = scores.clone()
    left_out[[loaded.item_index.index(a["item"]) for a in answer]] = float("-inf")
    assert float(left_out.max()) <= in_process[-1] + 1e-5


@pytest.mark.slow
def test_a_k500_request_on_the_fast_path_answers_the_models_top_500(
    torchserve: TorchServeInstance, tmp_path: Path
) -> None:
    sequences = synthetic_sequences(num_users=500, num_items=900, length=20, seed=1)
    assert len({i for s in sequences.values() for i in s}) > 600
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("pop", {}),
        ("sasrec", {**SASREC_QUICK, "hidden": 64, "max_len": 50, "max_epochs": 1}),
    ]
    for kind, params in kinds:
        checkpoint = train_checkpoint(tmp_path / kind, kind=kind, sequences=sequences, params=params)
        archive = archive_build(
            checkpoint_dir=checkpoint,
            name=f"k500-{kind}",  # its own model: a second version would not be the one served
            version="1",
            model_store=torchserve.model_store,
            max_batch_delay=1,
            handler_settings={"max_k": 1000},
            overwrite=True,
        )
        _assert_serves_500_like_in_process(torchserve, archive, checkpoint)
