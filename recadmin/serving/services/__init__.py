"""How a list is made, by topic: `context` (one request context: validated query, hot state, scene,
experiment variant, history, item), `sources` (the candidate sources and the strategy chain),
`ranking` (rules, diversity, the one row format), `lists` (the served list, its cache and the served
log), `serve` (the entry points).

The hot path per request: the cache tokens and the customer's history in one round trip; the
scene's compiled rules and settings, the default model version and the running experiment from
process-local copies; the strategy's sources in order (the model through TorchServe's fast path
within SERVING_TIME_BUDGET_MS, similar, complementary, popular, recently viewed) until the list can
be filled; item metadata in one `get_many`; the rules engine; the full list cached under its
recommendation_id and the page pushed to the served log in one round trip. Nothing queries the
database when the caches are warm.
"""

from __future__ import annotations

from recadmin.modelops.torchserve import MAX_K
from recadmin.serving.services.context import (
    HISTORY_LIMIT,
    ListQuery,
    RequestContext,
    context_build,
    scene_bundle,
    validate_category,
    validate_item,
)
from recadmin.serving.services.lists import LIST_LENGTH, LIST_TTL_SECONDS, MAX_LIST_LENGTH, MAX_N, ServedList
from recadmin.serving.services.serve import (
    items_known,
    list_build,
    list_serve,
    parse_history,
    popular_serve,
    recommendations_build,
    recommendations_serve,
    similar_serve,
)

__all__ = [
    "HISTORY_LIMIT",
    "LIST_LENGTH",
    "LIST_TTL_SECONDS",
    "MAX_K",
    "MAX_LIST_LENGTH",
    "MAX_N",
    "ListQuery",
    "RequestContext",
    "ServedList",
    "context_build",
    "items_known",
    "list_build",
    "list_serve",
    "parse_history",
    "popular_serve",
    "recommendations_build",
    "recommendations_serve",
    "scene_bundle",
    "similar_serve",
    "validate_category",
    "validate_item",
]
