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
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from itertools import chain, compress
from operator import attrgetter
from typing import Any

import numpy as np

from recadmin.rules.conditions import BatchPredicate, Predicate, compile_condition, compile_condition_batch

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


_NO_ATTRIBUTES: Any = object()  # sentinel: each Candidate built without attributes gets its own {}


@dataclass(frozen=True, init=False)
class Candidate:
    """One item the model (or a fallback) proposes, with the metadata the rules read.

    `category_path` holds the slugs from the root down to the item's own category, so "in the
    subtree of X" is a membership test. `origin` names where the score comes from ("model",
    "popular", "similar") and becomes the first reason. `embedding` is a sequence of floats or a
    1-D numpy float array (serving passes its cached unit vectors as arrays); never test its truth.
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
    embedding: Sequence[float] | np.ndarray | None = None
    origin: str = "model"

    # Serving builds ~150 of these per request: the generated frozen __init__ sets each field through
    # object.__setattr__ (~1.4 us per Candidate); writing the instance dict directly is ~2.5x faster
    # and keeps the same keyword/positional API, equality, repr, replace() and asdict().
    def __init__(
        self,
        item_id: str,
        score: float,
        category: str | None = None,
        category_path: tuple[str, ...] = (),
        brand: str = "",
        price: float | None = None,
        in_stock: bool = True,
        active: bool = True,
        attributes: Mapping[str, Any] = _NO_ATTRIBUTES,
        embedding: Sequence[float] | np.ndarray | None = None,
        origin: str = "model",
    ) -> None:
        values = self.__dict__
        values["item_id"] = item_id
        values["score"] = score
        values["category"] = category
        values["category_path"] = category_path
        values["brand"] = brand
        values["price"] = price
        values["in_stock"] = in_stock
        values["active"] = active
        values["attributes"] = {} if attributes is _NO_ATTRIBUTES else attributes
        values["embedding"] = embedding
        values["origin"] = origin

    def scored(self, score: float, origin: str, embedding: Sequence[float] | np.ndarray | None = None) -> Candidate:
        """The same item (metadata, attributes) with this score, origin and embedding. Serving keeps
        one Candidate per catalog item as a template and makes ~150 per request from them: one dict
        copy, a third of __init__'s time."""
        candidate = _new_instance(type(self))
        values = candidate.__dict__
        values.update(self.__dict__)
        values["score"] = score
        values["origin"] = origin
        values["embedding"] = embedding
        return candidate


_new_instance = object.__new__


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

    @cached_property
    def batch_predicate(self) -> BatchPredicate:
        # The same condition over a whole candidate list at once (what apply_rules uses).
        return compile_condition_batch(self.condition)

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
    # The candidate sources in order (rules.params); empty: the default of the slug.
    strategy: tuple[str, ...] = ()
    # The rank stage's objective (rules.models.RankBy): "" off, else what the ranker orders the candidates by.
    rank_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["strategy"] = list(self.strategy)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneSettings:
        known = _known(cls, data)
        if "strategy" in known:
            known["strategy"] = tuple(known["strategy"] or ())
        return cls(**known)

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


@dataclass(frozen=True, init=False)
class RankedItem:
    item_id: str
    score: float
    position: int  # 1-based, in the whole list (offset included)
    category: str | None
    reasons: tuple[dict[str, Any], ...]
    candidate: Candidate

    # One per item of every page served: the same fast construction as Candidate's.
    def __init__(
        self,
        item_id: str,
        score: float,
        position: int,
        category: str | None,
        reasons: tuple[dict[str, Any], ...],
        candidate: Candidate,
    ) -> None:
        values = self.__dict__
        values["item_id"] = item_id
        values["score"] = score
        values["position"] = position
        values["category"] = category
        values["reasons"] = reasons
        values["candidate"] = candidate


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


_get_active = attrgetter("active")
_get_category = attrgetter("category")


def _origin_reason(candidate: Candidate) -> dict[str, Any]:
    return {"type": candidate.origin, "score": candidate.score}


def _rule_sort_key(rule: CompiledRule) -> tuple[int, int]:
    return (-rule.priority, rule.id)


def _dedupe(candidates: Iterable[Candidate]) -> tuple[list[Candidate], int]:
    """Keep one copy per item id: the best score, at the position of its first appearance."""
    best: dict[str, Candidate] = {}
    duplicates = 0
    for candidate in candidates:
        item_id = candidate.item_id
        previous = best.get(item_id)
        if previous is None:
            best[item_id] = candidate
            continue
        duplicates += 1
        if _finite(candidate.score) > _finite(previous.score):
            # Assigning to an existing key keeps its place: the dict stays in first-seen order.
            best[item_id] = candidate
    return list(best.values()), duplicates


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


