"""From scored candidates to the rows of a list: item metadata, the rules engine, diversity, one row format."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recadmin.catalog.selectors import items_metadata
from recadmin.rules import engine
from recadmin.rules.engine import Candidate, Context, RuleSet
from recadmin.serving.embeddings import embeddings_get
from recadmin.serving.state import SceneBundle

logger = logging.getLogger(__name__)

# One Candidate per metadata dict, without score or embedding: serving turns the same process-local
# dicts (catalog.metadata) into ~150 candidates per request, each a copy of its item's template.
# Keyed by id() and holding the dict itself, so an id is never reused while its entry lives. Cleared
# when full.
_TEMPLATES: dict[int, tuple[dict[str, Any], Candidate]] = {}
_TEMPLATES_MAX = 50_000


@dataclass(slots=True)  # ~150 per request: not frozen, which costs twice the time to build
class Scored:
    """A candidate as a source gives it: the item, its score, the source's name, and a reason the
    source adds (e.g. {"type": "similar_to", "item": ...})."""

    item: str
    score: float
    origin: str
    reason: dict[str, Any] | None = None
    # What the rank stage says of it ("ranked by predicted clicks 0.083", or why it was skipped).
    rank_reason: dict[str, Any] | None = None


@dataclass
class Built:
    items: list[dict[str, Any]]
    raw: list[dict[str, Any]]
    report: dict[str, Any]


def _template(meta: dict[str, Any]) -> Candidate:
    hit = _TEMPLATES.get(id(meta))
    if hit is not None and hit[0] is meta:
        return hit[1]
    path = meta.get("path")
    if path is None:
        path = tuple(p for p in (meta.get("category_path") or "").strip("/").split("/") if p)
    template = Candidate(
        item_id=meta["item"],
        score=0.0,
        category=meta.get("category") or None,
        category_path=path,
        brand=meta.get("brand") or "",
        price=meta.get("price"),
        in_stock=bool(meta.get("in_stock", True)),
        active=bool(meta.get("is_active", True)),
        attributes=meta.get("attributes") or {},
    )
    if len(_TEMPLATES) >= _TEMPLATES_MAX:
        _TEMPLATES.clear()
    _TEMPLATES[id(meta)] = (meta, template)
    return template


def to_candidate(meta: dict[str, Any], score: float, origin: str, embedding: np.ndarray | None = None) -> Candidate:
    return _template(meta).scored(float(score), origin, embedding)


def pinned_ids(ruleset: RuleSet, now: dt.datetime) -> list[str]:
    ids: list[str] = []
    for rule in ruleset.rules:
        if rule.kind == engine.KIND_PIN and rule.is_active(now):
            ids.extend(rule.pinned_items)
    return ids


def format_row(
    meta: dict[str, Any], *, score: float | None, position: int, reasons: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """The one shape of a list row (response, cache, preview): reasons None for the preview's raw ranking."""
    row: dict[str, Any] = {
        "item": meta.get("item", ""),
        "title": meta.get("title", ""),
        "category": meta.get("category") or None,
        "price": meta.get("price"),
        "score": round(float(score), 6) if score is not None and score == score else None,
        "position": position,
    }
    if reasons is not None:
        row["reasons"] = reasons
    return row


def descending_scores(rows: list[dict[str, Any]]) -> None:
    """Make a list's scores read in its order (issue 11): an item placed above better-scored ones by a
    pin or by diversity shows the score of the best item below it. Its reasons keep its own score."""
    best: float | None = None
    for row in reversed(rows):
        score = row["score"]
        if score is None:
            continue
        if best is not None and score < best:
            row["score"] = best
        else:
            best = score


