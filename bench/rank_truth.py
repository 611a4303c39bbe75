"""The rank stage against the simulated shop's ground truth, without running an experiment.

    bench/rank_truth.py --seed 2 --customers 1000 --requests 5000 --visits 800 --dump out.pkl

One process, like bench/sim_shop.py: the demo shop, the retrieval model trained and served, the
simulator's retrieval-only traffic, the ranker trained by the pipeline (promoted by hand when its
gate keeps it back). Then, for the first `--visits` visitors of the experiment's traffic (the
simulator's seed + 1000, as sim_shop.py --experiment draws them), the home page is built twice for
the same request (the same chain candidates): with the scene as it is (ranker off) and with the rank
stage on. Each list is scored with the visitor's true click probabilities (the simulator's
Visitor.affinity and its cascade: position p examined with EXAMINE_DECAY ** (p - 1), stop at the
first click), so the expected clicks per page of both arms are exact, paired, and need no traffic.

Also printed, over the same candidates: the expected clicks of the top-n in pure retrieval order,
in pure ranker order (no rules, no diversity), of the ideal order (true probabilities), and the
rank correlation of the ranker's pCTR with the true click probability over all k candidates and
over the retrieval top-n only (what the ranker's training rows look like). `--dump` keeps the
requests (the payload the rank stage sent, the candidates, their true probabilities) and the
impressions, for offline re-scoring of other ranker trainings.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from sim_shop import ShopShape, SimulatedShop  # noqa: E402


def cascade_clicks(probabilities: list[float], *, decay: float) -> float:
    """Expected clicks of a page under the simulator's cascade (at most one click per page)."""
    reach, total = 1.0, 0.0
    for index, p in enumerate(probabilities):
        if index > 0:
            reach *= decay
        total += reach * p
        reach *= 1.0 - p
    return total


def spearman(a: list[float], b: list[float]) -> float:
    if len(a) < 3:
        return float("nan")
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--retrieval", default="itemknn")
    parser.add_argument("--requests", type=int, default=5000, help="Retrieval-only traffic the ranker learns from.")
    parser.add_argument("--visits", type=int, default=800, help="Home pages scored both ways.")
    parser.add_argument("--rank-by", default="clicks", choices=["clicks", "purchases", "revenue"])
    parser.add_argument("--ranker-params", default="{}")
    parser.add_argument("--dump", type=Path, default=None)
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        print(f"[seed {args.seed} {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="recadmin-ranktruth-") as tmp,
        SimulatedShop.open(database_url=args.database_url, workdir=Path(tmp)) as shop,
    ):
        shop.reset(ShopShape(seed=args.seed, items=args.items, customers=args.customers, events=args.events))
        say("shop loaded; training the retrieval model")
        shop.train(args.retrieval, {"seed": args.seed})
        say(f"simulating {args.requests} requests")
        report = shop.simulate(seed=args.seed, requests=args.requests)
        say(f"traffic: {report.impressions} impressions, {report.clicks} clicks")
        table = shop.impressions()
        say("training the ranker through the pipeline")
        run = shop.train("ranker", {"seed": args.seed, **json.loads(args.ranker_params)})
        version = run.model_versions.order_by("-version").first()
        if version.status != "default":
            answer = shop.api().post(f"/api/v1/models/{version.name}/{version.version}/promote")
            say(f"ranker v{version.version} {version.status}: promoted by hand ({answer.status_code})")
        result = paired_pages(shop, args, say)
        result["ranker_metrics"] = run.metrics
        if args.dump is not None:
            result["impressions"] = table
            args.dump.write_bytes(pickle.dumps(result))
            del result["impressions"]
        summary = {k: v for k, v in result.items() if k != "pages"}
        print(json.dumps(summary, indent=1, default=str))
    return 0


