"""What the in-process handler tests share: TorchServe's own Context as a worker builds it, a batch
run as TorchServe's Service.predict runs it, and answers compared up to float noise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import ts
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

METRICS_YAML = Path(ts.__file__).parent / "configs" / "metrics.yaml"


def make_context(name: str, model_dir: Path, handler_settings: dict[str, Any]) -> Context:
    """A worker's Context for model `name` in `model_dir`, batch size 8, the archive's
    model-config.yaml `handler:` section being `handler_settings`."""
    metrics = MetricsCacheYamlImpl(config_file_path=str(METRICS_YAML))
    metrics.initialize_cache()
    return Context(
        name,
        str(model_dir),
        {"model": {"modelName": name, "modelVersion": "1"}},
        8,
        None,
        "0.12.0",
        metrics=metrics,
        model_yaml_config={"batchSize": 8, "handler": handler_settings},
    )


def run(handler: Any, context: Context, *bodies: Any) -> list[Any]:
    """What TorchServe's Service.predict does for a batch (one RequestProcessor per request), and
    the answers as a client reads them: a good one is JSON bytes typed application/json, which
    TorchServe sends as they are; a refused one is the {"code", "type", "message"} object."""
    context.request_processor = [RequestProcessor({}) for _ in bodies]
    context.metrics.request_ids = {i: f"req-{i}" for i in range(len(bodies))}
    answers = list(handler.handle([{"body": b} for b in bodies], context))
    for i, answer in enumerate(answers):
        if isinstance(answer, bytes):
            assert context.get_response_content_type(i) == "application/json"
            answers[i] = json.loads(answer)
        else:
            assert isinstance(answer, dict) and answer["code"] == 400
    return answers


def assert_same_answers(left: list[Any], right: list[Any]) -> None:
    """Equal lists of {"item","score"} up to float noise: a row padded to another width in a
    batch may differ in the last digit."""
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert {r["item"]: pytest.approx(r["score"], abs=1e-4) for r in a} == {r["item"]: r["score"] for r in b}