def rank(
    scored: Sequence[Scored],
    *,
    bundle: SceneBundle,
    context: Context,
    length: int,
    want_raw: bool = False,
    embedding_version: int | None = None,
    items_state: tuple[int, int | None] | None = None,
) -> Built:
    """Rules and diversity over the candidates (in the order and with the scores the chain gave)."""
    now = context.now
    pinned = pinned_ids(bundle.ruleset, now)
    metas = items_metadata([s.item for s in scored] + pinned, state=items_state)
    known = [s for s in scored if s.item in metas]
    vectors: dict[str, np.ndarray] = {}
    if bundle.settings.mmr_enabled and bundle.settings.mmr_lambda < 1.0 and embedding_version is not None:
        vectors = embeddings_get(version_id=embedding_version, shop_ids=[s.item for s in known] + pinned)
    get_vector = vectors.get
    # One pass over ~150 candidates (the hot path): the candidates and the reasons their sources gave.
    candidates: list[Candidate] = []
    extra_reasons: dict[str, dict[str, Any]] = {}
    rank_reasons: dict[str, dict[str, Any]] = {}
    for s in known:
        item = s.item
        candidates.append(to_candidate(metas[item], s.score, s.origin, get_vector(item)))
        if s.reason is not None:
            extra_reasons[item] = s.reason
        if s.rank_reason is not None:
            rank_reasons[item] = s.rank_reason
    extras = tuple(to_candidate(metas[i], 0.0, "pinned", get_vector(i)) for i in pinned if i in metas)
    ctx = Context(now=now, purchases=context.purchases, current_item=context.current_item, extra_candidates=extras)
    ranking = engine.apply_rules(candidates, bundle.ruleset, bundle.settings, ctx, n=length, offset=0)
    items = []
    for ranked in ranking.items:
        reasons = [dict(r) for r in ranked.reasons]
        extra = extra_reasons.get(ranked.item_id) if ranked.candidate.origin != "pinned" else None
        if extra is not None:
            reasons.insert(1, dict(extra))
        ranked_by = rank_reasons.get(ranked.item_id) if ranked.candidate.origin != "pinned" else None
        if ranked_by is not None:
            reasons.insert(1, dict(ranked_by))
        items.append(
            format_row(
                metas.get(ranked.item_id, {"item": ranked.item_id}),
                score=ranked.score,
                position=ranked.position,
                reasons=reasons,
            )
        )
    descending_scores(items)
    raw: list[dict[str, Any]] = []
    if want_raw:
        for ranked in engine.raw_ranking(candidates, n=length):
            raw.append(
                format_row(
                    metas.get(ranked.item_id, {"item": ranked.item_id}),
                    score=ranked.score,
                    position=ranked.position,
                    reasons=None,
                )
            )
    report = {
        "total_candidates": ranking.total_candidates,
        "removed": dict(ranking.removed),
        "capped": ranking.capped,
        "skipped_pins": list(ranking.skipped_pins),
        "applied_rules": list(ranking.applied_rules),
        "unknown_to_catalog": len(scored) - len(known),
    }
    return Built(items=items, raw=raw, report=report)


def rank_or_plain(scored: Sequence[Scored], *, length: int, **kwargs: Any) -> Built:
    """`rank`, and when ranking fails (a bug in a rule, a cache returning garbage), the candidates in
    the chain's order without the scene's rules rather than a 500. Only active catalog items, as far
    as the catalog answers."""
    try:
        return rank(scored, length=length, **kwargs)
    except Exception:
        logger.exception("serving: ranking failed; serving the candidates in the chain's order")
    try:
        metas: dict[str, dict[str, Any]] | None = items_metadata([s.item for s in scored[: length * 4]])
    except Exception:  # noqa: BLE001 - catalog unreachable too: ids and scores are all there is
        metas = None
    items: list[dict[str, Any]] = []
    for s in scored:
        meta = metas.get(s.item) if metas is not None else {"item": s.item}
        if meta is None or not meta.get("is_active", True):
            continue
        reasons: list[dict[str, Any]] = [
            {"type": s.origin, "score": round(float(s.score), 6)},
            {"type": "rules_skipped"},
        ]
        if s.rank_reason is not None:
            reasons.insert(1, dict(s.rank_reason))
        items.append(format_row({**meta, "item": s.item}, score=s.score, position=len(items) + 1, reasons=reasons))
        if len(items) >= length:
            break
    return Built(items=items, raw=[], report={"rules_skipped": True})