def paired_pages(shop: SimulatedShop, args: Any, say: Any) -> dict[str, Any]:
    from recadmin.events.demo import demo_shop_world
    from recadmin.events.simulation.visitors import CLICK_MAX, EXAMINE_DECAY, ListedItem, visitor_for_visit
    from recadmin.modelops import torchserve
    from recadmin.serving.services.context import ListQuery, context_build
    from recadmin.serving.services.rank_stage import rank_stage
    from recadmin.serving.services.ranking import rank_or_plain
    from recadmin.serving.services.sources import chain_run

    world = demo_shop_world(
        n_items=shop.shape.items, n_customers=shop.shape.customers, seed=shop.shape.seed, prefix=shop.shape.prefix
    )
    sent: list[dict[str, Any]] = []
    client_class = type(torchserve.get_client())
    original = client_class.predict_fast

    def recording(self: Any, name: str, payload: Any, **kwargs: Any) -> Any:
        if isinstance(payload, dict) and "candidates" in payload:
            sent.append(payload)
        return original(self, name, payload, **kwargs)

    client_class.predict_fast = recording  # type: ignore[method-assign]
    pages: list[dict[str, Any]] = []
    try:
        for visit in range(args.visits):
            visitor = visitor_for_visit(world, seed=args.seed + 1000, visit=visit)
            ctx = context_build(ListQuery(endpoint="recommendations", customer=visitor.customer, scene="home"))
            ctx = replace(ctx, bundle=replace(ctx.bundle, settings=replace(ctx.bundle.settings, rank_by="")))
            chain = chain_run(ctx)
            embedding = chain.model or ctx.model
            common = {
                "bundle": ctx.bundle,
                "context": ctx.engine_context,
                "length": ctx.length,
                "embedding_version": embedding.id if embedding is not None else None,
                "items_state": ctx.state.items,
            }
            off = rank_or_plain(chain.scored, **common)
            on_ctx = replace(
                ctx, bundle=replace(ctx.bundle, settings=replace(ctx.bundle.settings, rank_by=args.rank_by))
            )
            sent.clear()
            staged = rank_stage(on_ctx, chain.scored)
            on = rank_or_plain(staged.scored, **{**common, "bundle": on_ctx.bundle})
            # Diagnostics: the same ranked candidates through the rules with their scores on other
            # scales (MMR min-max scales the score it trades against similarity), or without MMR.
            variants: dict[str, list[str]] = {}
            if not staged.note:
                k = len(staged.scored)
                rescaled = {
                    "on_log": [replace(s, score=math.log(max(s.score, 1e-9))) for s in staged.scored],
                    "on_rank": [replace(s, score=1.0 - i / k) for i, s in enumerate(staged.scored)],
                }
                for name, scored in rescaled.items():
                    variants[name] = [
                        row["item"] for row in rank_or_plain(scored, **{**common, "bundle": on_ctx.bundle}).items
                    ]
                no_mmr = replace(on_ctx.bundle, settings=replace(on_ctx.bundle.settings, mmr_enabled=False))
                variants["on_no_mmr"] = [
                    row["item"] for row in rank_or_plain(staged.scored, **{**common, "bundle": no_mmr}).items
                ]
                off_no_mmr = replace(ctx.bundle, settings=replace(ctx.bundle.settings, mmr_enabled=False))
                variants["off_no_mmr"] = [
                    row["item"] for row in rank_or_plain(chain.scored, **{**common, "bundle": off_no_mmr}).items
                ]

            def truth(item: str, visitor: Any = visitor) -> float:
                return CLICK_MAX * visitor.affinity(ListedItem(item=item, position=0))

            candidates = [s.item for s in chain.scored]
            ranker_values = {s.item: float(s.score) for s in staged.scored} if not staged.note else {}
            pages.append(
                {
                    "visit": visit,
                    "customer": visitor.customer,
                    "new": visitor.new,
                    "source": str(chain.source),
                    "candidates": candidates,
                    "retrieval": [float(s.score) for s in chain.scored],
                    "origin": [s.origin for s in chain.scored],
                    "truth": [truth(i) for i in candidates],
                    "ranker": [ranker_values.get(i, float("nan")) for i in candidates],
                    "off": [row["item"] for row in off.items],
                    "on": [row["item"] for row in on.items],
                    "off_truth": [truth(row["item"]) for row in off.items],
                    "on_truth": [truth(row["item"]) for row in on.items],
                    "payload": sent[-1] if sent else None,
                    "variants": {name: [truth(i) for i in items] for name, items in variants.items()},
                    "note": staged.note,
                    "n": ctx.length,
                }
            )
            if visit % 200 == 199:
                say(f"{visit + 1} pages")
    finally:
        client_class.predict_fast = original  # type: ignore[method-assign]
    return {"pages": pages, **summarise(pages, decay=EXAMINE_DECAY)}


def summarise(pages: list[dict[str, Any]], *, decay: float) -> dict[str, Any]:
    """Mean expected clicks per page of each order, paired difference with its 95 % interval."""

    def clicks(values: list[float]) -> float:
        return cascade_clicks(values, decay=decay)

    names = ("off", "on", "retrieval_top", "ranker_top", "ideal_top", "on_log", "on_rank", "on_no_mmr", "off_no_mmr")
    rows: dict[str, list[float]] = {k: [] for k in names}
    rho_all: list[float] = []
    rho_top: list[float] = []
    ranked = [p for p in pages if not p["note"] and p["candidates"]]
    for p in ranked:
        n = p["n"]
        truth = p["truth"]
        rows["off"].append(clicks(p["off_truth"]))
        rows["on"].append(clicks(p["on_truth"]))
        rows["retrieval_top"].append(clicks(truth[:n]))
        order = sorted(range(len(truth)), key=lambda i: -p["ranker"][i])
        rows["ranker_top"].append(clicks([truth[i] for i in order[:n]]))
        rows["ideal_top"].append(clicks(sorted(truth, reverse=True)[:n]))
        for name, values in p.get("variants", {}).items():
            rows[name].append(clicks(values))
        rho_all.append(spearman(p["ranker"], truth))
        rho_top.append(spearman(p["ranker"][:n], truth[:n]))
    out: dict[str, Any] = {"page_count": len(pages), "ranked_pages": len(ranked)}
    for name, values in rows.items():
        out[f"clicks_per_page_{name}"] = round(float(np.mean(values)), 5) if values else None
    if rows["on"]:
        diff = np.array(rows["on"]) - np.array(rows["off"])
        half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        base = float(np.mean(rows["off"]))
        out["lift_on_vs_off"] = round(float(diff.mean()) / base, 4) if base else None
        out["lift_ci95"] = [round(float(diff.mean() - half) / base, 4), round(float(diff.mean() + half) / base, 4)]
    out["spearman_ranker_truth_all_k"] = round(float(np.nanmean(rho_all)), 4) if rho_all else None
    out["spearman_ranker_truth_retrieval_top_n"] = round(float(np.nanmean(rho_top)), 4) if rho_top else None
    return out


if __name__ == "__main__":
    raise SystemExit(main())
