"""The rules engine: pure functions from scored candidates to the list a shop shows.

No ORM and no Django here: serving calls `apply_rules` on the hot path with data it already holds
(candidates from TorchServe with cached item metadata, a cached `RuleSet`, the scene's settings),
and tests call it with plain values.

The pipeline, in this order:
 1. de-duplication (the best-scored copy of an item wins) and the hard exclusions: inactive items,
    the scene's exclusions (the current item, items the customer bought in the last D days);
 2. filter rules: an "exclude" filter drops what matches, an "include" filter keeps only what
    matches (several include filters must all be satisfied);
 3. boost and bury rules in priority order (higher `priority` first, then lower id), each applied
    to the running score of every candidate it matches:
      multiply: a boost scales the score's magnitude up by `weight`, a bury scales it down, so a
                boost always raises and a bury always lowers, even for negative model scores
                (s -> s*w or s/w); a zero score stays zero, use "add" to lift those;
      add:      a boost adds `weight`, a bury subtracts it;
 4. diversity and pins, one position at a time: a pin takes its position (1-based; pins of higher
    priority first, the items of one rule on consecutive positions); every other position gets the
    best remaining candidate whose category is below the cap (`max_per_category`, counted over the
    whole list served, pins included), chosen by MMR when enabled:
        mmr(c) = lambda * relevance(c) - (1 - lambda) * max cosine similarity to the items placed
    with relevance the running score min-max scaled to [0, 1] (lambda = 1 is plain score order);
 5. pagination: the list is built to `offset + n` items and the slice [offset, offset + n) returned.

Every step is deterministic (ties break on the candidates' input order, then the item id), and the
list is built position by position from the top, so the first page of a longer request is the same
page, and the same inputs always give the same pages.

A pinned item goes through the same filters and exclusions as any other (a filter means "never
show this here"); a pin that loses its item that way is reported in `Ranking.skipped_pins`. Pins are
never dropped for the category cap, so only pins can take a category above its cap.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from typing import Any

import numpy as np

from recadmin.rules.conditions import Predicate, compile_condition

KIND_FILTER = "filter"
KIND_BOOST = "boost"
KIND_BURY = "bury"
KIND_PIN = "pin"
KINDS = (KIND_FILTER, KIND_BOOST, KIND_BURY, KIND_PIN)
FILTER_INCLUDE = "include"
FILTER_EXCLUDE = "exclude"
WEIGHT_MULTIPLY = "multiply"
WEIGHT_ADD = "add"
FALLBACK_CATEGORY = "category"
FALLBACK_OVERALL = "overall"


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    # Cached dicts may come from an older or newer release during a rolling deploy: keep the
    # fields this release knows, so a cache entry never turns into a TypeError on the hot path.
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


@dataclass(frozen=True)
class Candidate:
    """One item the model (or a fallback) proposes, with the metadata the rules read.

    `category_path` holds the slugs from the root down to the item's own category, so "in the
    subtree of X" is a membership test. `origin` names where the score comes from ("model",
    "popular", "similar") and becomes the first reason.
    """

    item_id: str
    score: float
    category: str | None = None
    category_path: tuple[str, ...] = ()
    brand: str = ""
    price: float | None = None
    in_stock: bool = True
    active: bool = True
    attributes: Mapping[str, Any] = field(default_factory=dict)
    embedding: tuple[float, ...] | None = None
    origin: str = "model"


@dataclass(frozen=True)
class CompiledRule:
    """A business rule as the engine needs it: plain, JSON-serialisable, no ORM object.

    Validity bounds are POSIX timestamps (seconds), so the cached form needs no datetime codec.
    """

    id: int
    name: str
    kind: str
    condition: Mapping[str, Any] | None = None
    filter_mode: str = FILTER_EXCLUDE
    weight: float = 1.0
    weight_mode: str = WEIGHT_MULTIPLY
    position: int | None = None
    pinned_items: tuple[str, ...] = ()
    valid_from: float | None = None
    valid_until: float | None = None
    priority: int = 0
    enabled: bool = True

    @cached_property
    def predicate(self) -> Predicate:
        # Compiled once per rule object: serving keeps its rule sets per process, so a request
        # no longer rebuilds every condition's closures.
        return compile_condition(self.condition)

    def is_active(self, now: dt.datetime) -> bool:
        if not self.enabled:
            return False
        moment = now.timestamp()
        if self.valid_from is not None and moment < self.valid_from:
            return False
        return not (self.valid_until is not None and moment >= self.valid_until)


@dataclass(frozen=True)
class RuleSet:
    """The rules of one scene, compiled from the database and cached as `to_dict()`."""

    scene: str
    rules: tuple[CompiledRule, ...] = ()
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"scene": self.scene, "version": self.version, "rules": [asdict(rule) for rule in self.rules]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleSet:
        rules = tuple(
            CompiledRule(**{**_known(CompiledRule, raw), "pinned_items": tuple(raw.get("pinned_items") or ())})
            for raw in data["rules"]
        )
        return cls(scene=str(data["scene"]), rules=rules, version=str(data.get("version", "")))


@dataclass(frozen=True)
class SceneSettings:
    """What the engine reads of a Scene. `max_per_category` None or 0 means no cap."""

    slug: str
    default_n: int = 10
    candidate_multiplier: int = 5
    max_per_category: int | None = None
    mmr_enabled: bool = False
    mmr_lambda: float = 0.7
    fallback: str = FALLBACK_OVERALL
    exclude_purchased_days: int | None = None
    exclude_current_item: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneSettings:
        return cls(**_known(cls, data))

    def candidates_wanted(self, n: int, offset: int = 0) -> int:
        """How many candidates to ask the model for: k = multiplier x the items the page needs."""
        return max(1, self.candidate_multiplier) * (n + max(0, offset))


@dataclass(frozen=True)
class Context:
    """The request around the list. `purchases` maps item id -> latest purchase time (tz-aware);
    `extra_candidates` carries the metadata of pinned items the model did not propose."""

    now: dt.datetime
    purchases: Mapping[str, dt.datetime] = field(default_factory=dict)
    current_item: str | None = None
    extra_candidates: Sequence[Candidate] = ()


@dataclass(frozen=True)
class RankedItem:
    item_id: str
    score: float
    position: int  # 1-based, in the whole list (offset included)
    category: str | None
    reasons: tuple[dict[str, Any], ...]
    candidate: Candidate


@dataclass(frozen=True)
class Ranking:
    """The page and what the pipeline did. `removed` counts dropped candidates by cause:
    "duplicate", "inactive", "scene:current_item", "scene:purchased", "rule:<id>"; `capped` counts
    candidates skipped by the category cap while the list was built."""

    items: tuple[RankedItem, ...]
    total_candidates: int
    removed: Mapping[str, int]
    capped: int
    skipped_pins: tuple[dict[str, Any], ...]
    applied_rules: tuple[int, ...]
    has_more: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [
                {
                    "item": ranked.item_id,
                    "score": ranked.score,
                    "position": ranked.position,
                    "category": ranked.category,
                    "reasons": list(ranked.reasons),
                }
                for ranked in self.items
            ],
            "total_candidates": self.total_candidates,
            "removed": dict(self.removed),
            "capped": self.capped,
            "skipped_pins": list(self.skipped_pins),
            "applied_rules": list(self.applied_rules),
            "has_more": self.has_more,
        }


@dataclass(slots=True)
class _Working:
    candidate: Candidate
    order: int
    score: float
    # Only the boost / bury reasons: the origin reason is prepended when the page is built, so the
    # hundreds of candidates that never make the page cost no dict.
    reasons: list[dict[str, Any]] | None = None


def _origin_reason(candidate: Candidate) -> dict[str, Any]:
    return {"type": candidate.origin, "score": candidate.score}


def _rule_sort_key(rule: CompiledRule) -> tuple[int, int]:
    return (-rule.priority, rule.id)


def _dedupe(candidates: Iterable[Candidate]) -> tuple[list[Candidate], int]:
    """Keep one copy per item id: the best score, at the position of its first appearance."""
    best: dict[str, Candidate] = {}
    first_seen: dict[str, int] = {}
    duplicates = 0
    for index, candidate in enumerate(candidates):
        previous = best.get(candidate.item_id)
        if previous is None:
            best[candidate.item_id] = candidate
            first_seen[candidate.item_id] = index
            continue
        duplicates += 1
        if _finite(candidate.score) > _finite(previous.score):
            best[candidate.item_id] = candidate
    ordered = sorted(best.values(), key=lambda c: first_seen[c.item_id])
    return ordered, duplicates


def _finite(score: float) -> float:
    # A NaN or infinite score from a model must not poison sorting: treat it as the worst score.
    return float(score) if math.isfinite(score) else -math.inf


def _excluded_by_scene(candidate: Candidate, scene: SceneSettings, context: Context) -> str | None:
    if not candidate.active:
        return "inactive"
    if scene.exclude_current_item and context.current_item is not None and candidate.item_id == context.current_item:
        return "scene:current_item"
    if scene.exclude_purchased_days:
        bought = context.purchases.get(candidate.item_id)
        if bought is not None and context.now - bought <= dt.timedelta(days=scene.exclude_purchased_days):
            return "scene:purchased"
    return None


def _passes_filters(candidate: Candidate, filters: Sequence[tuple[CompiledRule, Any]]) -> int | None:
    """The id of the first filter that removes the candidate, or None when it passes them all."""
    for rule, predicate in filters:
        matches = predicate(candidate)
        if (rule.filter_mode == FILTER_INCLUDE) != matches:
            return rule.id
    return None


def _adjust(score: float, rule: CompiledRule) -> float:
    weight = float(rule.weight)
    if rule.weight_mode == WEIGHT_ADD:
        return score + weight if rule.kind == KIND_BOOST else score - weight
    if weight <= 0:
        return score
    up = rule.kind == KIND_BOOST
    if score >= 0:
        return score * weight if up else score / weight
    return score / weight if up else score * weight


def _normalised(vectors: list[tuple[float, ...] | None]) -> np.ndarray | None:
    dims = {len(v) for v in vectors if v}
    if len(dims) != 1:
        # No embeddings (or inconsistent sizes): nothing to diversify on, MMR is score order.
        return None
    dim = dims.pop()
    if all(vectors):
        matrix = np.asarray(vectors, dtype=np.float64)
    else:
        matrix = np.zeros((len(vectors), dim), dtype=np.float64)
        for row, vector in enumerate(vectors):
            if vector and len(vector) == dim:
                matrix[row] = vector
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = 1.0
    return matrix / norms[:, None]


def _resolve_pins(
    rules: Sequence[CompiledRule],
    eligible: Mapping[str, _Working],
    all_seen: Mapping[str, str],
) -> tuple[dict[int, tuple[_Working, CompiledRule]], list[dict[str, Any]]]:
    """Map 0-based positions to pinned items. Higher-priority pins claim positions first; a later
    pin whose position is taken moves to the next free one."""
    placed: dict[int, tuple[_Working, CompiledRule]] = {}
    pinned_ids: set[str] = set()
    skipped: list[dict[str, Any]] = []
    for rule in rules:
        slot = max(1, int(rule.position or 1)) - 1
        for item_id in rule.pinned_items:
            if item_id in pinned_ids:
                continue  # already pinned by a stronger rule
            working = eligible.get(item_id)
            if working is None:
                reason = all_seen.get(item_id, "unknown item (no metadata)")
                skipped.append({"rule": rule.id, "rule_name": rule.name, "item": item_id, "reason": reason})
                continue
            while slot in placed:
                slot += 1
            placed[slot] = (working, rule)
            pinned_ids.add(item_id)
            slot += 1
    return placed, skipped


def apply_rules(
    candidates: Sequence[Candidate],
    ruleset: RuleSet,
    scene: SceneSettings,
    context: Context,
    *,
    n: int,
    offset: int = 0,
) -> Ranking:
    """The final ordered page [offset, offset + n) of `candidates` after the scene's rules."""
    if n < 0 or offset < 0:
        raise ValueError("n and offset must not be negative")
    limit = offset + n
    active_rules = sorted((r for r in ruleset.rules if r.is_active(context.now)), key=_rule_sort_key)
    filters = [(r, r.predicate) for r in active_rules if r.kind == KIND_FILTER]
    adjusters = [(r, r.predicate) for r in active_rules if r.kind in (KIND_BOOST, KIND_BURY)]
    pins = [r for r in active_rules if r.kind == KIND_PIN and r.pinned_items]

    proposed_ids = {c.item_id for c in candidates}
    extras = [c for c in context.extra_candidates if c.item_id not in proposed_ids]
    unique, duplicates = _dedupe([*candidates, *extras])
    removed: dict[str, int] = {}
    if duplicates:
        removed["duplicate"] = duplicates
    # Why a candidate was dropped, so a pin on it can say so.
    dropped: dict[str, str] = {}
    survivors: list[_Working] = []
    extra_ids = {c.item_id for c in extras}
    applied: set[int] = set()

    for order, candidate in enumerate(unique):
        cause = _excluded_by_scene(candidate, scene, context)
        if cause is None:
            rule_id = _passes_filters(candidate, filters)
            if rule_id is not None:
                cause = f"rule:{rule_id}"
                applied.add(rule_id)
        if cause is not None:
            # Extras exist only to be pinned: dropping one is reported as a skipped pin, not a count.
            if candidate.item_id not in extra_ids:
                removed[cause] = removed.get(cause, 0) + 1
            dropped[candidate.item_id] = cause
            continue
        working = _Working(candidate, order, _finite(candidate.score))
        for rule, predicate in adjusters:
            if predicate(candidate):
                before = working.score
                working.score = _adjust(working.score, rule)
                applied.add(rule.id)
                if working.reasons is None:
                    working.reasons = []
                working.reasons.append(
                    {
                        "type": "boosted" if rule.kind == KIND_BOOST else "buried",
                        "rule": rule.id,
                        "rule_name": rule.name,
                        "mode": rule.weight_mode,
                        "weight": rule.weight,
                        "before": before,
                        "after": working.score,
                    }
                )
        survivors.append(working)

    by_id = {w.candidate.item_id: w for w in survivors}
    pinned_slots, skipped_pins = _resolve_pins(pins, by_id, dropped)
    pinned_ids = {w.candidate.item_id for w, _ in pinned_slots.values()}
    for _, rule in pinned_slots.values():
        applied.add(rule.id)
    # Extras the model did not propose and no pin placed never enter the list.
    pool = [w for w in survivors if w.candidate.item_id not in pinned_ids and w.candidate.item_id not in extra_ids]
    pool.sort(key=lambda w: (-w.score, w.order, w.candidate.item_id))

    chosen, capped, has_more = _build_list(pool, pinned_slots, scene, limit)
    items: list[RankedItem] = []
    for index, (working, pin_rule) in enumerate(chosen):
        if index < offset:
            continue
        reasons = [_origin_reason(working.candidate), *(working.reasons or ())]
        if pin_rule is not None:
            reasons.append({"type": "pinned", "rule": pin_rule.id, "rule_name": pin_rule.name, "position": index + 1})
        items.append(
            RankedItem(
                item_id=working.candidate.item_id,
                score=working.score,
                position=index + 1,
                category=working.candidate.category,
                reasons=tuple(reasons),
                candidate=working.candidate,
            )
        )
    return Ranking(
        items=tuple(items),
        total_candidates=len(candidates),
        removed=removed,
        capped=capped,
        skipped_pins=tuple(skipped_pins),
        applied_rules=tuple(sorted(applied)),
        has_more=has_more,
    )