def _has_vector(vector: Sequence[float] | np.ndarray | None) -> bool:
    # Never `if vector:` - that is ambiguous for a numpy array. None and empty mean "no vector".
    return vector is not None and len(vector) > 0


def _normalised(vectors: Sequence[Sequence[float] | np.ndarray | None]) -> np.ndarray | None:
    """The unit rows of the candidates' vectors (zero rows for missing ones), or None when there
    is nothing to diversify on (no vectors, or vectors of different sizes)."""
    count = len(vectors)
    matrix: np.ndarray | None = None
    if count and type(vectors[0]) is np.ndarray:
        # Serving's cached vectors: one conversion when all are there with one size (what the old
        # np.asarray did for tuples); a None or a size mismatch makes numpy refuse the ragged list.
        try:
            matrix = np.array(vectors, dtype=np.float64)
        except (TypeError, ValueError):
            matrix = None
        if matrix is not None and (matrix.ndim != 2 or matrix.shape[1] == 0):
            matrix = None
    if matrix is None:
        sizes = {len(v) for v in vectors if v is not None}
        sizes.discard(0)  # None and empty both mean "no vector"
        if len(sizes) != 1:
            # No embeddings (or inconsistent sizes): nothing to diversify on, MMR is score order.
            return None
        dim = sizes.pop()
        if set(map(type, vectors)) <= {tuple, list}:
            # Tuples of Python floats: one flat iterator, the same float64 values as np.asarray.
            try:
                flat = np.fromiter(chain.from_iterable(vectors), dtype=np.float64, count=count * dim)  # type: ignore[arg-type]
                matrix = flat.reshape(count, dim)
            except ValueError:  # an empty one among them: fewer values than count * dim
                matrix = None
        if matrix is None:
            matrix = np.zeros((count, dim), dtype=np.float64)
            for row, vector in enumerate(vectors):
                if vector is not None and len(vector) == dim:
                    matrix[row] = vector
    # np.linalg.norm(matrix, axis=1) is sqrt(add.reduce(conj(x) * x, axis=1)); for real x the same
    # values without the copy conj makes and the argument handling.
    norms = np.sqrt(np.add.reduce(matrix * matrix, axis=1))
    norms[norms == 0] = 1.0
    return matrix / norms[:, None]


def _resolve_pins(
    rules: Sequence[CompiledRule],
    eligible: Mapping[str, int],
    all_seen: Mapping[str, str],
) -> tuple[dict[int, tuple[int, CompiledRule]], list[dict[str, Any]]]:
    """Map 0-based positions to pinned items (given by their index in `eligible`). Higher-priority
    pins claim positions first; a later pin whose position is taken moves to the next free one."""
    placed: dict[int, tuple[int, CompiledRule]] = {}
    pinned_ids: set[str] = set()
    skipped: list[dict[str, Any]] = []
    for rule in rules:
        slot = max(1, int(rule.position or 1)) - 1
        for item_id in rule.pinned_items:
            if item_id in pinned_ids:
                continue  # already pinned by a stronger rule
            index = eligible.get(item_id)
            if index is None:
                reason = all_seen.get(item_id, "unknown item (no metadata)")
                skipped.append({"rule": rule.id, "rule_name": rule.name, "item": item_id, "reason": reason})
                continue
            while slot in placed:
                slot += 1
            placed[slot] = (index, rule)
            pinned_ids.add(item_id)
            slot += 1
    return placed, skipped


def _adjust_reason(rule: CompiledRule, before: float, after: float) -> dict[str, Any]:
    return {
        "type": "boosted" if rule.kind == KIND_BOOST else "buried",
        "rule": rule.id,
        "rule_name": rule.name,
        "mode": rule.weight_mode,
        "weight": rule.weight,
        "before": before,
        "after": after,
    }


