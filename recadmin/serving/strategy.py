"""Which chain, settings and model version a request gets: the scene's, or its experiment variant's.

Pure CPU on values already in the process (no Django models, no I/O): the hot path calls it once
per request, and bench/experiments.py measures it (goal: assignment and strategy selection under
50 us of CPU per request).
"""

from __future__ import annotations

from dataclasses import dataclass

from recadmin.experiments.assignment import RunningExperiment, VariantSpec
from recadmin.rules.engine import SceneSettings
from recadmin.rules.params import strategy_resolve

SIMILAR_STRATEGY = ("similar", "popular")


@dataclass(frozen=True)
class Selection:
    strategy: tuple[str, ...]
    settings: SceneSettings
    variant: VariantSpec | None = None
    # (model name or None for the default's, version) when the variant names a model version.
    model_version: tuple[str | None, int] | None = None


# Variant scene settings, merged once per (scene settings, variant): the hot path reuses them.
_merged: dict[tuple[int, int], tuple[SceneSettings, SceneSettings]] = {}


def _apply_settings(settings: SceneSettings, variant: VariantSpec) -> SceneSettings:
    key = (id(settings), variant.id)
    hit = _merged.get(key)
    if hit is not None and hit[0] is settings:
        return hit[1]
    merged = SceneSettings.from_dict({**settings.to_dict(), **dict(variant.scene_settings or {})})
    if len(_merged) > 1000:
        _merged.clear()
    _merged[key] = (settings, merged)
    return merged


def strategy_select(
    settings: SceneSettings, *, experiment: RunningExperiment | None, customer: str, similar: bool = False
) -> Selection:
    """The scene's strategy (its own, else its slug's default) and settings, changed by the customer's
    variant when an experiment runs on the scene (assignment: a hash and a bisection)."""
    if similar:
        return Selection(strategy=SIMILAR_STRATEGY, settings=settings)
    strategy = strategy_resolve(settings.slug, settings.strategy)
    if experiment is None or not customer:
        return Selection(strategy=strategy, settings=settings)
    variant = experiment.assign(customer)
    return Selection(
        strategy=tuple(variant.strategy) if variant.strategy else strategy,
        settings=_apply_settings(settings, variant) if variant.scene_settings else settings,
        variant=variant,
        model_version=(variant.model_name, variant.model_version) if variant.model_version is not None else None,
    )