def _build_list(
    pool: list[_Working],
    pinned_slots: Mapping[int, tuple[_Working, CompiledRule]],
    scene: SceneSettings,
    limit: int,
) -> tuple[list[tuple[_Working, CompiledRule | None]], int, bool]:
    """Fill positions 0..limit-1 from the top: pins at their slots, otherwise the best remaining
    candidate under the category cap (by MMR when enabled). Returns the list, how many candidates
    the cap skipped, and whether more items were available past `limit`."""
    cap = scene.max_per_category or 0
    counts: dict[str | None, int] = {}
    chosen: list[tuple[_Working, CompiledRule | None]] = []
    pending_pins = sorted(pinned_slots.items())
    use_mmr = scene.mmr_enabled and len(pool) > 1
    embeddings = _normalised([w.candidate.embedding for w in pool]) if use_mmr else None
    if embeddings is None:
        use_mmr = False
    available = np.ones(len(pool), dtype=bool)
    categories = [w.candidate.category for w in pool]
    relevance = np.zeros(len(pool))
    max_sim = np.full(len(pool), -np.inf) if use_mmr else np.zeros(0)
    if use_mmr and pool:
        scores = np.array([w.score for w in pool], dtype=np.float64)
        finite = np.isfinite(scores)
        low = scores[finite].min() if finite.any() else 0.0
        high = scores[finite].max() if finite.any() else 0.0
        span = high - low
        relevance = np.where(finite, (scores - low) / span if span > 0 else 1.0, -1.0)
    capped_ids: set[int] = set()
    cursor = 0  # next pool index to consider when MMR is off (the pool is in score order)

    def mark_placed(category: str | None, vector: np.ndarray | None) -> None:
        nonlocal max_sim
        counts[category] = counts.get(category, 0) + 1
        if cap and counts[category] >= cap:
            for index, other in enumerate(categories):
                if other == category and available[index]:
                    available[index] = False
                    capped_ids.add(index)
        if use_mmr and vector is not None:
            max_sim = np.maximum(max_sim, embeddings @ vector)

    def pin_vector(working: _Working) -> np.ndarray | None:
        if not use_mmr or not working.candidate.embedding or embeddings is None:
            return None
        vector = np.asarray(working.candidate.embedding, dtype=np.float64)
        if vector.shape[0] != embeddings.shape[1]:
            return None
        norm = np.linalg.norm(vector)
        return vector / norm if norm else None

    def next_from_pool() -> int | None:
        nonlocal cursor
        if use_mmr:
            if not available.any():
                return None
            similarity = np.where(np.isfinite(max_sim), max_sim, 0.0)
            mmr = scene.mmr_lambda * relevance - (1.0 - scene.mmr_lambda) * similarity
            mmr = np.where(available, mmr, -np.inf)
            # argmax returns the first maximum: ties go to the better-ranked candidate.
            return int(np.argmax(mmr))
        while cursor < len(pool) and not available[cursor]:
            cursor += 1
        return cursor if cursor < len(pool) else None

    position = 0
    while position < limit:
        if pending_pins and pending_pins[0][0] <= position:
            _, (working, rule) = pending_pins.pop(0)
            chosen.append((working, rule))
            mark_placed(working.candidate.category, pin_vector(working))
            position += 1
            continue
        index = next_from_pool()
        if index is None:
            if not pending_pins:
                break
            # The pool ran dry before a pin's position: the pin moves up to fill the list.
            _, (working, rule) = pending_pins.pop(0)
            chosen.append((working, rule))
            mark_placed(working.candidate.category, pin_vector(working))
            position += 1
            continue
        available[index] = False
        working = pool[index]
        chosen.append((working, None))
        mark_placed(working.candidate.category, embeddings[index] if use_mmr and embeddings is not None else None)
        position += 1
    has_more = bool(pending_pins) or bool(available.any())
    return chosen, len(capped_ids), has_more


def raw_ranking(candidates: Sequence[Candidate], *, n: int, offset: int = 0) -> list[RankedItem]:
    """The model's own order before any rule, exclusion or diversity: the admin preview shows it
    next to the final list. Duplicates keep their best score; ties keep the input order."""
    unique, _ = _dedupe(candidates)
    ordered = sorted(enumerate(unique), key=lambda pair: (-_finite(pair[1].score), pair[0], pair[1].item_id))
    page = ordered[offset : offset + n]
    return [
        RankedItem(
            item_id=candidate.item_id,
            score=candidate.score,
            position=offset + index + 1,
            category=candidate.category,
            reasons=(_origin_reason(candidate),),
            candidate=candidate,
        )
        for index, (_, candidate) in enumerate(page)
    ]


def scene_without_diversity(scene: SceneSettings) -> SceneSettings:
    """The same scene with caps and MMR off (the preview can show what diversity changed)."""
    return replace(scene, max_per_category=None, mmr_enabled=False)