def apply_rules(
    candidates: Sequence[Candidate],
    ruleset: RuleSet,
    scene: SceneSettings,
    context: Context,
    *,
    n: int,
    offset: int = 0,
) -> Ranking:
    """The final ordered page [offset, offset + n) of `candidates` after the scene's rules.

    Each stage runs over the whole candidate list at once (one comprehension per rule, see
    `compile_condition_batch`) instead of one candidate at a time; every candidate still meets the
    same checks in the same order, and counts, reasons and ties come out as they always did."""
    if n < 0 or offset < 0:
        raise ValueError("n and offset must not be negative")
    limit = offset + n
    now = context.now
    active_rules = sorted((r for r in ruleset.rules if r.is_active(now)), key=_rule_sort_key)
    filters = [r for r in active_rules if r.kind == KIND_FILTER]
    adjusters = [r for r in active_rules if r.kind in (KIND_BOOST, KIND_BURY)]
    pins = [r for r in active_rules if r.kind == KIND_PIN and r.pinned_items]

    candidate_ids = [c.item_id for c in candidates]
    proposed_ids = set(candidate_ids)
    extras = [c for c in context.extra_candidates if c.item_id not in proposed_ids]
    extra_ids = {c.item_id for c in extras}
    if len(proposed_ids) == len(candidates) and len(extra_ids) == len(extras):
        # Every id once: nothing to de-duplicate.
        unique, duplicates = [*candidates, *extras], 0
        unique_ids = [*candidate_ids, *(c.item_id for c in extras)]
    else:
        unique, duplicates = _dedupe([*candidates, *extras])
        unique_ids = [c.item_id for c in unique]
    # The extras never share an id with a proposed candidate, so they come last in `unique`.
    proposed_count = len(proposed_ids)
    removed: dict[str, int] = {}
    if duplicates:
        removed["duplicate"] = duplicates
    applied: set[int] = set()
    causes: dict[int, str] = {}  # index in `unique` -> why it was dropped

    # 1. Scene exclusions: a cheap pass flags the candidates that may be excluded.
    current_item = context.current_item if scene.exclude_current_item else None
    purchases = context.purchases if scene.exclude_purchased_days else {}
    if current_item is None and not purchases:
        flagged = [] if all(map(_get_active, unique)) else [k for k, c in enumerate(unique) if not c.active]
    else:
        flagged = [
            k
            for k, c in enumerate(unique)
            if not c.active or (current_item is not None and c.item_id == current_item) or c.item_id in purchases
        ]
    for k in flagged:
        cause = _excluded_by_scene(unique[k], scene, context)
        if cause is not None:
            causes[k] = cause
    # `alive`: the indices in `unique` still in, ascending; `live`: those candidates.
    alive = [k for k in range(len(unique)) if k not in causes] if causes else list(range(len(unique)))
    live = [unique[k] for k in alive] if causes else unique

    # 2. Filters in rule order, each over the candidates the previous ones kept.
    for rule in filters:
        if not live:
            break
        answers = rule.batch_predicate(live)
        keep = answers if rule.filter_mode == FILTER_INCLUDE else [not answer for answer in answers]
        if all(keep):
            continue
        cause = f"rule:{rule.id}"
        applied.add(rule.id)
        for k in compress(alive, [not kept for kept in keep]):
            causes[k] = cause
        alive = list(compress(alive, keep))
        live = list(compress(live, keep))

    dropped: dict[str, str] = {}  # item id -> cause, so a pin on it can say why it is missing
    for k in sorted(causes):
        item_id = unique_ids[k]
        cause = causes[k]
        # Extras exist only to be pinned: dropping one is reported as a skipped pin, not a count.
        if item_id not in extra_ids:
            removed[cause] = removed.get(cause, 0) + 1
        dropped[item_id] = cause

    # 3. Boosts and buries in rule order on the running scores. `values` mirrors `scores` (Python
    # floats, _finite of the model's) as an array for the sort and MMR.
    values = np.array([c.score for c in live], dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        values = np.where(finite, values, -np.inf)
    scores: list[float] = values.tolist()
    adjusted: dict[int, list[tuple[CompiledRule, float, float]]] = {}  # reasons, built for the page only
    for rule in adjusters:
        if not live:
            break
        answers = rule.batch_predicate(live)
        if not any(answers):
            continue
        applied.add(rule.id)
        for j in compress(range(len(live)), answers):
            before = scores[j]
            after = scores[j] = _adjust(before, rule)
            if j in adjusted:
                adjusted[j].append((rule, before, after))
            else:
                adjusted[j] = [(rule, before, after)]
    if adjusted:
        values = np.array(scores, dtype=np.float64)

    # 4. Pins, then the pool in score order (ties: input order), then the list.
    if pins:
        eligible: dict[str, int] = {}
        for rule in pins:
            for item_id in rule.pinned_items:
                if item_id in eligible or item_id in dropped:
                    continue
                try:
                    k = unique_ids.index(item_id)
                except ValueError:
                    continue
                eligible[item_id] = bisect_left(alive, k)
        pinned_slots, skipped_pins = _resolve_pins(pins, eligible, dropped)
    else:
        pinned_slots, skipped_pins = {}, []
    for _, rule in pinned_slots.values():
        applied.add(rule.id)
    # Extras the model did not propose and no pin placed never enter the list: the pool is the
    # proposed candidates still in, less the pinned ones.
    cut = bisect_left(alive, proposed_count)
    pool_at = np.arange(cut)
    pinned_js = [j for j, _ in pinned_slots.values() if j < cut]
    if pinned_js:
        pool_at = np.delete(pool_at, pinned_js)
    pool_scores = values[pool_at]
    if not np.isnan(pool_scores).any():
        # A stable sort on -score keeps the input order among ties: the order of the old key
        # (-score, input order, item id) whenever no score is NaN.
        order = np.argsort(-pool_scores, kind="stable")
        pool: list[int] = pool_at[order].tolist()
        pool_scores = pool_scores[order]
    else:
        # NaN scores (an infinite weight) have no order: Python's sort on the old key, as before.
        pool = sorted(pool_at.tolist(), key=lambda j: (-scores[j], j))
        pool_scores = values[pool]

    chosen, capped, has_more = _build_list(pool, pool_scores, live, pinned_slots, scene, limit)
    items: list[RankedItem] = []
    for index in range(offset, len(chosen)):
        j, pin_rule = chosen[index]
        candidate = live[j]
        reasons: tuple[dict[str, Any], ...] = (_origin_reason(candidate),)
        if j in adjusted:
            reasons += tuple(_adjust_reason(rule, before, after) for rule, before, after in adjusted[j])
        if pin_rule is not None:
            reasons += ({"type": "pinned", "rule": pin_rule.id, "rule_name": pin_rule.name, "position": index + 1},)
        items.append(RankedItem(candidate.item_id, scores[j], index + 1, candidate.category, reasons, candidate))
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
    pool: list[int],
    pool_scores: np.ndarray,
    live: Sequence[Candidate],
    pinned_slots: Mapping[int, tuple[int, CompiledRule]],
    scene: SceneSettings,
    limit: int,
) -> tuple[list[tuple[int, CompiledRule | None]], int, bool]:
    """Fill positions 0..limit-1 from the top: pins at their slots, otherwise the best remaining
    candidate under the category cap (by MMR when enabled). `pool` holds indices into `live` in
    score order, `pool_scores` their running scores. Returns the list (indices into `live`, with
    the pin rule or None), how many candidates the cap skipped, and whether more items were
    available past `limit`.

    MMR keeps one array `mmr` = lambda * relevance - (1 - lambda) * max similarity to the placed
    items, with -inf for every candidate no longer available, so a step is one argmax. Placing a
    vector v lowers it to min(mmr, base - (1 - lambda) * (E @ v)): for 0 <= lambda <= 1 and finite
    vectors that is exactly the value of the per-step formula on the running max similarity (IEEE
    rounding is monotonic), so the same candidate wins every step, ties included (argmax takes
    the first maximum). Other inputs (lambda outside [0, 1], non-finite embeddings) take the
    literal per-step formula."""
    cap = scene.max_per_category or 0
    counts: dict[str | None, int] = {}
    chosen: list[tuple[int, CompiledRule | None]] = []
    pending_pins = sorted(pinned_slots.items())
    size = len(pool)
    use_mmr = scene.mmr_enabled and size > 1
    embeddings = _normalised([live[j].embedding for j in pool]) if use_mmr else None
    if embeddings is None:
        use_mmr = False
    available = [True] * size
    remaining = size  # how many entries of `available` are True
    capped = 0
    categories = list(map(list(map(_get_category, live)).__getitem__, pool)) if cap else []
    cursor = 0  # next pool index to consider when MMR is off (the pool is in score order)

    lam = scene.mmr_lambda
    exact = False  # the incremental `mmr` array of the docstring; else the literal formula
    first_vector = True
    poisoned = False  # a non-finite pin vector made every similarity NaN, i.e. 0 from then on
    base = relevance = max_sim = mmr = scratch = np.zeros(0)
    spread = 1.0
    available_mask = np.zeros(0, dtype=bool)
    if use_mmr and embeddings is not None:
        scores = pool_scores
        finite = np.isfinite(scores)
        if finite.all():  # the same values as the general form below, in fewer steps
            low, high = scores.min(), scores.max()
            span = high - low
            relevance = (scores - low) / span if span > 0 else np.ones(size)
        else:
            low = scores[finite].min() if finite.any() else 0.0
            high = scores[finite].max() if finite.any() else 0.0
            span = high - low
            relevance = np.where(finite, (scores - low) / span if span > 0 else 1.0, -1.0)
        if 0.0 <= lam <= 1.0 and bool(np.isfinite(embeddings).all()):
            exact = True
            base = lam * relevance  # and -inf once a candidate is no longer available
            mmr = base  # nothing placed yet: every similarity counts as 0
            spread = 1.0 - lam
            scratch = np.empty(size)
        else:
            max_sim = np.full(size, -np.inf)
            available_mask = np.ones(size, dtype=bool)
    neg_inf = -np.inf

    def take(index: int) -> None:
        nonlocal remaining
        available[index] = False
        remaining -= 1
        if exact:
            base[index] = neg_inf
            if mmr is not base:
                mmr[index] = neg_inf
        elif use_mmr:
            available_mask[index] = False

    def pin_vector(candidate: Candidate) -> np.ndarray | None:
        embedding = candidate.embedding
        if not use_mmr or embeddings is None or not _has_vector(embedding):
            return None
        vector = np.asarray(embedding, dtype=np.float64)
        if vector.shape[0] != embeddings.shape[1]:
            return None
        norm = np.linalg.norm(vector)
        return vector / norm if norm else None

    # The loop is written out (no helper calls on the common path): it runs once per position.
    position = 0
    while position < limit:
        pin: tuple[int, CompiledRule] | None = None
        index = -1
        if pending_pins and pending_pins[0][0] <= position:
            pin = pending_pins.pop(0)[1]
        else:
            if exact:
                # argmax returns the first maximum: ties go to the better-ranked candidate.
                index = int(mmr.argmax()) if remaining else -1
            elif use_mmr:
                if remaining:
                    similarity = np.where(np.isfinite(max_sim), max_sim, 0.0)
                    values = lam * relevance - (1.0 - lam) * similarity
                    index = int(np.argmax(np.where(available_mask, values, -np.inf)))
            else:
                while cursor < size and not available[cursor]:
                    cursor += 1
                index = cursor if cursor < size else -1
            if index < 0:
                if not pending_pins:
                    break
                # The pool ran dry before a pin's position: the pin moves up to fill the list.
                pin = pending_pins.pop(0)[1]
        position += 1
        vector: np.ndarray | None = None
        if pin is not None:
            j = pin[0]
            chosen.append(pin)
            if use_mmr:
                vector = pin_vector(live[j])
        else:
            available[index] = False  # take(index), written out
            remaining -= 1
            if exact:
                base[index] = neg_inf
                if mmr is not base:
                    mmr[index] = neg_inf
            elif use_mmr:
                available_mask[index] = False
            j = pool[index]
            chosen.append((j, None))
            if use_mmr and embeddings is not None:
                vector = embeddings[index]
        category = live[j].category
        count = counts[category] = counts.get(category, 0) + 1
        if cap and count >= cap:
            # list.index scans in C: reaching a cap costs O(pool) compares, O(category) Python.
            found = -1
            while True:
                try:
                    found = categories.index(category, found + 1)
                except ValueError:
                    break
                if available[found]:
                    take(found)
                    capped += 1
        if vector is None or embeddings is None or position == limit:
            continue  # no similarities to add, or the list is complete and nothing reads them
        if not exact:
            max_sim = np.maximum(max_sim, embeddings @ vector)
        elif poisoned:
            pass
        elif pin is not None and not np.isfinite(vector).all():  # pool rows are known finite
            # NaN similarities stay NaN under np.maximum and count as 0 from then on.
            poisoned = True
            mmr = base
        elif first_vector:
            # The first similarities replace the "0 before anything is placed", even negative ones.
            first_vector = False
            mmr = np.matmul(embeddings, vector)
            np.multiply(mmr, spread, out=mmr)
            np.subtract(base, mmr, out=mmr)
        else:
            np.matmul(embeddings, vector, out=scratch)
            np.multiply(scratch, spread, out=scratch)
            np.subtract(base, scratch, out=scratch)
            np.minimum(mmr, scratch, out=mmr)
    has_more = bool(pending_pins) or remaining > 0
    return chosen, capped, has_more


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
