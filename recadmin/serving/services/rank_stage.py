"""The rank stage: the chain's k candidates -> the ranker model (TorchServe) -> ordered by the scene's
objective, before the rules and diversity.

    ranked = rank_stage(ctx, scored)  # RankStage(scored=..., note=...)

On when the scene's `rank_by` is set (clicks | purchases | revenue) and the ranker model
(settings.RANKER_MODEL_NAME) has a default version. The call gets what is left of the serving
time budget; when it fails (timeout, TorchServe down, a bad answer, no default ranker) the
candidates keep the retrieval order and the list says so (`note`, and a "rank_skipped" reason on
each item). Each ranked item's score becomes its objective value and its reasons say
"ranked by predicted clicks 0.083" (training.ranker.objective, the ranker's own wording).

Customer features come from the request's history (activity, category and brand shares from the
catalog's metadata); the ranker knows item attributes from its archive, and is sent the catalog's
current price and stock, which override it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings

from recadmin.catalog.selectors import items_metadata
from recadmin.modelops.selectors import DefaultModel, default_model_get
from recadmin.modelops.torchserve import TorchServeError, TorchServeTimeout, TorchServeUnavailable, get_client
from recadmin.serving import fallbacks
from recadmin.serving.services.context import RequestContext
from recadmin.serving.services.ranking import Scored

logger = logging.getLogger(__name__)

OBJECTIVES = ("clicks", "purchases", "revenue")
_REASON_NAMES = {"clicks": "predicted clicks", "purchases": "predicted purchases", "revenue": "predicted revenue"}
REASON_NO_RANKER = "no_default_ranker"


@dataclass
class RankStage:
    scored: list[Scored]
    note: str  # "" when ranked, else why the retrieval order was kept
    model: DefaultModel | None = None


def rank_reason_text(objective: str, value: float) -> str:
    """The same words as training.ranker.objective.reason (which serving must not import: torch)."""
    shown = f"{value:.2f}" if objective == "revenue" else f"{value:.3f}"
    return f"ranked by {_REASON_NAMES[objective]} {shown}"


def _customer_features(history_ids: list[str], metas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    known = [metas[i] for i in history_ids if i in metas]
    n = len(history_ids)
    categories = Counter(m.get("category") for m in known if m.get("category"))
    brands = Counter(m.get("brand") for m in known if m.get("brand"))
    return {
        "activity": n,
        "category_affinity": {str(c): k / n for c, k in categories.items()} if n else {},
        "brand_affinity": {str(b): k / n for b, k in brands.items()} if n else {},
    }


def _skipped(scored: list[Scored], reason: str, detail: str = "") -> RankStage:
    note = f"{reason}: {detail}" if detail else reason
    return RankStage(
        scored=[replace(s, rank_reason={"type": "rank_skipped", "reason": note[:200]}) for s in scored], note=note
    )


def rank_stage(ctx: RequestContext, scored: list[Scored]) -> RankStage:
    objective = ctx.bundle.settings.rank_by
    if objective not in OBJECTIVES or not scored:
        return RankStage(scored=scored, note="")
    model = default_model_get(name=settings.RANKER_MODEL_NAME)
    if model is None:
        return _skipped(scored, REASON_NO_RANKER)
    metas = items_metadata([s.item for s in scored] + ctx.history_ids[-50:], state=ctx.state.items)
    candidates = []
    for s in scored:
        row: dict[str, Any] = {"item": s.item, "retrieval_score": float(s.score), "source": s.origin}
        meta = metas.get(s.item)
        if meta is not None:
            attributes: dict[str, Any] = {"stock": 1.0 if meta.get("in_stock", True) else 0.0}
            if meta.get("price") is not None:
                attributes["price"] = float(meta["price"])
            row["attributes"] = attributes
        candidates.append(row)
    payload = {
        "customer": _customer_features(ctx.history_ids[-50:], metas),
        "scene": ctx.scene or "",
        "context": {"timestamp": ctx.now.timestamp()},
        "candidates": candidates,
    }
    budget = settings.SERVING_TIME_BUDGET_MS / 1000.0
    remaining = max(budget - (time.perf_counter() - ctx.started), 0.001)
    try:
        answer = get_client().predict_fast(model.name, payload, budget=remaining, version=str(model.version))
    except TorchServeTimeout as exc:
        return _skipped(scored, fallbacks.REASON_TORCHSERVE_SLOW, exc.message)
    except TorchServeUnavailable as exc:
        return _skipped(scored, fallbacks.REASON_TORCHSERVE_DOWN, exc.message)
    except TorchServeError as exc:
        return _skipped(scored, fallbacks.REASON_TORCHSERVE_ERROR, exc.message)
    except Exception as exc:
        logger.exception("unexpected error calling the ranker")
        return _skipped(scored, fallbacks.REASON_TORCHSERVE_ERROR, repr(exc))
    rows: Any = answer.get("items") if isinstance(answer, dict) else answer
    try:
        values = []
        for s, row in zip(scored, rows, strict=True):
            if row.get("item") != s.item:
                raise ValueError(f"answer for {row.get('item')!r} where {s.item!r} was sent")
            pctr, pctcvr = float(row["pctr"]), float(row["pctcvr"])
            if objective == "clicks":
                values.append(pctr)
            elif objective == "purchases":
                values.append(pctcvr)
            else:
                price = (metas.get(s.item) or {}).get("price")
                values.append(pctcvr * max(float(price or 0.0), 0.0))
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return _skipped(scored, fallbacks.REASON_TORCHSERVE_ERROR, f"unexpected ranker answer: {exc}"[:200])
    # Stable: ties keep the retrieval order.
    order = sorted(range(len(scored)), key=lambda i: -values[i])
    ranked = [
        replace(
            scored[i],
            score=values[i],
            rank_reason={
                "type": "ranked",
                "by": objective,
                "value": round(values[i], 6),
                "retrieval_score": round(float(scored[i].score), 6),
                "text": rank_reason_text(objective, values[i]),
            },
        )
        for i in order
    ]
    return RankStage(scored=ranked, note="", model=model)
