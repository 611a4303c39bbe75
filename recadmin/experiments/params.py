"""Names shared by the experiments app's models, services and API, one level below them.

`STRATEGY_SOURCES` are the candidate sources a strategy chains (issue 9, section 1): the rules app's
names (`recadmin.rules.params`), so a variant and a scene validate against the same list.
"""

from __future__ import annotations

from typing import Final

from recadmin.rules.params import STRATEGY_SOURCES as STRATEGY_SOURCES

PRIMARY_METRICS: Final = ("ctr", "conversion_rate", "revenue_per_customer")
METRIC_LABELS: Final = {
    "ctr": "CTR",
    "conversion_rate": "conversion rate",
    "revenue_per_customer": "revenue per customer",
}

# The fields a variant may name in the API and the services; what it overrides is at most one of the last three.
VARIANT_FIELDS: Final = ("name", "weight", "model_version", "strategy", "scene_settings")
VARIANT_CHANGES: Final = ("model_version", "strategy", "scene_settings")

MAX_VARIANTS: Final = 10
DEFAULT_THOMPSON_FLOOR: Final = 0.05
# The relative lift the report's "customers needed" is computed for.
REPORT_MDE: Final = 0.05
# Guardrails are judged on a variant once it has this many pages (latency) or lists (fallback share):
# below it, a 95th percentile is one or two slow pages.
GUARDRAIL_MIN_PAGES: Final = 50
# The latency guardrail's quantile.
LATENCY_QUANTILE: Final = 0.95
