"""Training presets: what "quick", "standard" and "thorough" mean for each model kind.

Plain parameters of `services.PARAM_SPECS` (validated like any others); "standard" is the
pipeline's own defaults. Hyperparameters given by hand override the preset's.
"""

from __future__ import annotations

from typing import Any

PRESET_CHOICES = [
    ("quick", "Quick: a first model in minutes (fewer epochs, a 2-minute budget)"),
    ("standard", "Standard: the defaults (SASRec: up to 12 minutes)"),
    ("thorough", "Thorough: longer training, more neighbours (SASRec: up to 40 minutes)"),
]
DEFAULT_PRESET = "standard"

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "sasrec": {"max_epochs": 30, "max_seconds": 120.0, "patience": 3},
        "hybrid": {"max_epochs": 30, "max_seconds": 60.0, "patience": 3},
        "cf": {"max_items": 5000, "neighbours": 100},
        "itemknn": {"neighbours": 50},
        "pop": {},
        "ranker": {"max_epochs": 8, "max_seconds": 120.0},
    },
    "standard": {"sasrec": {}, "hybrid": {}, "cf": {}, "itemknn": {}, "pop": {}, "ranker": {}},
    "thorough": {
        "sasrec": {"max_epochs": 400, "max_seconds": 2400.0, "patience": 10},
        "hybrid": {"max_epochs": 400, "max_seconds": 1200.0, "patience": 10},
        "cf": {"neighbours": 400},
        "itemknn": {"neighbours": 300},
        "pop": {},
        "ranker": {"max_epochs": 80, "patience": 6, "max_seconds": 2400.0},
    },
}


def preset_params(*, preset: str, kind: str) -> dict[str, Any]:
    """The parameters of `preset` for `kind` ({} for an unknown pair: the defaults)."""
    return dict(PRESETS.get(preset, {}).get(kind, {}))
