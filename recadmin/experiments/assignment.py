"""Assignment of customers to variants: deterministic, sticky, the same in every process, no I/O.

A customer's variant is a function of (experiment salt, customer id) and the weights in force:

    u = first 8 bytes of BLAKE2b(salt ":" customer id), read as an integer in [0, 2^64)
    variant = the first one whose cumulative weight, scaled to 2^64, is above u

- Deterministic and the same in every process and on every machine: BLAKE2b, never Python's
  `hash()` (salted per process by PYTHONHASHSEED).
- Cold and anonymous customers are included: any id string hashes (the shop's customer id, or the
  anonymous session id it sends for a visitor who has none).
- Proportional to the weights: u is uniform, so each variant receives its share of customers. A
  variant of weight 0 has an empty interval and is never assigned.
- Independent across experiments: the salt is random per experiment, so being in the treatment of
  one experiment says nothing about the next one.
- Sticky: the same customer lands in the same variant as long as the weights stand.

**When the weights change** (Thompson sampling reallocates every few minutes) the design keeps u and
moves the cut points: a customer moves only when the cut points cross their u. With two arms the
share of customers who move is exactly |w_new - w_old|, the least any scheme can move while giving
each arm its new share; with more arms the variants keep their order and only the customers near a
moved boundary change. The alternative, sticky-forever within an allocation epoch, needs to remember
every customer's first variant, which is a lookup on the hot path; this design needs none.

The effect on the analysis: under a fixed allocation nobody ever moves, and the per-customer
comparison is a plain randomised experiment. Under Thompson sampling a few customers are counted in
two variants (the per-customer table keeps one row per customer and variant, so no event is lost or
credited to the wrong arm), the split changes over time, and a period with more traffic in one arm
weighs more in it; the report's intervals then describe what was observed rather than a randomised
comparison. Its sample-ratio test still holds: a customer's *first* variant is a draw from the weights
in force at their first exposure (u is independent of when they arrive), so it counts each customer
once, there, against the allocation history (`statistics.srm_time_weighted`). Use a fixed allocation
to measure a lift; use Thompson to earn while learning.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HASH_SPACE = 1 << 64


def hash_bucket(salt: str, customer_id: str) -> int:
    """The customer's stable position u in [0, 2^64) for this experiment."""
    digest = hashlib.blake2b(f"{salt}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hash_uniform(salt: str, customer_id: str) -> float:
    """u / 2^64: the customer's stable uniform draw in [0, 1)."""
    return hash_bucket(salt, customer_id) / HASH_SPACE


def cumulative_thresholds(weights: Sequence[float]) -> tuple[int, ...]:
    """The upper cut point of each variant in the hash space. Variants of weight 0 share the previous
    cut point; the last variant with a weight ends exactly at 2^64 (no gap from rounding)."""
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    total = float(sum(weights))
    if not total > 0:
        raise ValueError("weights must sum to a positive number")
    last_positive = max(i for i, w in enumerate(weights) if w > 0)
    thresholds: list[int] = []
    running = 0.0
    for i, weight in enumerate(weights):
        running += weight
        if i >= last_positive:
            thresholds.append(HASH_SPACE)
        else:
            thresholds.append(min(HASH_SPACE, int(running / total * HASH_SPACE)))
    return tuple(thresholds)


@dataclass(frozen=True)
class VariantSpec:
    """What a variant changes, for the serving path: at most one of a model version, a strategy (the
    candidate sources in order) or scene settings to override; none of them means the scene as it is."""

    id: int
    name: str
    model_name: str | None = None
    model_version: int | None = None
    strategy: tuple[str, ...] | None = None
    scene_settings: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "strategy": list(self.strategy) if self.strategy is not None else None,
            "scene_settings": dict(self.scene_settings) if self.scene_settings is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariantSpec:
        strategy = data.get("strategy")
        settings = data.get("scene_settings")
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            model_name=data.get("model_name"),
            model_version=data.get("model_version"),
            strategy=tuple(strategy) if strategy is not None else None,
            scene_settings=dict(settings) if settings is not None else None,
        )


@dataclass(frozen=True)
class RunningExperiment:
    """A running experiment as the hot path sees it: built once per cache version, then `assign` is pure
    CPU (one BLAKE2b of a short string and a bisection: about 1 us)."""

    id: int
    name: str
    salt: str
    variants: tuple[VariantSpec, ...]
    weights: tuple[float, ...]
    thresholds: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.variants) != len(self.weights):
            raise ValueError("one weight per variant")
        if not self.thresholds:
            object.__setattr__(self, "thresholds", cumulative_thresholds(self.weights))

    def assign(self, customer_id: str) -> VariantSpec:
        return self.variants[bisect_right(self.thresholds, hash_bucket(self.salt, customer_id))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "salt": self.salt,
            "variants": [v.to_dict() for v in self.variants],
            "weights": list(self.weights),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunningExperiment:
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            salt=str(data["salt"]),
            variants=tuple(VariantSpec.from_dict(v) for v in data["variants"]),
            weights=tuple(float(w) for w in data["weights"]),
        )


def assign(salt: str, customer_id: str, weights: Sequence[float]) -> int:
    """The index of the customer's variant for these weights (a convenience over `RunningExperiment`,
    which precomputes the cut points)."""
    return bisect_right(cumulative_thresholds(weights), hash_bucket(salt, customer_id))
