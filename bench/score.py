"""Scoring speed: 1,000 user histories against the whole Beauty catalog (12,101 items) on one core,
and the ranking stage: 500 candidates for one request, and 1,000 such requests.

    python bench/score.py [--checkpoint DIR ...] [--users 1000] [--repeats 20] [--single 200]
                          [--ranker-checkpoint DIR] [--candidates 500] [--requests 1000] [--only-ranker]

Each checkpoint (as written by training.benchmark --out DIR, in DIR/checkpoint) is loaded and
timed on the first `--users` Beauty test histories (the real length distribution, up to the
model's max length). Without checkpoints, every model kind is built at Beauty's size with fresh
weights: the arithmetic, and so the time, is the same as for trained weights.
Prints the median and best wall time and the median CPU time of one `model.score(histories)` call,
and the median wall time of scoring one customer per call (`--single` of them: an unbatched request).

Ranker: a ranker checkpoint (training.ranker.export) or, without one, an ESMM with fresh weights
over the synthetic shop's feature spec (2,000 items; the arithmetic is the same as trained
weights'). Timed: the model's forward pass alone on 500 prepared candidates, and the TorchServe
handler's whole work per request (JSON parsing, validation, features, forward pass, answer, and
TorchServe's own encoding of the answer into its message to the frontend) for
1,000 requests of 500 candidates each, one at a time and in TorchServe batches of 4, for each
request shape (SHAPES); wall and CPU time (on a shared machine the CPU time is the steadier one).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.checkpoint import load_checkpoint
from training.data import read_s3rec, split_leave_one_out
from training.models import MODEL_KINDS, build_model

#: Request shapes: the rank stage's columns (price and stock per candidate, as it sends them), one
#: object per candidate with the same as "attributes" (what it sent before), and plain objects.
SHAPES = ("columns", "objects+attributes", "objects")

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "amazon-beauty"


def time_scoring(model, histories, repeats: int) -> tuple[float, float, float]:
    """(median wall, best wall, median CPU) seconds of one call. On a shared machine the CPU time
    (this process, one thread) is the cost of the call itself; wall time adds waiting for a core."""
    model.eval()
    model.score(histories[:10])  # warm-up: caches, allocator
    model.score(histories)
    wall, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        scores = model.score(histories)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    assert scores.shape == (len(histories), model.num_items + 1)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", action="append", type=Path, default=[])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--single", type=int, default=200, help="customers scored one per call")
    parser.add_argument("--ranker-checkpoint", type=Path, default=None)
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--only-ranker", action="store_true", help="skip the retrieval models")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not args.only_ranker:
        time_retrieval(args)
    time_ranker(args.ranker_checkpoint, args.candidates, args.requests)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


def time_retrieval(args: argparse.Namespace) -> None:
    dataset = read_s3rec(args.data / "Beauty.txt", args.data / "Beauty_item2attributes.json")
    histories = split_leave_one_out(dataset).test.histories[: args.users]
    models = []
    if args.checkpoint:
        for directory in args.checkpoint:
            loaded = load_checkpoint(directory)
            models.append((f"{loaded.config['kind']} ({directory})", loaded.model))
    else:
        for kind in MODEL_KINDS:
            model = build_model(kind, dataset.num_items)
            # The attribute tables fit() would build, fresh weights.
            for sasrec in [model] if kind == "sasrec" else [model.main, model.expert] if kind == "hybrid" else []:
                sasrec._set_attributes(dataset)
            models.append((f"{kind} (fresh weights)", model))
    print(f"{len(histories)} histories x {dataset.num_items} items, 1 thread, {args.repeats} repeats")
    for name, model in models:
        median, best, cpu = time_scoring(model, histories, args.repeats)
        one = time_one_at_a_time(model, histories[: args.single])
        print(
            f"{name:44s} wall median {median * 1000:7.1f} ms  best {best * 1000:7.1f} ms"
            f"  cpu median {cpu * 1000:7.1f} ms; one customer per call: median {one * 1000:.2f} ms"
        )


def time_one_at_a_time(model, histories) -> float:
    """Median wall seconds of `model.score([history])`: a request that TorchServe did not batch."""
    model.score([histories[0]])
    times = []
    for history in histories:
        started = time.perf_counter()
        model.score([history])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_ranker(checkpoint: Path | None, candidates: int, requests: int) -> None:
    import json
    import random
    import tempfile
    from types import SimpleNamespace

    from ts.protocol.otf_message_handler import create_predict_response

    from handlers.ranker_handler import RankerHandler
    from training.ranker import build_ranker
    from training.ranker.checkpoint import save_ranker_checkpoint
    from training.ranker.features import NUMERIC_FIELDS, FeatureSpec
    from training.ranker.synthetic import START, synthetic_impressions

    with tempfile.TemporaryDirectory() as tmp:
        if checkpoint is None:
            table = synthetic_impressions(customers=200, items=2000, requests=2000, seed=0)
            spec = FeatureSpec.fit(table)
            model = build_ranker("esmm", cardinalities=spec.cardinalities(), num_numeric=len(NUMERIC_FIELDS))
            checkpoint = save_ranker_checkpoint(model, Path(tmp), spec=spec, items=table.items)
            label = "esmm (fresh weights)"
        else:
            label = str(checkpoint)
        context = SimpleNamespace(
            system_properties={"model_dir": str(checkpoint)},
            model_yaml_config={"handler": {"torch_threads": 1, "max_candidates": max(candidates, 1)}},
            set_response_status=lambda *a: None,
            set_response_content_type=lambda *a: None,
        )
        handler = RankerHandler()
        handler.initialize(context)
        items = handler.item_ids
        rng = random.Random(0)
        categories = handler.spec.vocab["item_category"]

        def body(shape: str) -> bytes:
            picked = rng.sample(items, min(candidates, len(items)))
            scores = [rng.random() for _ in picked]
            prices = [round(rng.uniform(5, 200), 2) for _ in picked]
            stocks = [float(rng.randint(0, 20)) for _ in picked]
            if shape == "columns":
                rows: Any = {"item": picked, "retrieval_score": scores, "source": ["model"] * len(picked),
                             "price": prices, "stock": stocks}  # fmt: skip
            else:
                rows = [
                    {"item": item, "retrieval_score": score, "source": "model"}
                    for item, score in zip(picked, scores, strict=True)
                ]
                if shape == "objects+attributes":
                    for row, price, stock in zip(rows, prices, stocks, strict=True):
                        row["attributes"] = {"price": price, "stock": stock}
            return json.dumps(
                {
                    "customer": {
                        "activity": rng.randint(1, 50),
                        "recency_days": rng.random() * 30,
                        "category_affinity": {c: rng.random() for c in rng.sample(categories, 3)},
                        "price_sensitivity": rng.random(),
                    },
                    "scene": "home",
                    "context": {"timestamp": START + rng.random() * 86400 * 7, "device": "mobile"},
                    "candidates": rows,
                }
            ).encode()

        shapes = {shape: [body(shape) for _ in range(requests)] for shape in SHAPES}
        bodies = shapes["columns"]

        def handle(batch: list[bytes]) -> list[Any]:
            return handler.postprocess(handler.inference(handler.preprocess([{"body": b} for b in batch])))

        def serve(batch: list[bytes]) -> Any:
            """The worker's work for a batch: the handler, then TorchServe's own encoding of its answers
            into the message for the frontend (which json.dumps(indent=2)s anything but bytes)."""
            return create_predict_response(handle(batch), {i: f"r{i}" for i in range(len(batch))}, "", 200)

        answer = handle(bodies[:1])[0]
        assert len(json.loads(answer)) == min(candidates, len(items))
        from training.ranker.features import FeatureBatch

        cats, nums = handler._features(handler.preprocess([{"body": bodies[0]}])[0])
        prepared = FeatureBatch(categorical=cats, numeric=nums)
        with torch.inference_mode():
            for _ in range(20):
                handler.model.predict(prepared)
            forward = []
            for _ in range(200):
                started = time.perf_counter()
                handler.model.predict(prepared)
                forward.append(time.perf_counter() - started)

        def timed(bodies: list[bytes], batch_size: int) -> tuple[float, float, float, float]:
            wall, cpu = [], []
            for start in range(0, len(bodies), batch_size):
                t0, c0 = time.perf_counter(), time.process_time()
                serve(bodies[start : start + batch_size])
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            # CPU time too: on a shared machine the wall time also counts the waits for a core.
            return sum(wall), statistics.median(wall) / batch_size, sum(cpu), sum(cpu) / len(bodies)

        print(f"\nranker {label}: {len(items)} items in its table, {candidates} candidates per request, 1 thread")
        print(
            f"  forward pass alone ({cats.shape[0]} candidates): median {statistics.median(forward) * 1000:.3f} ms"
            f"  best {min(forward) * 1000:.3f} ms"
        )
        # What returning bytes saves the worker: the same answer encoded by TorchServe as the
        # handler's former list of objects (json.dumps(indent=2)), against as the bytes it returns.
        as_objects = [json.loads(answer)]
        encoding = {"list of objects": [], "bytes": []}
        for _ in range(200):
            for label, value in (("list of objects", as_objects), ("bytes", [answer])):
                started = time.perf_counter()
                create_predict_response(value, {0: "r0"}, "", 200)
                encoding[label].append(time.perf_counter() - started)
        print(
            "  TorchServe's encoding of one answer: "
            + ", ".join(f"{label} {statistics.median(t) * 1000:.3f} ms" for label, t in encoding.items())
        )
        for shape, shaped in shapes.items():
            for batch_size in (1, 4):
                total, per_request, cpu, cpu_per_request = timed(shaped, batch_size)
                print(
                    f"  handler, {shape:18s} {requests} requests in batches of {batch_size}: {total:.2f} s wall, "
                    f"{cpu:.2f} s cpu, median {per_request * 1000:.3f} ms wall, mean {cpu_per_request * 1000:.3f} ms"
                    " cpu per request"
                )
        load = os.getloadavg()[0]
        print(
            f"  (parse + features + forward + answer + TorchServe's encoding; load average {load:.1f}"
            f" on {os.cpu_count()} cores)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
