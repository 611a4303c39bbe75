"""The rank stage: the chain's k candidates -> the ranker model (TorchServe) -> ordered by the scene's
objective, before the rules and diversity.

    ranked = rank_stage(ctx, scored)  # RankStage(scored=..., note=...)

On when the scene's `rank_by` is set (clicks | purchases | revenue) and the ranker model
(settings.RANKER_MODEL_NAME) has a default version. The call gets what is left of the serving
time budget; when it fails (timeout, TorchServe down, a bad answer, no default ranker) the
candidates keep the retrieval order and the list says so (`note`, and a "rank_skipped" reason on
each item). Each ranked item's score becomes its objective value and its reasons say
"ranked by predicted clicks 0.083" (training.rank_objectives, the words training.ranker.objective uses).

Customer features (activity, recency, category and brand affinity, price sensitivity) come from the
request's history through training.customer_profile, the function the impressions export uses for
training; the device is the one of the customer's newest event that names one (the export's rule),
read off the same history (its entries carry the device). On a warm process a ranked request costs
no database query and no round trip of its own: the ranker's default version comes with the
request's hot state, the category median prices from a process-local copy.
The ranker knows item attributes from its archive, and is sent the catalog's current price and
stock, which override it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings

from recadmin.catalog.selectors import category_median_prices, items_metadata
from recadmin.events.selectors import customer_last_device
from recadmin.modelops.selectors import DefaultModel
from recadmin.modelops.torchserve import TorchServeError, TorchServeTimeout, TorchServeUnavailable, get_client
from recadmin.serving import fallbacks
from recadmin.serving.services.context import RequestContext
from recadmin.serving.services.ranking import Scored
from recadmin.serving.state import ranker_model
from training.customer_profile import customer_profile
from training.rank_objectives import OBJECTIVES
from training.rank_objectives import reason as reason_text

logger = logging.getLogger(__name__)

REASON_NO_RANKER = "no_default_ranker"


@dataclass
class RankStage:
    scored: list[Scored]
    note: str  # "" when ranked, else why the retrieval order was kept
    model: DefaultModel | None = None


def customer_features(ctx: RequestContext, metas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The customer's profile from the request's history, by the function the impressions export
    uses for training (training.customer_profile; {} for an unknown customer: the ranker's defaults)."""
    attributes = {
        item: (str(m.get("category") or ""), str(m.get("brand") or ""), float(m.get("price") or 0.0))
        for item, m in metas.items()
    }
    now = ctx.now.timestamp()
    events = [(e.ts, e.item) for e in ctx.history.entries]
    if not events and ctx.history_ids:
        # The admin preview's typed history has no times: its items count as just seen, in order.
        events = [(now - 1.0 - 1e-3 * i, item) for i, item in enumerate(reversed(ctx.history_ids))]
    profile = customer_profile(
        events,
        items=attributes,
        category_median_price=category_median_prices(),
        now=now,
        limit=settings.HISTORY_LENGTH,
    )
    return profile or {}


def request_context(ctx: RequestContext) -> dict[str, Any]:
    """Time and device as the export reads them for a logged page (the device of the customer's
    newest event that names one), the device read off the request's history."""
    if ctx.history.read_from == "preview":
        # The admin preview replaces the history by typed ids: the customer's own device is a query away.
        device = customer_last_device(ctx.customer, before=ctx.now)
    else:
        device = ctx.history.last_device(before=ctx.now)
    return {"timestamp": ctx.now.timestamp(), "device": device}


def _skipped(scored: list[Scored], reason: str, detail: str = "") -> RankStage:
    note = f"{reason}: {detail}" if detail else reason
    return RankStage(
        scored=[replace(s, rank_reason={"type": "rank_skipped", "reason": note[:200]}) for s in scored], note=note
    )


def rank_stage(ctx: RequestContext, scored: list[Scored]) -> RankStage:
    objective = ctx.bundle.settings.rank_by
    if objective not in OBJECTIVES or not scored:
        return RankStage(scored=scored, note="")
    model = ranker_model(ctx.state)
    if model is None:
        return _skipped(scored, REASON_NO_RANKER)
    history_items = list(dict.fromkeys([*(e.item for e in ctx.history.entries), *ctx.history_ids]))
    metas = items_metadata([s.item for s in scored] + history_items, state=ctx.state.items)
    # Columns rather than one object per candidate: the ranker decodes and checks them in a
    # fraction of the time (handlers/ranker_handler.py); price and stock override its item table.
    prices: list[float | None] = []
    stocks: list[float | None] = []
    for s in scored:
        meta = metas.get(s.item)
        if meta is None:
            prices.append(None)
            stocks.append(None)
            continue
        # Units in stock, else 1 / 0 from in_stock: the export's rule (recadmin.metrics.impressions).
        units = meta.get("stock_quantity")
        stocks.append(float(units) if units is not None else (1.0 if meta.get("in_stock", True) else 0.0))
        prices.append(float(meta["price"]) if meta.get("price") is not None else None)
    candidates = {
        "item": [s.item for s in scored],
        "retrieval_score": [float(s.score) for s in scored],
        "source": [s.origin for s in scored],
        "price": prices,
        "stock": stocks,
    }
    payload = {
        "customer": customer_features(ctx, metas),
        "scene": ctx.scene or "",
        "context": request_context(ctx),
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
                "text": reason_text(objective, values[i]),
            },
        )
        for i in order
    ]
    return RankStage(scored=ranked, note="", model=model)
