"""Writes of experiments: create, start, stop, Thompson reallocation, promotion of the winner, and the
idempotent upsert of the per-customer sums. Every change to what runs bumps the app's cache version.

The package, by topic: `validation` (an experiment's fields, its variants and their overrides),
`lifecycle` (create, start, stop, promotion of the winner), `allocation` (Thompson sampling),
`aggregates` (the per-customer table and the variants' totals kept over it), `exposures` (the
customers' first exposures and their counts, and the experiment's row lock their writers take).
"""

from __future__ import annotations

from recadmin.experiments.services.aggregates import (
    CustomerSums,
    experiment_aggregates_rebuild,
    experiment_customers_upsert,
    experiment_variant_totals_rebuild,
)
from recadmin.experiments.services.allocation import (
    ALLOCATION_MIN_CHANGE,
    experiment_allocation_update,
    experiment_allocations_update_running,
    thompson_arms,
)
from recadmin.experiments.services.exposures import (
    experiment_first_exposures_analyze,
    experiment_first_exposures_rebuild,
    experiment_first_exposures_reclassify,
)
from recadmin.experiments.services.lifecycle import (
    experiment_create,
    experiment_promote_winner,
    experiment_start,
    experiment_stop,
)
from recadmin.experiments.services.validation import (
    GUARDRAIL_FIELDS,
    SCENE_SETTING_FIELDS,
    VariantInput,
    scene_settings_validate,
    variants_validate,
)

__all__ = [
    "ALLOCATION_MIN_CHANGE",
    "GUARDRAIL_FIELDS",
    "SCENE_SETTING_FIELDS",
    "CustomerSums",
    "VariantInput",
    "experiment_aggregates_rebuild",
    "experiment_allocation_update",
    "experiment_allocations_update_running",
    "experiment_create",
    "experiment_customers_upsert",
    "experiment_first_exposures_analyze",
    "experiment_first_exposures_rebuild",
    "experiment_first_exposures_reclassify",
    "experiment_promote_winner",
    "experiment_start",
    "experiment_stop",
    "experiment_variant_totals_rebuild",
    "scene_settings_validate",
    "thompson_arms",
    "variants_validate",
]
